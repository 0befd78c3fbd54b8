import { type ErrorCode, errorDetails, errorMessage, isStackbackError, StackbackError } from '../errors.ts';
import { checkStoredBytes } from '../repository/artifact-reader.ts';
import type { BackupRow } from '../catalog/catalog.ts';
import type { Config, RemoteConfig } from '../config/load.ts';
import { isSafetyCopy, sourceSucceeded, validateBackupName } from '../repository/manifest.ts';
import type { Repository } from '../repository/repository.ts';
import { manifestKey } from '../repository/storage.ts';
import type { RequestCounts } from '../repository/storage/bucket.ts';
import { PackBuilder } from '../repository/storage/packs.ts';
import type { JobContext } from './context.ts';
import { startRunUnderLock, syncCatalog } from './housekeeping.ts';
import { type OpenedRemote, openRemote, remoteBackupNames, selectRemotes } from './remote-repository.ts';
import { openRepository } from './repository-identity.ts';
import { decideRetention } from './retention.ts';

export interface CopiedBackup {
  backup: string;
  chunks_sent: number;
  bytes_sent: number;
}

export interface CopyReport {
  remote: string;
  location: string;
  ok: boolean;
  /** Why this remote's copy failed, with its code and what to do. */
  error?: string;
  error_code?: string;
  hint?: string;
  copied: CopiedBackup[];
  /** Backups that could not be copied because they are damaged in the local repository. */
  not_copied: { backup: string; error: string }[];
  /** Backups that were on the remote already. */
  already_there: number;
  packs_sent: number;
  bytes_sent: number;
  requests: RequestCounts;
  seconds: number;
}

/**
 * The local backups a remote should hold: those its retention policy keeps. With its own
 * policy (remotes[].retention) a remote may keep fewer backups than the local repository; a
 * backup its prune removed must not be sent again by every copy (nor count as missing).
 * Backups only on the remote are older than any of these, so they change no decision here.
 */
export function backupsForRemote(config: Config, remote: RemoteConfig, committed: BackupRow[], now: Date): BackupRow[] {
  if (remote.retention === null) return committed;
  const kept = new Set(
    decideRetention(
      committed.map((b) => ({ name: b.name, kind: b.kind, status: b.status, time: new Date(b.started_at), sources: b.sources.filter(sourceSucceeded).map((o) => o.name) })),
      remote.retention,
      config.timezone,
      now,
      isSafetyCopy,
    )
      .filter((d) => d.keep)
      .map((d) => d.name),
  );
  return committed.filter((b) => kept.has(b.name));
}

/**
 * `stackback copy`: every committed backup a remote lacks goes there, oldest first. Per backup,
 * the chunks the remote does not hold yet travel in packs (storage/packs.ts), up to
 * upload_concurrency PUTs at once, and the manifest goes last: the remote's commit point is
 * the local one, so a backup is on the remote only once every object it needs is. An
 * interrupted copy resumes where it stopped: the remote's packs are listed (and the catalog
 * remembers their contents), so nothing already there is sent again.
 *
 * Runs under the local writer lock: a prune must not remove chunks while they are read, and
 * one copy at a time writes to each remote.
 */
export async function runCopy(ctx: JobContext, options: { remotes?: string[] | undefined; backups?: string[] | undefined }): Promise<CopyReport[]> {
  const remotes = selectRemotes(ctx.config, options.remotes);
  for (const name of options.backups ?? []) validateBackupName(name);
  const local = await openRepository(ctx.config, ctx.catalog);
  const lock = await local.lockWriter({ command: 'copy', timeoutMs: ctx.config.lockTimeoutMs, signal: ctx.signal });
  const runId = await startRunUnderLock(ctx.catalog, lock, 'copy', { remotes: remotes.map((r) => r.name), ...(options.backups ? { backups: options.backups } : {}) });
  const reports: CopyReport[] = [];
  try {
    await syncCatalog(local, ctx.catalog, ctx.log);
    const committed = ctx.catalog.listBackups().sort((a, b) => a.finished_at.localeCompare(b.finished_at) || a.name.localeCompare(b.name));
    for (const name of options.backups ?? []) {
      if (!committed.some((b) => b.name === name)) throw new StackbackError('BACKUP_NOT_FOUND', `backup ${name} not found in the repository`, '`stackback list` shows the backups');
    }
    for (const remote of remotes) {
      ctx.signal?.throwIfAborted();
      // Named backups go as asked; otherwise those the remote's own retention keeps.
      const wanted = options.backups ? committed.filter((b) => options.backups!.includes(b.name)) : backupsForRemote(ctx.config, remote, committed, ctx.now());
      reports.push(await copyToRemote(ctx, local, remote.name, wanted.map((b) => b.name)));
    }
    const failed = reports.filter((r) => !r.ok);
    const detail = { remotes: reports.map(({ remote, ok, error, copied, bytes_sent, packs_sent, requests }) => ({ remote, ok, error, copied: copied.map((c) => c.backup), bytes_sent, packs_sent, requests })) };
    ctx.catalog.finishRun(runId, failed.length === 0 ? { status: 'ok', detail } : { status: failed.length < reports.length ? 'partial' : 'failed', error: failed.map((r) => r.error).join('; '), detail });
    return reports;
  } catch (error) {
    ctx.catalog.finishRun(runId, { status: 'failed', error: errorMessage(error) });
    throw error;
  } finally {
    await lock.release();
  }
}

/** Copies the backups `names` (oldest first) that `remote` lacks; a failure ends this remote's copy and is reported, not thrown. */
async function copyToRemote(ctx: JobContext, local: Repository, remoteName: string, names: string[]): Promise<CopyReport> {
  const started = Date.now();
  const report: CopyReport = { remote: remoteName, location: '', ok: true, copied: [], not_copied: [], already_there: 0, packs_sent: 0, bytes_sent: 0, requests: { put: 0, get: 0, head: 0, list: 0, delete: 0, retries: 0 }, seconds: 0 };
  let opened: OpenedRemote | undefined;
  try {
    opened = await openRemote(ctx.config, ctx.catalog, remoteName, { local, initialize: true });
    report.location = opened.storage.location;
    const there = new Set(await remoteBackupNames(opened, ctx.now()));
    const repairs = new Set(opened.known.repairs());
    // Missing there, or there but found damaged by a verify: both get what the remote lacks.
    const missing = names.filter((name) => !there.has(name) || repairs.has(name));
    report.already_there = names.length - missing.length;
    ctx.log.info({ remote: remoteName, backups: missing.length }, `copy to ${opened.storage.location}: ${missing.length} backup(s) to send, ${report.already_there} already there`);
    for (const name of missing) {
      ctx.signal?.throwIfAborted();
      try {
        const copied = await copyBackup(ctx, local, opened, name, report);
        report.copied.push(copied);
        ctx.log.info({ remote: remoteName, backup: name, bytes_sent: copied.bytes_sent }, `copied backup ${name} to remote ${remoteName} (${copied.chunks_sent} new chunk(s), ${copied.bytes_sent} bytes)`);
      } catch (error) {
        // A backup damaged locally is not copied (nor its damage spread); the others still go.
        if (!isStackbackError(error) || !DAMAGE.has(error.code)) throw error;
        report.ok = false;
        report.not_copied.push({ backup: name, error: errorMessage(error) });
        ctx.log.error({ remote: remoteName, backup: name }, `backup ${name} was not copied to remote ${remoteName}: ${errorMessage(error)}`);
      }
    }
    if (report.not_copied.length > 0) report.error = `${report.not_copied.length} backup(s) damaged in the local repository were not copied (${report.not_copied.map((n) => n.backup).join(', ')}); \`stackback verify --all --deep\` shows the damage`;
  } catch (error) {
    if (ctx.signal?.aborted) throw error;
    const details = errorDetails(error);
    Object.assign(report, { ok: false, error: details.message, error_code: details.code, ...(details.hint ? { hint: details.hint } : {}) });
    ctx.log.error({ remote: remoteName, err: errorMessage(error) }, `copy to remote ${remoteName} failed: ${errorMessage(error)}`);
  } finally {
    if (opened) report.requests = { ...opened.storage.bucket.counts };
    opened?.close();
    report.seconds = (Date.now() - started) / 1000;
  }
  return report;
}

/**
 * One backup: its chunks the remote lacks, packed and uploaded (each checked against its
 * recorded sha256 first: a damaged local chunk is never copied), then its manifest — the same
 * sealed bytes as the local one.
 */
async function copyBackup(ctx: JobContext, local: Repository, remote: OpenedRemote, name: string, report: CopyReport): Promise<CopiedBackup> {
  const manifest = await local.readManifest(name);
  const sealedManifest = await local.storage.get(manifestKey(name));
  if (!sealedManifest) throw new StackbackError('BACKUP_NOT_FOUND', `backup ${name} vanished from the repository during the copy`);
  const chain = manifest.chain;
  await remote.storage.ensureChain(chain);
  const copied: CopiedBackup = { backup: name, chunks_sent: 0, bytes_sent: 0 };
  const uploads = new Uploads(remote.config.uploadConcurrency);
  const total = manifest.artifacts.reduce((sum, a) => sum + a.chunks.reduce((s, c) => s + c.stored_size, 0), 0);
  let done = 0;
  let pack = new PackBuilder(chain);
  const send = async (full: PackBuilder) => {
    await uploads.start(async () => {
      const sent = await remote.storage.putPack(full);
      report.packs_sent += 1;
      report.bytes_sent += sent.bytes;
      copied.bytes_sent += sent.bytes;
    });
  };
  const queued = new Set<string>();
  for (const artifact of manifest.artifacts) {
    for (const ref of artifact.chunks) {
      done += ref.stored_size;
      if (queued.has(ref.id) || remote.known.locate(chain, ref.id)) continue;
      ctx.signal?.throwIfAborted();
      uploads.throwIfFailed();
      const stored = await local.readChunk(chain, ref.id);
      checkStoredBytes(chain, ref, stored);
      pack.add(ref.id, stored);
      queued.add(ref.id);
      copied.chunks_sent += 1;
      if (pack.bytes >= remote.config.packSizeBytes) {
        await send(pack);
        pack = new PackBuilder(chain);
        ctx.progress?.({ phase: 'copying', artifact: `${name} → ${remote.config.name}`, bytes_done: done, bytes_estimated: total });
      }
    }
  }
  if (pack.count > 0) await send(pack);
  await uploads.finish();
  // Every chunk is there: the commit point.
  await remote.storage.put(manifestKey(name), sealedManifest);
  remote.known.recordBackup(name, ctx.now());
  remote.known.repaired(name);
  return copied;
}

const DAMAGE = new Set<ErrorCode>(['CHUNK_CORRUPT', 'CHUNK_MISSING']);

/** At most `limit` uploads at once; the first failure is kept and reported by the next call. */
class Uploads {
  private readonly running = new Set<Promise<void>>();
  private failure: unknown;
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Waits for a free slot, then starts `upload`. */
  async start(upload: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    this.throwIfFailed();
    const run = upload().then(
      () => void this.running.delete(run),
      (error: unknown) => {
        this.running.delete(run);
        this.failure ??= error;
      },
    );
    this.running.add(run);
  }

  /** Waits for every upload; throws the first failure. */
  async finish(): Promise<void> {
    await Promise.all(this.running);
    this.throwIfFailed();
  }
}
