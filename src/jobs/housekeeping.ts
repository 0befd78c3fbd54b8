import os from 'node:os';
import type { Catalog } from '../catalog/catalog.ts';
import type { Logger } from '../log.ts';
import { processAlive } from '../repository/lock.ts';
import type { Repository } from '../repository/repository.ts';

/**
 * Keeping the catalog true to the repository, and cleaning up after runs that never
 * finished. Everything here that deletes runs under the writer lock.
 */

/** Marks runs of dead processes on this host `interrupted` (safe without the lock: it only touches the catalog). */
export function markInterruptedRuns(catalog: Catalog, log: Logger): void {
  for (const run of catalog.markInterruptedRuns(os.hostname(), processAlive)) {
    log.warn({ run: run.id, kind: run.kind }, `run ${run.id} (${run.kind}, pid ${run.pid}) was interrupted: its process is gone`);
  }
}

/**
 * Deletes the chunks of `chain` that no manifest names, or the whole chain if no manifest
 * uses it. The manifests are read from the repository (the truth), found through the
 * catalog, which `syncCatalog` has just made complete.
 */
export async function collectChain(repo: Repository, catalog: Catalog, chain: string): Promise<{ chunks: number; bytes: number; chainRemoved: boolean }> {
  const keep = new Set<string>();
  for (const name of catalog.backupNamesInChain(chain)) {
    const manifest = await repo.readManifest(name);
    for (const artifact of manifest.artifacts) for (const chunk of artifact.chunks) keep.add(chunk.id);
  }
  const freed = await repo.removeChunksExcept(chain, keep);
  if (keep.size === 0) {
    await repo.removeChain(chain);
    catalog.forgetChain(chain);
  } else {
    catalog.forgetChunksExcept(chain, keep);
  }
  return { ...freed, chainRemoved: keep.size === 0 };
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
