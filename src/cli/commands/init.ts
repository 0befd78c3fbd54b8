import type { Command } from 'commander';
import { initRepository } from '../../jobs/repository-identity.ts';
import { type GlobalOptions, openCliContext } from '../context.ts';
import { printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

export function registerInit(program: Command): void {
  withCommonOptions(program.command('init').description('create the repository at repository.path (the only command that makes one, besides the very first backup of a fresh install)'))
    .option('--force', 'when the catalog indexes a repository that is gone for good: start a new one (the catalog forgets those backups; the run history stays)')
    .action(async (options: GlobalOptions & { force?: boolean }) => {
      const ctx = openCliContext(options);
      try {
        const result = await initRepository(ctx.config, ctx.catalog, options.force === true);
        if (options.json) printJson(result);
        else printLine(`repository ${result.id} created at ${result.path}${result.forgot_backups ? `; the catalog forgot ${result.forgot_backups} backup(s) of the lost repository` : ''}`);
      } finally {
        ctx.close();
      }
    });
}
