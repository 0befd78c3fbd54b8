import type { Command } from 'commander';
import { type CopyReport, runCopy } from '../../jobs/copy.ts';
import { type GlobalOptions, loadCliConfig, runLocally } from '../context.ts';
import { EXIT_FAILED, setCommandExitCode } from '../exit.ts';
import { formatBytes, formatSeconds, printJson, printLine } from '../output.ts';
import { withCommonOptions, withDetach } from '../program.ts';
import { findDaemon, runAsDaemonJob } from '../remote.ts';

export function registerCopy(program: Command): void {
  withDetach(withCommonOptions(program.command('copy').description('send every committed backup a remote lacks to it (chunks in packs first, each manifest last)')))
    .argument('[names...]', 'only these backups (default: all)')
    .option('--remote <name>', 'only this remote (repeatable; default: every configured remote)', (value: string, previous: string[] = []) => [...previous, value])
    .action(async (names: string[], options: GlobalOptions & { remote?: string[] }) => {
      const config = loadCliConfig(options);
      const request = { ...(options.remote ? { remotes: options.remote } : {}), ...(names.length > 0 ? { backups: names } : {}) };
      const socket = await findDaemon(config, 'admin');
      let reports: CopyReport[];
      if (socket) {
        const outcome = await runAsDaemonJob(socket, 'POST', '/api/copy', request, options);
        if (!outcome) return;
        reports = outcome.result as CopyReport[];
      } else {
        reports = await runLocally(options, config, (ctx) => runCopy(ctx, request));
      }
      if (reports.some((r) => !r.ok)) setCommandExitCode(EXIT_FAILED);
      if (options.json) {
        printJson(reports);
        return;
      }
      for (const r of reports) {
        if (!r.ok) {
          printLine(`remote ${r.remote}: FAILED after ${r.copied.length} backup(s): ${r.error}${r.hint ? `\n  hint: ${r.hint}` : ''}`);
          continue;
        }
        const requests = r.requests.put + r.requests.get + r.requests.head + r.requests.list + r.requests.delete;
        printLine(
          `${r.location}: copied ${r.copied.length} backup(s), ${r.already_there} already there; sent ${formatBytes(r.bytes_sent)} in ${r.packs_sent} pack(s), ${requests} request(s)${r.requests.retries ? ` (${r.requests.retries} retried)` : ''} in ${formatSeconds(r.seconds)}`,
        );
      }
    });
}
