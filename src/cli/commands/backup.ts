import type { Command } from 'commander';
import { StackbackError } from '../../errors.ts';
import { runBackup } from '../../jobs/backup.ts';
import { openCliContext, type GlobalOptions } from '../context.ts';
import { EXIT_FAILED, setCommandExitCode } from '../exit.ts';
import { formatBytes, printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

interface BackupOptions extends GlobalOptions {
  full?: boolean;
  incremental?: boolean;
  source?: string[];
}

export function registerBackup(program: Command): void {
  withCommonOptions(program.command('backup').description('take a backup of the configured sources'))
    .option('--full', 'start a new chain: every chunk is written anew')
    .option('--incremental', 'join the newest chain: only chunks it lacks are written (default)')
    .option('--source <name...>', 'back up only these sources')
    .action(async (options: BackupOptions) => {
      if (options.full && options.incremental) throw new StackbackError('USAGE', '--full and --incremental exclude each other');
      const ctx = openCliContext(options);
      try {
        const result = await runBackup(ctx, { kind: options.full ? 'full' : 'incremental', sources: options.source });
        const m = result.manifest;
        if (options.json) printJson({ backup: m.name, kind: m.kind, chain: m.chain, status: m.status, promoted_to_full: result.promotedToFull, stats: m.stats, sources: m.sources });
        else {
          printLine(m.name);
          process.stderr.write(
            `${m.kind} backup ${m.status}: ${m.artifacts.length} artifact(s), ${formatBytes(m.stats.bytes_read)} read, ${formatBytes(m.stats.bytes_stored)} stored` +
              `${result.promotedToFull ? ' (no chain existed: ran as a full backup)' : ''}\n`,
          );
          for (const source of m.sources) {
            if (source.status === 'failed') process.stderr.write(`  source ${source.name} FAILED: ${source.error}\n`);
            for (const f of source.failed_artifacts ?? []) process.stderr.write(`  ${f.id} FAILED: ${f.error}\n`);
          }
        }
        if (m.status !== 'ok') setCommandExitCode(EXIT_FAILED);
      } finally {
        ctx.close();
      }
    });
}
