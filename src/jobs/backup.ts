import os from 'node:os';
import { promises as fs } from 'node:fs';
import { StackbackError, errorMessage } from '../errors.ts';
import { BackupWriter } from '../repository/backup-writer.ts';
import { type ArtifactManifest, type BackupKind, type Manifest, MANIFEST_FORMAT, newBackupName, type SourceOutcome } from '../repository/manifest.ts';
import { Repository } from '../repository/repository.ts';
import type { Source } from '../sources/source.ts';
import { STACKBACK_VERSION } from '../version.ts';
import type { JobContext } from './context.ts';

export interface BackupRequest {
  kind: BackupKind;
  /** Source names; all configured sources when absent. */
  sources?: string[] | undefined;
}

export interface BackupResult {
  manifest: Manifest;
  /** Set when an incremental was asked for but no chain existed yet. */
  promotedToFull: boolean;
  runId: number;
}

function selectSources(ctx: JobContext, names: string[] | undefined): Source[] {
  if (ctx.sources.length === 0) {
    throw new StackbackError('CONFIG_INVALID', `no sources configured in ${ctx.config.file}`, 'add a sources.postgres entry');
  }
  if (!names || names.length === 0) return ctx.sources;
  return names.map((name) => {
    const source = ctx.sources.find((s) => s.name === name);
    if (!source) throw new StackbackError('SOURCE_NOT_FOUND', `no source named "${name}" in the config`, `configured sources: ${ctx.sources.map((s) => s.name).join(', ')}`);
    return source;
  });
}

/**
 * One backup of the selected sources into the repository. Sources are backed up one after
 * the other, artifact by artifact; an artifact that fails is named in the manifest and the
 * backup becomes `partial`; if nothing at all could be stored the backup fails and leaves
 * no manifest. Runs under the repository writer lock.
 */
export async function runBackup(ctx: JobContext, request: BackupRequest): Promise<BackupResult> {
  const sources = selectSources(ctx, request.sources);
  const repo = await Repository.open(ctx.config.repository.path, { create: true });
  const lock = await repo.lockWriter({ command: `backup --${request.kind}`, timeoutMs: ctx.config.lockTimeoutMs, signal: ctx.signal });
  const runId = ctx.catalog.startRun('backup', { kind: request.kind, sources: sources.map((s) => s.name) });
  try {
    const started = ctx.now();
    const latest = ctx.catalog.listBackups().at(-1);
    const promotedToFull = request.kind === 'incremental' && latest === undefined;
    const kind: BackupKind = promotedToFull ? 'full' : request.kind;
    if (promotedToFull) ctx.log.warn('no backup chain exists yet: this incremental runs as a full backup');
    const chain = kind === 'full' ? Repository.newChainId(started) : latest!.chain;
    const name = newBackupName(kind, started, (n) => ctx.catalog.hasBackup(n) || repo.hasManifest(n));
    const writer = new BackupWriter(repo, chain, ctx.catalog, { compressionLevel: ctx.config.repository.compressionLevel });
    ctx.log.info({ backup: name, kind, chain }, `backup ${name} started`);

    const outcomes: SourceOutcome[] = [];
    const artifacts: ArtifactManifest[] = [];
    for (const source of sources) {
      outcomes.push(await backupSource(ctx, source, writer, artifacts));
    }
    if (artifacts.length === 0) {
      await discard(repo, writer, kind);
      const reasons = outcomes.flatMap((o) => [o.error, ...(o.failed_artifacts ?? []).map((f) => `${f.id}: ${f.error}`)].filter(Boolean));
      throw new StackbackError('BACKUP_FAILED', `backup ${name} failed, nothing was stored:\n  ${reasons.join('\n  ')}`);
    }
    const failed = outcomes.some((o) => o.status === 'failed' || (o.failed_artifacts?.length ?? 0) > 0);
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
    try {
      await writer.commit(manifest);
    } catch (error) {
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
    ctx.catalog.finishRun(runId, { status: 'failed', error: errorMessage(error) });
    throw error;
  } finally {
    await lock.release();
  }
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

function describeFailures(outcomes: SourceOutcome[]): string {
  return outcomes
    .flatMap((o) => (o.status === 'failed' ? [`${o.name}: ${o.error}`] : (o.failed_artifacts ?? []).map((f) => `${f.id}: ${f.error}`)))
    .join('; ');
}

async function backupSource(ctx: JobContext, source: Source, writer: BackupWriter, into: ArtifactManifest[]): Promise<SourceOutcome> {
  const outcome: SourceOutcome = { name: source.name, kind: source.kind, status: 'ok' };
  let planned;
  try {
    planned = await source.plan(ctx.signal);
  } catch (error) {
    ctx.log.error({ source: source.name, err: errorMessage(error) }, `source ${source.name} failed: ${errorMessage(error)}`);
    return { ...outcome, status: 'failed', error: errorMessage(error) };
  }
  for (const artifact of planned) {
    ctx.signal?.throwIfAborted();
    const started = Date.now();
    // Stopping this artifact's producer (pg_dump) is tied to the job's signal and to our own failures.
    const abort = new AbortController();
    const onJobAbort = () => abort.abort(ctx.signal?.reason);
    ctx.signal?.addEventListener('abort', onJobAbort, { once: true });
    try {
      const dump = await source.dump(artifact, abort.signal);
      let stored;
      try {
        stored = await writer.storeArtifact(dump.stream);
      } catch (error) {
        // A stream that broke because its producer died ("Premature close"): the producer's own error says why.
        const producerError = writer.failed ? undefined : await rejectionWithin(dump.finished, PRODUCER_EXIT_WAIT_MS);
        abort.abort(error);
        throw producerError ?? error;
      }
      const meta = await dump.finished;
      into.push({ id: artifact.id, source: source.name, kind: artifact.kind, target: artifact.target, ...stored, meta });
      const seconds = (Date.now() - started) / 1000;
      ctx.log.info({ artifact: artifact.id, bytes: stored.size, chunks: stored.chunks.length, seconds }, `${artifact.id}: ${stored.size} bytes in ${seconds.toFixed(1)} s`);
    } catch (error) {
      ctx.log.error({ artifact: artifact.id, err: errorMessage(error) }, `${artifact.id} failed: ${errorMessage(error)}`);
      outcome.failed_artifacts = [...(outcome.failed_artifacts ?? []), { id: artifact.id, error: errorMessage(error) }];
      if (ctx.signal?.aborted) throw error;
    } finally {
      ctx.signal?.removeEventListener('abort', onJobAbort);
    }
  }
  return outcome;
}

/** Frees what a failed backup wrote: a new chain whole, or the chunks it added to a chain. */
async function discard(repo: Repository, writer: BackupWriter, kind: BackupKind): Promise<void> {
  await writer.settle();
  if (kind === 'full') {
    await repo.removeChain(writer.chain);
    return;
  }
  for (const chunk of writer.newChunks) await fs.rm(repo.chunkPath(writer.chain, chunk.id), { force: true });
}
