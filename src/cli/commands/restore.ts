import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { StackbackError } from '../../errors.ts';
import { prepareRestore } from '../../jobs/restore.ts';
import { validateBackupName } from '../../repository/manifest.ts';
import { openCliContext, type GlobalOptions } from '../context.ts';
import { printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

interface RestoreCliOptions extends GlobalOptions {
  source?: string;
  database?: string;
  targetDb?: string;
  withGlobals?: boolean;
  forceDisconnect?: boolean;
  collection?: string;
  targetCollection?: string;
  safety: boolean;
  yes?: boolean;
}

async function confirm(steps: string[]): Promise<boolean> {
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    process.stderr.write(`This restore will:\n${steps.map((s) => `  - ${s}`).join('\n')}\n`);
    return /^y(es)?$/i.test((await prompt.question('Continue? [y/N] ')).trim());
  } finally {
    prompt.close();
  }
}

export function registerRestore(program: Command): void {
  withCommonOptions(
    program
      .command('restore')
      .description('restore a backup: databases into a fresh copy swapped in by rename (the replaced one is kept) or beside it (--target-db); Qdrant collections by snapshot upload')
      .argument('<name>', 'backup name'),
  )
    .option('--source <name>', 'only this source')
    .option('--database <name>', 'only this database')
    .option('--target-db <name>', 'restore into this new database and leave the original alone')
    .option('--with-globals', 'first replay roles and tablespaces from the backup (existing ones are kept)')
    .option('--force-disconnect', 'terminate sessions on the database being replaced')
    .option('--collection <name>', 'only this Qdrant collection')
    .option('--target-collection <name>', 'restore the Qdrant collection under this name')
    .option('--no-safety', 'do not store a snapshot of a Qdrant collection before restoring over it')
    .option('-y, --yes', 'do not ask before replacing data')
    .action(async (name: string, options: RestoreCliOptions) => {
      validateBackupName(name);
      const ctx = openCliContext(options);
      try {
        const prepared = await prepareRestore(ctx, name, {
          source: options.source,
          database: options.database,
          targetDb: options.targetDb,
          withGlobals: options.withGlobals === true,
          forceDisconnect: options.forceDisconnect === true,
          collection: options.collection,
          targetCollection: options.targetCollection,
          noSafety: !options.safety,
        });
        const steps = prepared.plans.flatMap((p) => p.steps);
        if (prepared.plans.some((p) => p.replacesData) && !options.yes) {
          if (!process.stdin.isTTY) {
            await prepared.abandon();
            throw new StackbackError('USAGE', `this restore replaces existing data:\n  ${steps.join('\n  ')}`, 'pass --yes to confirm, or use --target-db to restore beside the original');
          }
          if (!(await confirm(steps))) {
            await prepared.abandon();
            process.stderr.write('restore cancelled; nothing was changed\n');
            return;
          }
        }
        const results = await prepared.execute();
        if (options.json) printJson({ backup: name, steps, results });
        else {
          for (const r of results) {
            const safety = r.safety_copy ? ` (previous kept as "${String(r.safety_copy)}")` : '';
            printLine(r.restored_as ? `restored ${String(r.artifact)} as database "${String(r.restored_as)}"${safety}` : `restored ${String(r.artifact)}`);
          }
        }
      } finally {
        ctx.close();
      }
    });
}
