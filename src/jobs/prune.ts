import { errorMessage } from '../errors.ts';
import { isSafetyCopy, sourceSucceeded } from '../repository/manifest.ts';
import type { SafetyCopyCleanup } from '../sources/source.ts';
import type { JobContext } from './context.ts';
import { collectChain, startRunUnderLock, syncCatalog } from './housekeeping.ts';
import { openRepository, repositoryState } from './repository-identity.ts';
import { pruneRemote, type RemotePruneResult } from './remote-prune.ts';
import { decideRetention, type RetentionDecision } from './retention.ts';

export interface PruneResult {
  dry_run: boolean;
  decisions: (RetentionDecision & { kind: string; status: string; started_at: string })[];
  removed: string[];
  freed_chunks: number;
  freed_bytes: number;
  chains_removed: string[];
  safety_copies: (SafetyCopyCleanup & { source: string })[];
  /** The same policy applied on each remote (remotes[].retention, else the local one). */
  remotes: RemotePruneResult[];
}

const DAY_MS = 86_400_000;

/** Why a prune ran outside its schedule: a scheduled backup failed for lack of space. */
export type PruneTrigger = 'disk_full';

/**
 * Applies the retention policy. Order (the safety argument): decide; delete the manifests
 * of the backups to remove (each deletion is the commit point for that backup); then
 * collect chunks no remaining backup uses. A kill at any point leaves every remaining
 * backup complete; the next prune finishes the collection. A dry run reads only.
 */
export async function runPrune(ctx: JobContext, options: { dryRun: boolean; trigger?: PruneTrigger | undefined }): Promise<PruneResult> {
  const result: PruneResult = { dry_run: options.dryRun, decisions: [], removed: [], freed_chunks: 0, freed_bytes: 0, chains_removed: [], safety_copies: [], remotes: [] };
  // A fresh install has nothing to prune yet; a repository the catalog knows must be there.
  if (repositoryState(ctx.config, ctx.catalog).state === 'none') return result;
  const repo = await openRepository(ctx.config, ctx.catalog);
  const lock = options.dryRun ? undefined : await repo.lockWriter({ command: 'prune', timeoutMs: ctx.config.lockTimeoutMs, exclusiveOfReaders: true, signal: ctx.signal });
  const trigger = options.trigger ? { trigger: options.trigger } : {};
  const runId = lock ? await startRunUnderLock(ctx.catalog, lock, 'prune', trigger) : undefined;
  try {
    if (!options.dryRun) await syncCatalog(repo, ctx.catalog, ctx.log);
    const backups = ctx.catalog.listBackups();
    const now = ctx.now();
    const decisions = decideRetention(
      backups.map((b) => ({ name: b.name, kind: b.kind, status: b.status, time: new Date(b.started_at), sources: b.sources.filter(sourceSucceeded).map((o) => o.name) })),
      ctx.config.retention,
      ctx.config.timezone,
      now,
      isSafetyCopy,
    );
    const byName = new Map(backups.map((b) => [b.name, b]));
    result.decisions = decisions.map((d) => ({ ...d, kind: byName.get(d.name)!.kind, status: byName.get(d.name)!.status, started_at: byName.get(d.name)!.started_at }));
    const doomed = decisions.filter((d) => !d.keep).map((d) => d.name);
    result.removed = doomed;

    const before = new Date(now.getTime() - ctx.config.retention.preRestoreDays * DAY_MS);
    for (const source of ctx.sources) {
      if (!source.cleanSafetyCopies) continue;
      try {
        for (const copy of await source.cleanSafetyCopies(before, options.dryRun)) result.safety_copies.push({ source: source.name, ...copy });
      } catch (error) {
        ctx.log.warn({ source: source.name }, `could not look for old restore safety copies on ${source.describe()}: ${errorMessage(error)}`);
      }
    }
    if (options.dryRun) {
      for (const remote of ctx.config.remotes) result.remotes.push(await pruneRemote(ctx, repo, remote, true));
      return result;
    }

    const chains = new Set(doomed.map((name) => byName.get(name)!.chain));
    await repo.deleteManifests(...doomed);
    ctx.catalog.forgetBackup(...doomed);
    for (const name of doomed) ctx.log.info({ backup: name }, `pruned backup ${name}`);
    // Every chain, not only the touched ones: a prune also finishes what an interrupted one left.
    for (const chain of new Set([...chains, ...(await repo.listChains())])) {
      ctx.signal?.throwIfAborted();
      const freed = await collectChain(repo, ctx.catalog, chain, ctx.config.retention.gcGraceMs);
      result.freed_chunks += freed.chunks;
      result.freed_bytes += freed.bytes;
      if (freed.chainRemoved) result.chains_removed.push(chain);
    }
    for (const remote of ctx.config.remotes) result.remotes.push(await pruneRemote(ctx, repo, remote, false));
    const remoteFailures = result.remotes.filter((r) => !r.ok).map((r) => `remote ${r.remote}: ${r.error}`);
    const remotes = result.remotes.map(({ remote, ok, removed, packs_removed, freed_bytes, locked }) => ({ remote, ok, removed, packs_removed, freed_bytes, locked: locked.length }));
    ctx.catalog.finishRun(runId!, {
      status: remoteFailures.length ? 'partial' : 'ok',
      detail: { ...trigger, removed: doomed, freed_bytes: result.freed_bytes, chains_removed: result.chains_removed, remotes },
      ...(remoteFailures.length ? { error: remoteFailures.join('; ') } : {}),
    });
    ctx.log.info({ removed: doomed.length, freed_bytes: result.freed_bytes }, `prune removed ${doomed.length} backup(s), freed ${result.freed_bytes} bytes`);
    return result;
  } catch (error) {
    if (runId !== undefined) ctx.catalog.finishRun(runId, { status: 'failed', error: errorMessage(error) });
    throw error;
  } finally {
    await lock?.release();
  }
}
