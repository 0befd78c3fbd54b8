import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { StackbackError } from '../../errors.ts';
import { prepareRestore, type RestoreFinding, type RestoreSelection } from '../../jobs/restore.ts';
import type { Config } from '../../config/load.ts';
import { validateBackupName } from '../../repository/manifest.ts';
import { type GlobalOptions, loadCliConfig, runLocally } from '../context.ts';
import { EXIT_FAILED, setCommandExitCode } from '../exit.ts';
import { printJson, printLine } from '../output.ts';
import { withCommonOptions, withDetach } from '../program.ts';
import { findDaemon, runAsDaemonJob } from '../remote.ts';

interface RestoreCliOptions extends GlobalOptions {
  source?: string;
  database?: string;
  targetDb?: string;
  withGlobals?: boolean;
  forceDisconnect?: boolean;
  collection?: string;
  targetCollection?: string;
  targetDir?: string;
  path?: string;
  safety: boolean;
  yes?: boolean;
  check?: boolean;
  from?: string;
}

interface CheckOutcome {
  backup: string;
  steps: string[];
  ready: boolean;
  findings: RestoreFinding[];
}

function printCheck(check: CheckOutcome, json: boolean | undefined): void {
  if (json) printJson(check);
  else {
    for (const f of check.findings) printLine(`${f.level === 'ok' ? 'ok     ' : 'PROBLEM'} ${f.source}: ${f.message}${f.hint ? `\n        → ${f.hint}` : ''}`);
    printLine(check.ready ? `ready: the restore would ${check.steps.join('; ')}` : 'NOT ready: fix the problems above first; nothing was touched');
  }
  if (!check.ready) setCommandExitCode(EXIT_FAILED);
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

interface RestoreOutcome {
  backup: string;
  steps: string[];
  results: Record<string, unknown>[];
}

function refuseWithoutYes(steps: string[]): never {
  throw new StackbackError('USAGE', `this restore replaces existing data:\n  ${steps.join('\n  ')}`, 'pass --yes to confirm, or restore beside the original (--target-db, --target-collection)');
}

async function restoreLocally(name: string, selection: RestoreSelection, options: RestoreCliOptions, config: Config): Promise<RestoreOutcome | undefined> {
  return runLocally(options, config, async (ctx) => {
    const prepared = await prepareRestore(ctx, name, selection);
    const steps = prepared.plans.flatMap((p) => p.steps);
    if (prepared.plans.some((p) => p.replacesData) && !options.yes) {
      if (!process.stdin.isTTY) {
        await prepared.abandon();
        refuseWithoutYes(steps);
      }
      if (!(await confirm(steps))) {
        await prepared.abandon();
        process.stderr.write('restore cancelled; nothing was changed\n');
        return undefined;
      }
    }
    return { backup: name, steps, results: await prepared.execute() };
  });
}

async function checkLocally(name: string, selection: RestoreSelection, options: RestoreCliOptions, config: Config): Promise<CheckOutcome> {
  return runLocally(options, config, async (ctx) => {
    const prepared = await prepareRestore(ctx, name, selection, true);
    await prepared.abandon();
    return { backup: name, steps: prepared.plans.flatMap((p) => p.steps), ready: prepared.findings.every((f) => f.level === 'ok'), findings: prepared.findings };
  });
}

async function checkThroughDaemon(socket: string, name: string, selection: RestoreSelection): Promise<CheckOutcome> {
  const outcome = await runAsDaemonJob(socket, 'POST', `/api/backup/restore/${encodeURIComponent(name)}`, { ...restoreBody(selection), check: true }, { json: true });
  return outcome!.result as CheckOutcome;
}

function restoreBody(selection: RestoreSelection): Record<string, unknown> {
  return {
    source: selection.source,
    database: selection.database,
    target_db: selection.targetDb,
    with_globals: selection.withGlobals,
    force_disconnect: selection.forceDisconnect,
    collection: selection.collection,
    target_collection: selection.targetCollection,
    no_safety: selection.noSafety,
    target_dir: selection.targetDir,
    path: selection.path,
    from: selection.from,
  };
}

/** Through the daemon: on a terminal without --yes, a check job first shows what will happen. */
async function restoreThroughDaemon(socket: string, name: string, selection: RestoreSelection, options: RestoreCliOptions): Promise<RestoreOutcome | undefined> {
  const body = restoreBody(selection);
  const path = `/api/backup/restore/${encodeURIComponent(name)}`;
  let yes = options.yes === true;
  if (!yes && process.stdin.isTTY) {
    const check = await runAsDaemonJob(socket, 'POST', path, { ...body, check: true }, { json: true });
    const plan = check!.result as { steps: string[]; replaces_data: boolean };
    if (plan.replaces_data && !(await confirm(plan.steps))) {
      process.stderr.write('restore cancelled; nothing was changed\n');
      return undefined;
    }
    yes = true;
  }
  const outcome = await runAsDaemonJob(socket, 'POST', path, { ...body, yes }, options);
  return outcome?.result as RestoreOutcome | undefined;
}

export function registerRestore(program: Command): void {
  withDetach(withCommonOptions(
    program
      .command('restore')
      .description('restore a backup: databases into a fresh copy swapped in by rename (the replaced one is kept) or beside it (--target-db); Qdrant collections by snapshot upload')
      .argument('<name>', 'backup name'),
  ))
    .option('--source <name>', 'only this source')
    .option('--database <name>', 'only this database')
    .option('--target-db <name>', 'restore into this new database and leave the original alone')
    .option('--with-globals', 'first replay roles and tablespaces from the backup (existing ones are kept)')
    .option('--force-disconnect', 'terminate sessions on the database being replaced')
    .option('--collection <name>', 'only this Qdrant collection')
    .option('--target-collection <name>', 'restore the Qdrant collection under this name')
    .option('--no-safety', 'do not store a snapshot of a Qdrant collection before restoring over it')
    .option('--target-dir <dir>', 'unpack a files backup under this folder instead of in place')
    .option('--path <path>', 'only this path of a files backup (absolute, as it was backed up)')
    .option('--from <remote>', 'read the backup from this remote (streamed from the bucket; no local repository needed)')
    .option('-y, --yes', 'do not ask before replacing data')
    .option('--check', 'only run the preflight and print every finding (exit 1 if the restore could not run)')
    .action(async (name: string, options: RestoreCliOptions) => {
      validateBackupName(name);
      const selection = {
        source: options.source,
        database: options.database,
        targetDb: options.targetDb,
        withGlobals: options.withGlobals === true,
        forceDisconnect: options.forceDisconnect === true,
        collection: options.collection,
        targetCollection: options.targetCollection,
        noSafety: !options.safety,
        targetDir: options.targetDir === undefined ? undefined : path.resolve(options.targetDir),
        path: options.path,
        from: options.from,
      };
      const config = loadCliConfig(options);
      const socket = await findDaemon(config, 'admin');
      if (options.check) {
        const check = socket ? await checkThroughDaemon(socket, name, selection) : await checkLocally(name, selection, options, config);
        printCheck(check, options.json);
        return;
      }
      const outcome = socket ? await restoreThroughDaemon(socket, name, selection, options) : await restoreLocally(name, selection, options, config);
      if (!outcome) return;
      if (options.json) printJson(outcome);
      else {
        for (const r of outcome.results) {
          if (r.safety_backup) printLine(`stored the data it replaces as backup ${String(r.safety_backup)}`);
          else if (r.restored_as) printLine(`restored ${String(r.artifact)} as ${String(r.restored_as)}${r.safety_copy ? ` (previous kept as "${String(r.safety_copy)}")` : ''}`);
          else printLine(`restored ${String(r.artifact)}`);
        }
      }
    });
}
