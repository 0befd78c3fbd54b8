import type { Command } from 'commander';
import { rebuildCatalog } from '../../jobs/catalog-rebuild.ts';
import { openCliContext, type GlobalOptions } from '../context.ts';
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
}
