import type { Command } from 'commander';
import { type PruneResult, runPrune } from '../../jobs/prune.ts';
import { type GlobalOptions, loadCliConfig, runLocally } from '../context.ts';
import { EXIT_FAILED, setCommandExitCode } from '../exit.ts';
import { formatBytes, formatTable, printJson, printLine } from '../output.ts';
import { withCommonOptions, withDetach } from '../program.ts';
import { findDaemon, runAsDaemonJob } from '../remote.ts';

export function registerPrune(program: Command): void {
  withDetach(withCommonOptions(program.command('prune').description('apply the retention policy: remove the backups no rule keeps, then collect unreferenced chunks')))
    .option('--dry-run', 'print every decision with its reason and change nothing')
    .action(async (options: GlobalOptions & { dryRun?: boolean }) => {
      const config = loadCliConfig(options);
      const socket = await findDaemon(config, 'admin');
      let result: PruneResult;
      if (socket) {
        const outcome = await runAsDaemonJob(socket, 'POST', `/api/retention/apply?dry_run=${options.dryRun ? 1 : 0}`, undefined, options);
        if (!outcome) return;
        result = outcome.result as PruneResult;
      } else {
        result = await runLocally(options, config, (ctx) => runPrune(ctx, { dryRun: options.dryRun === true }));
      }
      if (result.remotes.some((r) => !r.ok)) setCommandExitCode(EXIT_FAILED);
      if (options.json) {
        printJson(result);
        return;
      }
      printLine(
        formatTable(
          ['NAME', 'KIND', 'STATUS', 'STARTED', 'DECISION', 'WHY'],
          result.decisions.map((d) => [d.name, d.kind, d.status, d.started_at.replace(/\.\d+Z$/, 'Z'), d.keep ? 'keep' : 'REMOVE', d.reasons.join('; ')]),
        ),
      );
      for (const copy of result.safety_copies) {
        printLine(`${copy.dropped ? 'dropped' : result.dry_run && !copy.note ? 'would drop' : 'kept'} ${copy.source} database ${copy.name} (restore safety copy from ${copy.created})${copy.note ? `: ${copy.note}` : ''}`);
      }
      for (const r of result.remotes) {
        if (!r.ok) {
          printLine(`remote ${r.remote}: prune FAILED: ${r.error}${r.hint ? `\n  hint: ${r.hint}` : ''}`);
          continue;
        }
        const removing = r.decisions.filter((d) => !d.keep).map((d) => d.name);
        printLine(
          result.dry_run
            ? `remote ${r.remote}: ${removing.length} backup(s) would be removed${removing.length ? ` (${removing.join(', ')})` : ''}`
            : `remote ${r.remote}: removed ${r.removed.length} backup(s) and ${r.packs_removed} pack(s), freed ${formatBytes(r.freed_bytes)}`,
        );
        for (const l of r.locked) printLine(`  kept ${l.key}: object lock until ${l.until}`);
      }
      printLine(
        result.dry_run
          ? `dry run: ${result.removed.length} backup(s) would be removed; nothing was changed`
          : `removed ${result.removed.length} backup(s), freed ${formatBytes(result.freed_bytes)} in ${result.freed_chunks} chunk(s)${result.chains_removed.length ? `, removed ${result.chains_removed.length} empty chain(s)` : ''}`,
      );
    });
}
