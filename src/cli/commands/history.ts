import type { Command } from 'commander';
import { runHistory } from '../../catalog/views.ts';
import type { GlobalOptions } from '../context.ts';
import { formatBytes, formatTable, printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';
import { readView } from '../remote.ts';

export function registerHistory(program: Command): void {
  withCommonOptions(program.command('history').description('the run history: every backup, restore, verify and delete, newest first'))
    .option('-n, --limit <count>', 'how many runs', '30')
    .action(async (options: GlobalOptions & { limit: string }) => {
      const limit = Number.parseInt(options.limit, 10) || 30;
      const runs = await readView(options, `/api/history?limit=${limit}`, (catalog) => runHistory(catalog, limit));
      if (options.json) {
        printJson(runs);
        return;
      }
      printLine(
        formatTable(
          ['ID', 'KIND', 'STATUS', 'STARTED', 'BACKUP', 'READ', 'STORED', 'ERROR'],
          runs.map((r) => [String(r.id), r.kind, r.status, r.started_at.replace(/\.\d+Z$/, 'Z'), r.backup ?? String(r.detail?.backup ?? ''), formatBytes(r.bytes_read), formatBytes(r.bytes_stored), r.error ?? '']),
        ),
      );
    });
}
