import { errorMessage } from '../errors.ts';
import { validateBackupName } from '../repository/manifest.ts';
import { Repository } from '../repository/repository.ts';
import type { JobContext } from './context.ts';

export interface DeleteResult {
  backup: string;
  chain: string;
  chainRemoved: boolean;
  freedChunks: number;
  freedBytes: number;
}

/**
 * Deletes one backup: its manifest first (the commit point), then the chunks of its chain
 * that no remaining manifest names, or the whole chain when it was the last one. A crash
 * in between only leaves unreferenced chunks, which the next delete or GC removes.
 */
export async function deleteBackup(ctx: JobContext, name: string): Promise<DeleteResult> {
  validateBackupName(name);
  const repo = await Repository.open(ctx.config.repository.path, { create: false });
  const lock = await repo.lockWriter({ command: `delete ${name}`, timeoutMs: ctx.config.lockTimeoutMs, exclusiveOfReaders: true, signal: ctx.signal });
  const runId = ctx.catalog.startRun('delete', { backup: name });
  try {
    const manifest = await repo.readManifest(name);
    await repo.deleteManifest(name);
    const keep = new Set<string>();
    for (const other of await repo.listManifestNames()) {
      const m = await repo.readManifest(other);
      if (m.chain === manifest.chain) for (const a of m.artifacts) for (const c of a.chunks) keep.add(c.id);
    }
    const freed = await repo.removeChunksExcept(manifest.chain, keep);
    const chainRemoved = keep.size === 0;
    if (chainRemoved) await repo.removeChain(manifest.chain);
    ctx.catalog.forgetBackup(name, manifest.chain, chainRemoved);
    if (!chainRemoved) ctx.catalog.forgetChunksExcept(manifest.chain, keep);
    const result: DeleteResult = { backup: name, chain: manifest.chain, chainRemoved, freedChunks: freed.chunks, freedBytes: freed.bytes };
    ctx.catalog.finishRun(runId, { status: 'ok', backup: name, detail: { ...result } });
    ctx.log.info({ ...result }, `deleted backup ${name}`);
    return result;
  } catch (error) {
    ctx.catalog.finishRun(runId, { status: 'failed', backup: name, error: errorMessage(error) });
    throw error;
  } finally {
    await lock.release();
  }
}
