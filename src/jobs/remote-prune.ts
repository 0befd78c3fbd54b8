import type { RemoteConfig } from '../config/load.ts';
import { errorDetails, errorMessage, isStackbackError } from '../errors.ts';
import { isSafetyCopy, type Manifest, sourceSucceeded } from '../repository/manifest.ts';
import type { Repository } from '../repository/repository.ts';
import { manifestKey, MANIFESTS } from '../repository/storage.ts';
import { packKey } from '../repository/storage/packs.ts';
import type { JobContext } from './context.ts';
import { type OpenedRemote, openRemote, remoteBackupNames } from './remote-repository.ts';
import { decideRetention, type RetentionDecision } from './retention.ts';

export interface RemotePruneResult {
  remote: string;
  ok: boolean;
  /** Why this remote's prune failed, with its code and what to do. */
  error?: string;
  error_code?: string;
  hint?: string;
  decisions: (RetentionDecision & { kind: string; status: string; started_at: string })[];
  removed: string[];
  packs_removed: number;
  freed_bytes: number;
  /** Objects the policy would remove but that object lock still protects, with the date it ends. */
  locked: { key: string; until: string }[];
}

const DAY_MS = 86_400_000;

/**
 * Retention on a remote: the remote's policy (remotes[].retention, else the local one) over
 * the backups on the remote, from their manifests. Same order as locally: decide, delete the
 * manifests (each deletion is the commit point), then delete the packs no remaining backup
 * uses and older than gc_grace. A pack some remaining backup still uses a chunk of stays whole
 * (no repacking). Objects that object lock still protects are kept and reported, never an
 * error. Runs inside prune, under the local writer lock (no copy runs meanwhile).
 */
export async function pruneRemote(ctx: JobContext, local: Repository, remote: RemoteConfig, dryRun: boolean): Promise<RemotePruneResult> {
  const result: RemotePruneResult = { remote: remote.name, ok: true, decisions: [], removed: [], packs_removed: 0, freed_bytes: 0, locked: [] };
  let opened: OpenedRemote | undefined;
  try {
    try {
      opened = await openRemote(ctx.config, ctx.catalog, remote.name, { local });
    } catch (error) {
      // Nothing copied there yet: nothing to prune.
      if (isStackbackError(error) && error.code === 'REPO_NOT_INITIALIZED') return result;
      throw error;
    }
    const now = ctx.now();
    const lockedUntil = (uploadedMs: number) => (remote.objectLock && uploadedMs + remote.objectLock.days * DAY_MS > now.getTime() ? new Date(uploadedMs + remote.objectLock.days * DAY_MS) : undefined);
    const manifests: Manifest[] = [];
    for (const name of await remoteBackupNames(opened, now)) manifests.push(await opened.repo.readManifest(name));
    const decisions = decideRetention(
      manifests.map((m) => ({ name: m.name, kind: m.kind, status: m.status, time: new Date(m.started_at), sources: m.sources.filter(sourceSucceeded).map((o) => o.name) })),
      remote.retention ?? ctx.config.retention,
      ctx.config.timezone,
      now,
      isSafetyCopy,
    );
    const byName = new Map(manifests.map((m) => [m.name, m]));
    result.decisions = decisions.map((d) => ({ ...d, kind: byName.get(d.name)!.kind, status: byName.get(d.name)!.status, started_at: byName.get(d.name)!.started_at }));
    const uploaded = new Map<string, number>();
    for await (const object of opened.storage.bucket.list(MANIFESTS)) uploaded.set(object.key, object.mtimeMs);
    for (const decision of decisions.filter((d) => !d.keep)) {
      const key = manifestKey(decision.name);
      const until = lockedUntil(uploaded.get(key) ?? now.getTime());
      if (until) result.locked.push({ key, until: until.toISOString() });
      else result.removed.push(decision.name);
    }
    if (dryRun) return result;

    for (const name of [...result.removed]) {
      if (!(await removeUnlessLocked(opened, manifestKey(name), result, remote))) result.removed.splice(result.removed.indexOf(name), 1);
      else ctx.log.info({ remote: remote.name, backup: name }, `pruned backup ${name} on remote ${remote.name}`);
    }
    const gone = new Set(result.removed);
    const remaining = manifests.filter((m) => !gone.has(m.name));
    opened.known.setBackups(remaining.map((m) => m.name), now);
    await collectPacks(ctx, opened, remaining, result, lockedUntil);
    ctx.log.info({ remote: remote.name, removed: result.removed.length, freed_bytes: result.freed_bytes, locked: result.locked.length }, `prune of remote ${remote.name}: removed ${result.removed.length} backup(s) and ${result.packs_removed} pack(s), freed ${result.freed_bytes} bytes${result.locked.length ? `; ${result.locked.length} object(s) kept under object lock` : ''}`);
  } catch (error) {
    if (ctx.signal?.aborted) throw error;
    const details = errorDetails(error);
    Object.assign(result, { ok: false, error: details.message, error_code: details.code, ...(details.hint ? { hint: details.hint } : {}) });
    ctx.log.error({ remote: remote.name }, `prune of remote ${remote.name} failed: ${errorMessage(error)}`);
  } finally {
    opened?.close();
  }
  return result;
}

/** Deletes the packs no remaining backup uses a chunk of (whole chains first), older than gc_grace and not locked. */
async function collectPacks(ctx: JobContext, opened: OpenedRemote, remaining: Manifest[], result: RemotePruneResult, lockedUntil: (uploadedMs: number) => Date | undefined): Promise<void> {
  const used = new Map<string, Set<string>>();
  for (const manifest of remaining) {
    let ids = used.get(manifest.chain);
    if (!ids) used.set(manifest.chain, (ids = new Set()));
    for (const artifact of manifest.artifacts) for (const chunk of artifact.chunks) ids.add(chunk.id);
  }
  const graceEnd = ctx.now().getTime() - (opened.config.retention ?? ctx.config.retention).gcGraceMs;
  for await (const pack of opened.storage.listPacks()) {
    ctx.signal?.throwIfAborted();
    // Young packs may belong to a copy that has not written its manifest yet (or to the grace an operator asked for).
    if (pack.mtimeMs > graceEnd) continue;
    const ids = used.get(pack.chain);
    if (ids) {
      await opened.storage.ensureChain(pack.chain);
      if (opened.known.packEntries(pack.chain, pack.packId).some((entry) => ids.has(entry.id))) continue;
    }
    const key = packKey(pack.chain, pack.packId);
    const until = lockedUntil(pack.mtimeMs);
    if (until) {
      result.locked.push({ key, until: until.toISOString() });
      continue;
    }
    if (await removeUnlessLocked(opened, key, result, opened.config, () => opened.storage.removePack(pack.chain, pack.packId))) {
      result.packs_removed += 1;
      result.freed_bytes += pack.size;
    }
  }
}

/** Deletes `key`; a refusal of a bucket with object lock counts as locked (reported), not as a failure. */
async function removeUnlessLocked(opened: OpenedRemote, key: string, result: RemotePruneResult, remote: RemoteConfig, remove = () => opened.storage.remove(key)): Promise<boolean> {
  try {
    await remove();
    return true;
  } catch (error) {
    if (remote.objectLock && isStackbackError(error) && error.code === 'REMOTE_AUTH') {
      result.locked.push({ key, until: 'unknown (the bucket refused the delete)' });
      return false;
    }
    throw error;
  }
}
