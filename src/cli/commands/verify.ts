import type { Command } from 'commander';
import { StackbackError } from '../../errors.ts';
import { runVerify, type VerifyReport } from '../../jobs/verify.ts';
import { type GlobalOptions, loadCliConfig, runLocally } from '../context.ts';
import { EXIT_FAILED, setCommandExitCode } from '../exit.ts';
import { printJson, printLine } from '../output.ts';
import { withCommonOptions, withDetach } from '../program.ts';
import { findDaemon, runAsDaemonJob } from '../remote.ts';

interface VerifyOptions extends GlobalOptions {
  all?: boolean;
  deep?: boolean;
  drill?: boolean;
  remote?: string;
}

export function registerVerify(program: Command): void {
  withDetach(withCommonOptions(
    program
      .command('verify')
      .description('check a backup: quick (every chunk present, right size) or --deep (every byte read back, re-hashed and read by pg_restore --list)')
      .argument('[name]', 'backup name'),
  ))
    .option('--all', 'verify every backup in the repository')
    .option('--deep', 'read back and re-hash everything, and let the source tools read each artifact')
    .option('--remote <name>', 'verify the copies on this remote: quick = every object listed with its size; --deep = every byte downloaded and checked')
    .option('--drill', 'restore every artifact into a scratch database, collection or folder, compare with the manifest, remove it')
    .action(async (name: string | undefined, options: VerifyOptions) => {
      if (!name && !options.all) throw new StackbackError('USAGE', 'name a backup to verify, or pass --all');
      if (name && options.all) throw new StackbackError('USAGE', 'pass either a backup name or --all, not both');
      if (options.deep && options.drill) throw new StackbackError('USAGE', 'pass --deep or --drill, not both');
      const level = options.drill ? 'drill' : options.deep ? 'deep' : 'quick';
      const config = loadCliConfig(options);
      const socket = await findDaemon(config, 'admin');
      let report: VerifyReport;
      if (socket) {
        const outcome = await runAsDaemonJob(socket, 'GET', `/api/backup/verify/${encodeURIComponent(options.all ? 'all' : name!)}?level=${level}${options.remote ? `&remote=${encodeURIComponent(options.remote)}` : ''}`, undefined, options);
        if (!outcome) return;
        report = outcome.result as VerifyReport;
      } else {
        report = await runLocally(options, config, (ctx) => runVerify(ctx, options.all ? 'all' : [name!], level, options.remote));
      }
      if (options.json) printJson(report);
      else {
        for (const v of report.backups) {
          printLine(`${v.backup}: ${v.ok ? 'OK' : 'FAILED'} (${report.level}${options.remote ? `, on remote ${options.remote}` : ''})`);
          for (const a of v.artifacts) printLine(`  ${a.ok ? 'ok    ' : 'FAILED'} ${a.artifact}: ${a.detail}${a.seconds !== undefined ? ` (${a.seconds.toFixed(1)} s)` : ''}`);
        }
        for (const d of report.damaged_chunks) {
          printLine(`damaged chunk ${d.chunk} (chain ${d.chain}): ${d.problem}, ${d.detail}`);
          for (const u of d.used_by) printLine(`  used by ${u.backup}: ${u.artifacts.join(', ')}`);
        }
      }
      if (!report.ok) setCommandExitCode(EXIT_FAILED);
    });
}
