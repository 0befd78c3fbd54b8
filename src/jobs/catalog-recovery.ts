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
import { type Manifest, validateBackupName } from '../repository/manifest.ts';
import type { Repository } from '../repository/repository.ts';
import type { JobContext } from './context.ts';
import { syncCatalog } from './housekeeping.ts';
import { openRemote } from './remote-repository.ts';
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
 * Brings a catalog back from the copy stored in a backup (the run history included), on a
 * machine that has only the repository — or, with `from`, only the config, the key and the
 * remote. `name` defaults to the newest backup that holds a catalog copy. Afterwards the
 * catalog indexes what the repository gained since that copy (or learns what the remote
 * holds). An existing catalog file is moved aside, never overwritten.
 */
export async function restoreCatalog(config: Config, log: Logger, options: { name?: string | undefined; force: boolean; from?: string | undefined }): Promise<{ backup: string; backups: number; runs: number; moved_aside: string | null }> {
  if (options.name !== undefined) validateBackupName(options.name);
  const remote = options.from === undefined ? undefined : await openRemote(config, undefined, options.from);
  try {
    const repo = remote?.repo ?? (await openConfiguredRepository(config));
    const manifest = options.name !== undefined ? await repo.readManifest(options.name) : await newestWithCatalog(repo);
    const artifact = manifest.artifacts.find((a) => a.kind === 'catalog');
    if (!artifact) throw new StackbackError('ARTIFACT_NOT_FOUND', `backup ${manifest.name} holds no copy of the catalog (made by a stackback before catalogs travelled with backups?)`);
    const file = config.catalog.path;
    if (existsSync(file) && !options.force) {
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
      // A remote's backups are not local ones: the catalog only learns which are there.
      if (remote) catalog.remote(remote.config.name).setBackups(await repo.listManifestNames(), new Date());
      else await syncCatalog(repo, catalog, log);
      return { backup: manifest.name, backups: catalog.backupNames().length, runs: catalog.listRuns(1_000_000).length, moved_aside: aside };
    } finally {
      catalog.close();
    }
  } finally {
    remote?.close();
  }
}

/** The newest backup (by its finish time) that carries a copy of the catalog. */
async function newestWithCatalog(repo: Repository): Promise<Manifest> {
  let newest: Manifest | undefined;
  for (const name of await repo.listManifestNames()) {
    const manifest = await repo.readManifest(name);
    if (manifest.artifacts.some((a) => a.kind === 'catalog') && (!newest || manifest.finished_at > newest.finished_at)) newest = manifest;
  }
  if (!newest) throw new StackbackError('BACKUP_NOT_FOUND', `${repo.location} holds no backup with a copy of the catalog`, 'name a backup, or check the repository path / remote prefix');
  return newest;
}
