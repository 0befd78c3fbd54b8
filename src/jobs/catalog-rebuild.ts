import { Repository } from '../repository/repository.ts';
import type { JobContext } from './context.ts';

/**
 * Recreates the catalog's index (backups, artifacts, chunks) from the repository's
 * manifests alone: the repository is the source of truth. The run history is kept.
 */
export async function rebuildCatalog(ctx: JobContext): Promise<{ backups: number }> {
  const repo = await Repository.open(ctx.config.repository.path, { create: false });
  const lock = await repo.lockWriter({ command: 'catalog rebuild', timeoutMs: ctx.config.lockTimeoutMs, signal: ctx.signal });
  try {
    const manifests = [];
    // Read everything first: a damaged manifest stops the rebuild before the index is cleared.
    for (const name of await repo.listManifestNames()) manifests.push(await repo.readManifest(name));
    ctx.catalog.clearIndex();
    for (const manifest of manifests) ctx.catalog.recordBackup(manifest);
    ctx.log.info({ backups: manifests.length }, `catalog rebuilt from ${manifests.length} manifest(s)`);
    return { backups: manifests.length };
  } finally {
    await lock.release();
  }
}
