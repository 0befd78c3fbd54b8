import os from 'node:os';
import type { Catalog } from '../catalog/catalog.ts';
import type { Logger } from '../log.ts';
import { processAlive } from '../process-identity.ts';
import type { Lock } from '../repository/lock.ts';
import type { Repository } from '../repository/repository.ts';

/**
 * Keeping the catalog true to the repository, and cleaning up after runs that never
 * finished. Everything here that deletes runs under the writer lock.
 */

/** Marks runs whose process is gone `interrupted` (safe without the lock: it only touches the catalog). */
export function markInterruptedRuns(catalog: Catalog, log: Logger): void {
  for (const run of catalog.markInterruptedRuns((owner) => processAlive(owner, owner.host === os.hostname()))) {
    log.warn({ run: run.id, kind: run.kind }, `run ${run.id} (${run.kind}, pid ${run.pid}) was interrupted: its process is gone`);
  }
}

/**
 * Deletes the chunks of `chain` that no backup uses (the catalog answers, one indexed
 * lookup per file, so memory stays bounded), and the chain folder once it is empty.
 * Chunks younger than `graceMs` are left for a later run. Call under the writer lock,
 * after `syncCatalog`, so the catalog knows every manifest.
 */
export async function collectChain(repo: Repository, catalog: Catalog, chain: string, graceMs = 0): Promise<{ chunks: number; bytes: number; chainRemoved: boolean }> {
  const now = Date.now();
  // Index rows first, files after: a crash in between leaves files without rows (collected next time), never rows without files.
  catalog.forgetUnusedChunks(chain);
  const freed = await repo.removeChunksWhere(chain, (id, mtimeMs) => now - mtimeMs >= graceMs && !catalog.chunkInUse(chain, id));
  if (freed.remaining === 0) catalog.forgetChain(chain);
  return { chunks: freed.chunks, bytes: freed.bytes, chainRemoved: freed.remaining === 0 };
}

/** Indexes manifests the catalog lacks (a crash between manifest and catalog) and forgets backups whose manifest is gone. */
export async function syncCatalog(repo: Repository, catalog: Catalog, log: Logger): Promise<void> {
  const onDisk = new Set(await repo.listManifestNames());
  const indexed = new Set(catalog.backupNames());
  for (const name of onDisk) {
    if (indexed.has(name)) continue;
    catalog.recordBackup(await repo.readManifest(name));
    log.warn({ backup: name }, `backup ${name} was in the repository but not in the catalog: indexed it`);
  }
  for (const name of indexed) {
    if (onDisk.has(name)) continue;
    catalog.forgetBackup(name);
    log.warn({ backup: name }, `backup ${name} was in the catalog but its manifest is gone: forgot it`);
  }
}

/**
 * Before a writing job: catalog in sync, then what crashed runs left behind removed:
 * temp files, chains no manifest uses, and chunks that interrupted backups added to a chain.
 */
export async function cleanUpBeforeWriting(repo: Repository, catalog: Catalog, log: Logger): Promise<void> {
  await syncCatalog(repo, catalog, log);
  const temp = await repo.cleanTemp();
  if (temp > 0) log.info({ files: temp }, `removed ${temp} temp file(s) of unfinished writes`);
  const usedChains = new Set(catalog.chains());
  for (const chain of await repo.listChains()) {
    if (usedChains.has(chain)) continue;
    await repo.removeChain(chain);
    catalog.forgetChain(chain);
    log.info({ chain }, `removed chain ${chain}: no backup uses it (left by an unfinished full backup)`);
  }
  for (const run of catalog.unfinishedBackupRuns()) {
    const chain = run.detail?.chain;
    if (typeof chain === 'string' && usedChains.has(chain)) {
      const freed = await collectChain(repo, catalog, chain);
      if (freed.chunks > 0) log.info({ chain, ...freed }, `removed ${freed.chunks} chunk(s) left in chain ${chain} by unfinished run ${run.id}`);
    }
    catalog.updateRunDetail(run.id, { cleaned: true });
  }
}

/**
 * Records the start of a run taken under `lock`. If even that fails (a full disk, a busy
 * catalog), the lock is released: held by a live process it would never look stale.
 */
export async function startRunUnderLock(catalog: Catalog, lock: Lock, kind: string, detail: Record<string, unknown>): Promise<number> {
  try {
    return catalog.startRun(kind, detail);
  } catch (error) {
    await lock.release();
    throw error;
  }
}
