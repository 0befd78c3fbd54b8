import { errorMessage } from '../errors.ts';
import { validateBackupName } from '../repository/manifest.ts';
import { openRepository } from './repository-identity.ts';
import type { JobContext } from './context.ts';
import { collectChain, startRunUnderLock, syncCatalog } from './housekeeping.ts';

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
  const repo = await openRepository(ctx.config, ctx.catalog);
  const lock = await repo.lockWriter({ command: `delete ${name}`, timeoutMs: ctx.config.lockTimeoutMs, exclusiveOfReaders: true, signal: ctx.signal });
  const runId = await startRunUnderLock(ctx.catalog, lock, 'delete', { backup: name });
  try {
    await syncCatalog(repo, ctx.catalog, ctx.log);
    const manifest = await repo.readManifest(name);
    await repo.deleteManifests(name);
    ctx.catalog.forgetBackup(name);
    const freed = await collectChain(repo, ctx.catalog, manifest.chain);
    const result: DeleteResult = { backup: name, chain: manifest.chain, chainRemoved: freed.chainRemoved, freedChunks: freed.chunks, freedBytes: freed.bytes };
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
