import type { Command } from 'commander';
import { deleteBackup } from '../../jobs/delete.ts';
import { validateBackupName } from '../../repository/manifest.ts';
import { openCliContext, type GlobalOptions } from '../context.ts';
import { formatBytes, printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

export function registerDelete(program: Command): void {
  withCommonOptions(program.command('delete').description('delete one backup; other backups stay restorable').argument('<name>', 'backup name')).action(
    async (name: string, options: GlobalOptions) => {
      validateBackupName(name);
      const ctx = openCliContext(options);
      try {
        const result = await deleteBackup(ctx, name);
        if (options.json) printJson(result);
        else printLine(`deleted ${name}${result.chainRemoved ? ` and its chain ${result.chain}` : ''}: ${formatBytes(result.freedBytes)} freed`);
      } finally {
        ctx.close();
      }
    },
  );
}
