import type { Command } from 'commander';
import { StackbackError } from '../../errors.ts';
import { rebuildCatalog, restoreCatalog } from '../../jobs/catalog-recovery.ts';
import { createLogger } from '../../log.ts';
import { type GlobalOptions, loadCliConfig, openCliContext, refuseForeignOwner } from '../context.ts';
import { findDaemon } from '../remote.ts';
import { printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

export function registerCatalog(program: Command): void {
  const catalog = program.command('catalog').description('maintain the SQLite catalog (an index of the repository)');
  withCommonOptions(catalog.command('rebuild').description('recreate the catalog index from the repository manifests (the run history is kept)')).action(
    async (options: GlobalOptions) => {
      const ctx = openCliContext(options);
      try {
        const result = await rebuildCatalog(ctx);
        if (options.json) printJson(result);
        else printLine(`catalog rebuilt: ${result.backups} backup(s) indexed`);
      } finally {
        ctx.close();
      }
    },
  );
  withCommonOptions(
    catalog
      .command('restore')
      .description('bring the catalog (backups and run history) back from the copy inside a backup: for a new machine that has only the repository, or (--from) only the config, the key and a remote')
      .argument('[name]', 'backup whose catalog copy to restore (default: the newest that has one)'),
  )
    .option('--force', 'move an existing catalog aside and replace it')
    .option('--from <remote>', 'read the backup from this remote')
    .action(async (name: string | undefined, options: GlobalOptions & { force?: boolean; from?: string }) => {
      const config = loadCliConfig(options);
      if (await findDaemon(config, 'read')) throw new StackbackError('DAEMON_RUNNING', 'a daemon is running on this catalog', 'stop it first (systemctl stop stackback), then restore the catalog');
      refuseForeignOwner(config);
      const result = await restoreCatalog(config, createLogger(config.log.level), { name, force: options.force === true, from: options.from });
      if (options.json) printJson(result);
      else printLine(`catalog restored from ${result.backup}${options.from ? ` on remote ${options.from}` : ''}: ${result.backups} backup(s), ${result.runs} run(s) of history${result.moved_aside ? `; the previous catalog is at ${result.moved_aside}` : ''}`);
    });
}
