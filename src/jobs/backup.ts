import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { StackbackError, errorMessage, isStackbackError } from '../errors.ts';
import { BackupWriter } from '../repository/backup-writer.ts';
import { type BackupRow, newestBackupOf } from '../catalog/catalog.ts';
import { type ArtifactManifest, type BackupKind, isSafetyCopy, type Manifest, MANIFEST_FORMAT, newBackupName, type SourceOutcome } from '../repository/manifest.ts';
import { Repository } from '../repository/repository.ts';
import { openRepository } from './repository-identity.ts';
import { findSource } from '../sources/registry.ts';
import type { PlannedArtifact, Source } from '../sources/source.ts';
import { STACKBACK_VERSION } from '../version.ts';
import type { JobContext } from './context.ts';
import { cleanUpBeforeWriting, startRunUnderLock } from './housekeeping.ts';
import { Watchdog } from './watchdog.ts';

export interface BackupRequest {
  kind: BackupKind;
  /** Source names; all configured sources when absent. */
  sources?: string[] | undefined;
  /** Only these artifact ids of the sources (a restore's safety copy of what it replaces). */
  artifacts?: string[] | undefined;
  /** Name prefix instead of full-/incr-: "prerestore" marks a restore's safety copy. */
  label?: 'prerestore' | undefined;
}

export interface BackupResult {
  manifest: Manifest;
  /** Set when an incremental was asked for but no chain existed yet. */
  promotedToFull: boolean;
  runId: number;
}

/** What a backup reports to the CLI and the control channel. */
export interface BackupSummary {
  backup: string;
  kind: BackupKind;
  chain: string;
  status: Manifest['status'];
  promoted_to_full: boolean;
  stats: Manifest['stats'];
  sources: SourceOutcome[];
  artifacts: number;
}

export function backupSummary({ manifest, promotedToFull }: BackupResult): BackupSummary {
  return {
    backup: manifest.name,
    kind: manifest.kind,
    chain: manifest.chain,
    status: manifest.status,
    promoted_to_full: promotedToFull,
    stats: manifest.stats,
    sources: manifest.sources,
    artifacts: manifest.artifacts.length,
  };
}

interface SourcePlan {
  source: Source;
  artifacts: PlannedArtifact[];
  error?: string;
}

function selectSources(ctx: JobContext, names: string[] | undefined): Source[] {
  if (ctx.sources.length === 0) {
    throw new StackbackError('CONFIG_INVALID', `no sources configured in ${ctx.config.file}`, 'add a sources.postgres or sources.qdrant entry');
  }
  if (!names || names.length === 0) return ctx.sources;
  return names.map((name) => findSource(ctx.sources, name));
}

/**
 * One backup of the selected sources into the repository, under the writer lock:
 * 1. clean up after earlier runs that never finished;
 * 2. ask every source what it will produce, and check the free space for it;
 * 3. dump artifact after artifact into the chain (new for a full, the newest for an incremental);
 * 4. commit: chunks durable, then the manifest, then the catalog.
 * An artifact that fails is named in the manifest and makes the backup `partial`; if nothing
 * could be stored the backup fails, leaves no manifest and frees what it wrote.
 */
export async function runBackup(ctx: JobContext, request: BackupRequest): Promise<BackupResult> {
  const sources = selectSources(ctx, request.sources);
  const repo = await openRepository(ctx.config, ctx.catalog, { createFirst: true });
  const lock = await repo.lockWriter({ command: `backup --${request.kind}`, timeoutMs: ctx.config.lockTimeoutMs, signal: ctx.signal });
  const runId = await startRunUnderLock(ctx.catalog, lock, 'backup', { kind: request.kind, sources: sources.map((s) => s.name) });
  const watchdog = new Watchdog(ctx.config.stallTimeoutMs, ctx.signal);
  let writer: BackupWriter | undefined;
  try {
    await cleanUpBeforeWriting(repo, ctx.catalog, ctx.log);
    const started = ctx.now();
    const backups = ctx.catalog.listBackups();
    // A restore's safety copy is a chain of its own that scheduled incrementals never join.
    const latest = backups.filter((b) => !isSafetyCopy(b.name)).at(-1);
    const promotedToFull = request.kind === 'incremental' && latest === undefined;
    const kind: BackupKind = promotedToFull ? 'full' : request.kind;
    if (promotedToFull) ctx.log.warn('no backup chain exists yet: this incremental runs as a full backup');
    const chain = kind === 'full' ? Repository.newChainId(started) : latest!.chain;
    const inRepository = new Set(await repo.listManifestNames());
    const name = newBackupName(request.label ?? kind, started, (n) => ctx.catalog.hasBackup(n) || inRepository.has(n));
    ctx.catalog.updateRunDetail(runId, { chain, backup: name, kind });
    ctx.log.info({ backup: name, kind, chain }, `backup ${name} started`);

    ctx.progress?.({ phase: 'planning' });
    const plans: SourcePlan[] = [];
    for (const source of sources) plans.push(await planSource(ctx, source, request.artifacts));
    await checkFreeSpace(ctx, repo, kind, plans, backups);

    writer = new BackupWriter(repo, chain, ctx.catalog, { compressionLevel: ctx.config.repository.compressionLevel, yieldToForeground: ctx.yieldToForeground });
    const outcomes: SourceOutcome[] = [];
    const artifacts: ArtifactManifest[] = [];
    try {
      const estimated = plans.reduce((sum, p) => sum + p.artifacts.reduce((s, a) => s + a.estimatedBytes, 0), 0);
      const tally = { done: 0, estimated };
      for (const plan of plans) {
        const outcome = await backupSource(ctx, plan, writer, watchdog, artifacts, tally);
        if (!request.artifacts) noteCoverage(ctx, outcome, plan, artifacts, newestBackupOf(backups, plan.source.name));
        outcomes.push(outcome);
      }
    } catch (error) {
      await discard(repo, writer, kind);
      throw watchdog.stalled ?? error;
    }
    if (artifacts.length === 0) {
      await discard(repo, writer, kind);
      const reasons = outcomes.flatMap((o) => [o.error, ...(o.failed_artifacts ?? []).map((f) => `${f.id}: ${f.error}`)].filter(Boolean));
      throw new StackbackError('BACKUP_FAILED', `backup ${name} failed, nothing was stored:\n  ${reasons.join('\n  ')}`);
    }
    // The history travels with the data: a copy of the catalog is in every backup.
    try {
      artifacts.push(await storeCatalogCopy(ctx, writer, runId));
    } catch (error) {
      await discard(repo, writer, kind);
      throw new StackbackError('BACKUP_FAILED', `backup ${name} could not store its copy of the catalog: ${errorMessage(error)}`, undefined, { cause: error });
    }
    const failed = outcomes.some((o) => o.status === 'failed' || (o.failed_artifacts?.length ?? 0) > 0 || (o.incomplete_artifacts?.length ?? 0) > 0);
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      name,
      kind,
      chain,
      status: failed ? 'partial' : 'ok',
      started_at: started.toISOString(),
      finished_at: ctx.now().toISOString(),
      host: os.hostname(),
      stackback_version: STACKBACK_VERSION,
      sources: outcomes,
      artifacts,
      stats: { bytes_read: writer.stats.bytesRead, bytes_stored: writer.stats.bytesStored, chunks: writer.stats.chunks, chunks_new: writer.stats.chunksNew },
    };
    ctx.progress?.({ phase: 'committing', bytes_done: writer.stats.bytesRead });
    try {
      await writer.commit(manifest);
    } catch (error) {
      // The manifest may have landed before its sync failed: it goes first, or it would name freed chunks.
      await repo.deleteManifests(name).catch(() => undefined);
      await discard(repo, writer, kind);
      throw new StackbackError('BACKUP_FAILED', `backup ${name} could not be committed: ${errorMessage(error)}`, undefined, { cause: error });
    }
    ctx.catalog.recordBackup(manifest);
    ctx.catalog.finishRun(runId, {
      status: manifest.status,
      backup: name,
      bytesRead: manifest.stats.bytes_read,
      bytesStored: manifest.stats.bytes_stored,
      ...(failed ? { error: describeFailures(outcomes) } : {}),
    });
    ctx.log.info({ backup: name, status: manifest.status, ...manifest.stats }, `backup ${name} ${manifest.status}`);
    return { manifest, promotedToFull, runId };
  } catch (error) {
    // Stalled: no bytes for stall_timeout. Interrupted: cancelled, or the daemon stopping.
    const status = watchdog.stalled ? 'stalled' : ctx.signal?.aborted ? 'interrupted' : 'failed';
    // The code lets status tell a full disk from other failures.
    if (isStackbackError(error)) ctx.catalog.updateRunDetail(runId, { error_code: error.code });
    ctx.catalog.finishRun(runId, { status, error: errorMessage(watchdog.stalled ?? error) });
    throw error;
  } finally {
    watchdog.stop();
    await writer?.close();
    await lock.release();
  }
}

async function planSource(ctx: JobContext, source: Source, only: string[] | undefined): Promise<SourcePlan> {
  try {
    const artifacts = await source.plan(ctx.signal);
    return { source, artifacts: only ? artifacts.filter((a) => only.includes(a.id)) : artifacts };
  } catch (error) {
    ctx.log.error({ source: source.name, err: errorMessage(error) }, `source ${source.name} failed: ${errorMessage(error)}`);
    return { source, artifacts: [], error: errorMessage(error) };
  }
}

/**
 * Refuses to start a backup that cannot fit: in the repository, what the previous backup
 * of the same kind stored, or (first backup) the sources' own sizes, uncompressed; in
 * work_dir, the temporary copy of the catalog that every backup carries.
 */
async function checkFreeSpace(ctx: JobContext, repo: Repository, kind: BackupKind, plans: SourcePlan[], backups: BackupRow[]): Promise<void> {
  const previous = backups.filter((b) => b.kind === kind && b.status === 'ok').at(-1);
  const planned = plans.reduce((sum, p) => sum + p.artifacts.reduce((s, a) => s + a.estimatedBytes, 0), 0);
  const [needed, basis] = previous ? [previous.bytes_stored, `the previous ${kind} backup stored that much`] : [planned, 'the size of the data to back up, uncompressed'];
  // Storage that cannot tell (a bucket) is not checked.
  const free = await repo.freeBytes();
  if (free !== undefined && free < needed) {
    throw new StackbackError(
      'DISK_SPACE',
      `not enough free space for this backup in ${repo.location}: ${free} bytes free, about ${needed} bytes needed (${basis})`,
      'free space, delete old backups (stackback delete), or move repository.path',
    );
  }
  await fs.mkdir(ctx.config.workDir, { recursive: true, mode: 0o750 });
  const work = await fs.statfs(ctx.config.workDir);
  const workFree = work.bavail * work.bsize;
  const catalogBytes = (await fs.stat(ctx.config.catalog.path).catch(() => ({ size: 0 }))).size;
  if (workFree < catalogBytes) {
    throw new StackbackError('DISK_SPACE', `not enough free space in work_dir ${ctx.config.workDir}: ${workFree} bytes free, about ${catalogBytes} bytes needed (the copy of the catalog)`, 'free space, or move work_dir');
  }
}

function describeFailures(outcomes: SourceOutcome[]): string {
  return outcomes
    .flatMap((o) =>
      o.status === 'failed'
        ? [`${o.name}: ${o.error}`]
        : [...(o.failed_artifacts ?? []).map((f) => `${f.id}: ${f.error}`), ...(o.incomplete_artifacts ?? []).map((i) => `${i.id} incomplete: ${i.errors.join('; ')}`)],
    )
    .join('; ');
}

/**
 * Signs that a source's backup protects less than it should though nothing failed: no
 * artifact at all, artifacts of its previous backup that are gone, or a source's own
 * `coverage` notes (an empty tree). Recorded on the outcome; `status` shows them.
 */
function noteCoverage(ctx: JobContext, outcome: SourceOutcome, plan: SourcePlan, stored: ArtifactManifest[], previous: BackupRow | undefined): void {
  if (outcome.status === 'failed') return;
  const mine = stored.filter((a) => a.source === plan.source.name);
  const notes: string[] = mine.flatMap((a) => (Array.isArray(a.meta.coverage) ? a.meta.coverage.map(String) : []));
  if (plan.artifacts.every((a) => a.auxiliary)) notes.push('nothing to back up: its configuration matched no database, collection or path');
  if (previous) {
    const failed = new Set((outcome.failed_artifacts ?? []).map((f) => f.id));
    const now = new Set(mine.map((a) => a.id));
    const before = (ctx.catalog.getBackup(previous.name)?.artifacts ?? []).filter((a) => a.source === plan.source.name).map((a) => a.id);
    const gone = before.filter((id) => !now.has(id) && !failed.has(id));
    if (gone.length > 0) notes.push(`${gone.length} of the ${before.length} artifact(s) of backup ${previous.name} are gone: ${gone.join(', ')}`);
  }
  if (notes.length === 0) return;
  outcome.coverage = notes;
  for (const note of notes) ctx.log.warn({ source: plan.source.name }, `source ${plan.source.name}: ${note}`);
}

const PRODUCER_EXIT_WAIT_MS = 5000;

/** The reason `promise` rejects with, if it rejects within `ms`; otherwise undefined. */
async function rejectionWithin(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise.then(() => undefined, (error: unknown) => error), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function backupSource(
  ctx: JobContext,
  plan: SourcePlan,
  writer: BackupWriter,
  watchdog: Watchdog,
  into: ArtifactManifest[],
  tally: { done: number; estimated: number },
): Promise<SourceOutcome> {
  const { source } = plan;
  if (plan.error !== undefined) return { name: source.name, kind: source.kind, status: 'failed', error: plan.error };
  const outcome: SourceOutcome = { name: source.name, kind: source.kind, status: 'ok' };
  for (const artifact of plan.artifacts) {
    watchdog.signal.throwIfAborted();
    const started = Date.now();
    // This artifact's producer (pg_dump) stops on the job's cancel, a stall, or our own failure.
    const abort = new AbortController();
    const stop = () => abort.abort(watchdog.signal.reason);
    watchdog.signal.addEventListener('abort', stop, { once: true });
    try {
      watchdog.start(artifact.id);
      const dump = await source.dump(artifact, abort.signal);
      let stored;
      try {
        stored = await writer.storeArtifact(dump.stream, (bytes) => {
          watchdog.progress();
          tally.done += bytes;
          ctx.progress?.({ phase: 'dumping', source: source.name, artifact: artifact.id, bytes_done: tally.done, bytes_estimated: tally.estimated });
        });
      } catch (error) {
        // A stream that broke because its producer died ("Premature close"): the producer's own error says why.
        const producerError = writer.failed || watchdog.signal.aborted ? undefined : await rejectionWithin(dump.finished, PRODUCER_EXIT_WAIT_MS);
        abort.abort(error);
        throw producerError ?? error;
      }
      const meta = await dump.finished;
      into.push({ id: artifact.id, source: source.name, kind: artifact.kind, target: artifact.target, ...stored, meta });
      const warnings = (meta.warnings as string[] | undefined) ?? [];
      const readErrors = (meta.read_errors as string[] | undefined) ?? [];
      if (warnings.length > 0) outcome.warnings = [...(outcome.warnings ?? []), ...warnings];
      if (readErrors.length > 0) {
        outcome.incomplete_artifacts = [...(outcome.incomplete_artifacts ?? []), { id: artifact.id, errors: readErrors }];
        ctx.log.error({ artifact: artifact.id, errors: readErrors }, `${artifact.id} is incomplete: ${readErrors.join('; ')}`);
      }
      for (const warning of warnings) ctx.log.warn({ artifact: artifact.id }, warning);
      const seconds = (Date.now() - started) / 1000;
      ctx.log.info({ artifact: artifact.id, bytes: stored.size, chunks: stored.chunks.length, seconds }, `${artifact.id}: ${stored.size} bytes in ${seconds.toFixed(1)} s`);
    } catch (error) {
      // Cancelled, stalled or out of space: the whole backup stops. A failed artifact: the next one goes on.
      if (watchdog.signal.aborted) throw watchdog.stalled ?? error;
      if (isStackbackError(error) && error.code === 'DISK_SPACE') throw error;
      ctx.log.error({ artifact: artifact.id, err: errorMessage(error) }, `${artifact.id} failed: ${errorMessage(error)}`);
      outcome.failed_artifacts = [...(outcome.failed_artifacts ?? []), { id: artifact.id, error: errorMessage(error) }];
    } finally {
      watchdog.signal.removeEventListener('abort', stop);
    }
  }
  return outcome;
}

export const CATALOG_ARTIFACT_ID = 'stackback/catalog';

async function storeCatalogCopy(ctx: JobContext, writer: BackupWriter, runId: number): Promise<ArtifactManifest> {
  await fs.mkdir(ctx.config.workDir, { recursive: true, mode: 0o750 });
  const copy = path.join(ctx.config.workDir, `catalog-copy-${process.pid}-${runId}.db`);
  try {
    await ctx.catalog.copyTo(copy);
    const stored = await writer.storeArtifact(createReadStream(copy, { highWaterMark: 1024 * 1024 }));
    return { id: CATALOG_ARTIFACT_ID, source: 'stackback', kind: 'catalog', target: 'catalog', ...stored, meta: { backups: ctx.catalog.backupNames().length } };
  } finally {
    await fs.rm(copy, { force: true });
  }
}

/** Frees what a failed backup wrote: a new chain whole, or the chunks it added to a chain. */
async function discard(repo: Repository, writer: BackupWriter, kind: BackupKind): Promise<void> {
  await writer.settle();
  if (kind === 'full') {
    await repo.removeChain(writer.chain);
    return;
  }
  for (const chunk of writer.newChunks) await repo.removeChunk(writer.chain, chunk.id);
}
