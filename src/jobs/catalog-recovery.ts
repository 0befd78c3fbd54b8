import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Catalog } from '../catalog/catalog.ts';
import type { Config } from '../config/load.ts';
import { StackbackError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { readArtifact } from '../repository/artifact-reader.ts';
import { validateBackupName } from '../repository/manifest.ts';
import type { JobContext } from './context.ts';
import { syncCatalog } from './housekeeping.ts';
import { adopt, openConfiguredRepository } from './repository-identity.ts';

/**
 * Recreates the catalog's index (backups, artifacts, chunks) from the repository's
 * manifests alone: the repository is the source of truth. The run history is kept.
 */
export async function rebuildCatalog(ctx: JobContext): Promise<{ backups: number }> {
  // The operator's word: this repository is the one to index (also when the catalog knew another).
  const repo = adopt(ctx.catalog, await openConfiguredRepository(ctx.config));
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

/**
 * Brings a catalog back from the copy stored in backup `name` (the run history included),
 * on a machine that has only the repository; then indexes what the repository gained
 * since that copy. An existing catalog file is moved aside, never overwritten.
 */
export async function restoreCatalog(config: Config, log: Logger, name: string, force: boolean): Promise<{ backups: number; runs: number; moved_aside: string | null }> {
  validateBackupName(name);
  const repo = await openConfiguredRepository(config);
  const manifest = await repo.readManifest(name);
  const artifact = manifest.artifacts.find((a) => a.kind === 'catalog');
  if (!artifact) throw new StackbackError('ARTIFACT_NOT_FOUND', `backup ${name} holds no copy of the catalog (made by a stackback before catalogs travelled with backups?)`);
  const file = config.catalog.path;
  if (existsSync(file) && !force) {
    const existing = new Catalog(file);
    const count = existing.backupNames().length + existing.listRuns(1).length;
    existing.close();
    if (count > 0) throw new StackbackError('USAGE', `the catalog ${file} already holds backups or history`, 'pass --force to move it aside and restore the copy');
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o750 });
  const incoming = `${file}.restoring`;
  await pipeline(Readable.from(readArtifact(repo, manifest.chain, artifact, 'content')), createWriteStream(incoming, { mode: 0o640 }));
  let aside: string | null = null;
  if (existsSync(file)) {
    aside = `${file}.pre-restore-${new Date().toISOString().replace(/[-:]/g, '').slice(0, 15)}`;
    await rename(file, aside);
    // Its write-ahead log holds its latest transactions: it travels with it.
    for (const suffix of ['-wal', '-shm']) if (existsSync(`${file}${suffix}`)) await rename(`${file}${suffix}`, `${aside}${suffix}`);
  }
  await rename(incoming, file);
  const catalog = new Catalog(file);
  try {
    adopt(catalog, repo);
    await syncCatalog(repo, catalog, log);
    return { backups: catalog.backupNames().length, runs: catalog.listRuns(1_000_000).length, moved_aside: aside };
  } finally {
    catalog.close();
  }
}
