import type { Command } from 'commander';
import { deleteBackup, type DeleteResult } from '../../jobs/delete.ts';
import { validateBackupName } from '../../repository/manifest.ts';
import { type GlobalOptions, loadCliConfig, runLocally } from '../context.ts';
import { formatBytes, printJson, printLine } from '../output.ts';
import { withCommonOptions, withDetach } from '../program.ts';
import { findDaemon, runAsDaemonJob } from '../remote.ts';

export function registerDelete(program: Command): void {
  withDetach(withCommonOptions(program.command('delete').description('delete one backup; other backups stay restorable').argument('<name>', 'backup name'))).action(
    async (name: string, options: GlobalOptions) => {
      validateBackupName(name);
      const config = loadCliConfig(options);
      const socket = await findDaemon(config, 'admin');
      let result: DeleteResult;
      if (socket) {
        const outcome = await runAsDaemonJob(socket, 'DELETE', `/api/backup/${encodeURIComponent(name)}`, undefined, options);
        if (!outcome) return;
        result = outcome.result as DeleteResult;
      } else {
        result = await runLocally(options, config, (ctx) => deleteBackup(ctx, name));
      }
      if (options.json) printJson(result);
      else printLine(`deleted ${name}${result.chainRemoved ? ` and its chain ${result.chain}` : ''}: ${formatBytes(result.freedBytes)} freed`);
    },
  );
}
