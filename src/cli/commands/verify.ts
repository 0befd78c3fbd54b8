import type { Command } from 'commander';
import { StackbackError } from '../../errors.ts';
import { runVerify } from '../../jobs/verify.ts';
import { openCliContext, type GlobalOptions } from '../context.ts';
import { EXIT_FAILED, setCommandExitCode } from '../exit.ts';
import { printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

interface VerifyOptions extends GlobalOptions {
  all?: boolean;
}

export function registerVerify(program: Command): void {
  withCommonOptions(
    program
      .command('verify')
      .description('read back a backup: every chunk re-hashed, every artifact checked against its sha256 and read by pg_restore --list')
      .argument('[name]', 'backup name'),
  )
    .option('--all', 'verify every backup in the repository')
    .action(async (name: string | undefined, options: VerifyOptions) => {
      if (!name && !options.all) throw new StackbackError('USAGE', 'name a backup to verify, or pass --all');
      if (name && options.all) throw new StackbackError('USAGE', 'pass either a backup name or --all, not both');
      const ctx = openCliContext(options);
      try {
        const verdicts = await runVerify(ctx, options.all ? 'all' : [name!]);
        if (options.json) printJson(verdicts);
        else {
          for (const v of verdicts) {
            printLine(`${v.backup}: ${v.ok ? 'OK' : 'FAILED'}`);
            for (const a of v.artifacts) printLine(`  ${a.ok ? 'ok    ' : 'FAILED'} ${a.artifact}: ${a.detail}`);
          }
        }
        if (verdicts.some((v) => !v.ok)) setCommandExitCode(EXIT_FAILED);
      } finally {
        ctx.close();
      }
    });
}
