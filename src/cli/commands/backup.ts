import type { Command } from 'commander';
import { StackbackError } from '../../errors.ts';
import { type BackupSummary, backupSummary, runBackup } from '../../jobs/backup.ts';
import { type GlobalOptions, loadCliConfig, runLocally } from '../context.ts';
import { EXIT_FAILED, setCommandExitCode } from '../exit.ts';
import { formatBytes, printJson, printLine } from '../output.ts';
import { withCommonOptions, withDetach } from '../program.ts';
import { findDaemon, runAsDaemonJob } from '../remote.ts';

interface BackupOptions extends GlobalOptions {
  full?: boolean;
  incremental?: boolean;
  source?: string[];
}

function print(summary: BackupSummary, json: boolean | undefined): void {
  if (json) {
    printJson(summary);
    return;
  }
  printLine(summary.backup);
  process.stderr.write(
    `${summary.kind} backup ${summary.status}: ${summary.artifacts} artifact(s), ${formatBytes(summary.stats.bytes_read)} read, ${formatBytes(summary.stats.bytes_stored)} stored` +
      `${summary.promoted_to_full ? ' (no chain existed: ran as a full backup)' : ''}\n`,
  );
  for (const source of summary.sources) {
    if (source.status === 'failed') process.stderr.write(`  source ${source.name} FAILED: ${source.error}\n`);
    for (const f of source.failed_artifacts ?? []) process.stderr.write(`  ${f.id} FAILED: ${f.error}\n`);
  }
}

export function registerBackup(program: Command): void {
  withDetach(withCommonOptions(program.command('backup').description('take a backup of the configured sources')))
    .option('--full', 'start a new chain: every chunk is written anew')
    .option('--incremental', 'join the newest chain: only chunks it lacks are written (default)')
    .option('--source <name...>', 'back up only these sources')
    .action(async (options: BackupOptions) => {
      if (options.full && options.incremental) throw new StackbackError('USAGE', '--full and --incremental exclude each other');
      const kind = options.full ? 'full' : 'incremental';
      const config = loadCliConfig(options);
      const socket = await findDaemon(config, 'admin');
      let summary: BackupSummary;
      if (socket) {
        const outcome = await runAsDaemonJob(socket, 'POST', '/api/backup/create', { type: kind, ...(options.source ? { sources: options.source } : {}) }, options);
        if (!outcome) return;
        summary = outcome.result as BackupSummary;
      } else {
        summary = await runLocally(options, config, async (ctx) => backupSummary(await runBackup(ctx, { kind, sources: options.source })));
      }
      print(summary, options.json);
      if (summary.status !== 'ok') setCommandExitCode(EXIT_FAILED);
    });
}
