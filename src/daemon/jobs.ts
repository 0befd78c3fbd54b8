import type { Catalog } from '../catalog/catalog.ts';
import type { Config } from '../config/load.ts';
import { StackbackError } from '../errors.ts';
import { backupSummary, runBackup } from '../jobs/backup.ts';
import type { JobContext } from '../jobs/context.ts';
import { runCopy } from '../jobs/copy.ts';
import { deleteBackup } from '../jobs/delete.ts';
import { type PruneTrigger, runPrune } from '../jobs/prune.ts';
import { prepareRestore, type RestoreSelection } from '../jobs/restore.ts';
import { runVerify, type VerifyLevel } from '../jobs/verify.ts';
import type { Logger } from '../log.ts';
import type { BackupKind } from '../repository/manifest.ts';
import type { Source } from '../sources/source.ts';
import type { ForegroundActivity } from './foreground.ts';
import type { JobRunner } from './queue.ts';

/** What the daemon holds and jobs use; config and sources change on reload. */
export interface DaemonServices {
  config(): Config;
  sources(): Source[];
  catalog: Catalog;
  log: Logger;
  /** Control requests in flight: backups step aside for them. */
  foreground: ForegroundActivity;
}

function context(services: DaemonServices, signal: AbortSignal, progress: JobContext['progress']): JobContext {
  return {
    config: services.config(),
    sources: services.sources(),
    catalog: services.catalog,
    log: services.log,
    signal,
    progress,
    now: () => new Date(),
    yieldToForeground: () => services.foreground.yieldTo(),
  };
}

export function backupJob(services: DaemonServices, kind: BackupKind, sources: string[] | undefined): JobRunner {
  return async (signal, progress) => {
    const summary = backupSummary(await runBackup(context(services, signal, progress), { kind, sources }));
    return { state: summary.status === 'ok' ? 'ok' : 'partial', result: summary };
  };
}

export function verifyJob(services: DaemonServices, names: string[] | 'all', level: VerifyLevel, remote?: string): JobRunner {
  return async (signal, progress) => {
    progress({ phase: 'verifying' });
    const report = await runVerify(context(services, signal, progress), names, level, remote);
    return { state: report.ok ? 'ok' : 'failed', result: report };
  };
}

export function deleteJob(services: DaemonServices, name: string): JobRunner {
  return async (signal, progress) => ({ state: 'ok', result: await deleteBackup(context(services, signal, progress), name) });
}

export function pruneJob(services: DaemonServices, dryRun: boolean, trigger?: PruneTrigger): JobRunner {
  return async (signal, progress) => {
    progress({ phase: dryRun ? 'deciding (dry run)' : 'pruning' });
    const result = await runPrune(context(services, signal, progress), { dryRun, trigger });
    // The local prune is done; a remote whose prune failed makes it partial.
    return { state: result.remotes.every((r) => r.ok) ? 'ok' : 'partial', result };
  };
}

export interface CopyJobOptions {
  /** Only these remotes (default: every configured one). */
  remotes?: string[] | undefined;
  /** Only these backups (default: every committed backup a remote lacks). */
  backups?: string[] | undefined;
}

/** `stackback copy` as a job: ok when every remote got its backups, failed when none did, partial in between; the result is the per-remote reports. */
export function copyJob(services: DaemonServices, options: CopyJobOptions): JobRunner {
  return async (signal, progress) => {
    progress({ phase: 'copying' });
    const reports = await runCopy(context(services, signal, progress), options);
    const ok = reports.filter((r) => r.ok).length;
    return { state: ok === reports.length ? 'ok' : ok === 0 ? 'failed' : 'partial', result: reports };
  };
}

export interface RestoreJobOptions extends RestoreSelection {
  /** Confirms a restore that replaces data (the CLI asks the operator first). */
  yes: boolean;
  /** Only run the preflight and report the steps. */
  check: boolean;
}

export function restoreJob(services: DaemonServices, name: string, options: RestoreJobOptions): JobRunner {
  return async (signal, progress) => {
    progress({ phase: 'preflight' });
    const prepared = await prepareRestore(context(services, signal, progress), name, options, options.check);
    const steps = prepared.plans.flatMap((p) => p.steps);
    const replacesData = prepared.plans.some((p) => p.replacesData);
    if (options.check || (replacesData && !options.yes)) {
      await prepared.abandon();
      if (options.check) {
        const ready = prepared.findings.every((f) => f.level === 'ok');
        return { state: ready ? 'ok' : 'failed', result: { backup: name, steps, replaces_data: replacesData, ready, findings: prepared.findings } };
      }
      throw new StackbackError('USAGE', `this restore replaces existing data:\n  ${steps.join('\n  ')}`, 'confirm with yes: true (the CLI: --yes), or restore beside the original');
    }
    progress({ phase: 'restoring' });
    return { state: 'ok', result: { backup: name, steps, results: await prepared.execute() } };
  };
}
