import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { StackbackError } from '../errors.ts';
import { missingChunk } from './artifact-reader.ts';
import { replaceFileDurably, syncFolder, writeFileDurably } from './atomic-file.ts';
import { type ChunkerParams, DEFAULT_CHUNKER } from './chunker.ts';
import { acquireDaemonLock, acquireReaderLock, acquireWriterLock, type Lock, type WriterLockOptions } from './lock.ts';
import { type Manifest, parseManifest, validateBackupName } from './manifest.ts';

/**
 * The repository on disk (format version 1; DESIGN.md §3):
 *   repo.json                         format, id, chunker parameters, codec
 *   chains/<chain>/<aa>/<chunk-id>    write-once chunk objects, one namespace per chain
 *   manifests/<backup>.json           one per completed backup, written last
 *   locks/                            writer and reader locks
 *   tmp/                              temp files of in-flight writes (same filesystem)
 * The repository is the source of truth; the catalog is an index of it.
 */
export const REPO_FORMAT = 1;

export interface RepoInfo {
  format: typeof REPO_FORMAT;
  id: string;
  created_at: string;
  chunker: ChunkerParams;
  codec: 'zstd';
  encryption: null;
}

/** repo.json of the repository at `root` (which must exist). */
export function readRepoInfo(root: string): RepoInfo {
  const infoFile = path.join(root, 'repo.json');
  try {
    return JSON.parse(readFileSync(infoFile, 'utf8')) as RepoInfo;
  } catch (error) {
    throw new StackbackError('REPO_CORRUPT', `cannot read ${infoFile}: ${(error as Error).message}`);
  }
}

const CHUNK_ID = /^[0-9a-f]{64}$/;
const CHAIN_ID = /^[0-9a-z-]{1,64}$/;

export class Repository {
  readonly root: string;
  readonly info: RepoInfo;

  private constructor(root: string, info: RepoInfo) {
    this.root = root;
    this.info = info;
  }

  /**
   * Opens the repository at `root`. Never creates one: a missing repo.json is an error (a
   * disk that is not mounted must not turn into a new, empty repository).
   */
  static async open(root: string): Promise<Repository> {
    const infoFile = path.join(root, 'repo.json');
    if (!existsSync(infoFile)) {
      throw new StackbackError('REPO_NOT_INITIALIZED', `no repository at ${root} (repo.json missing)`, 'run `stackback init`, or fix repository.path');
    }
    const info = readRepoInfo(root);
    if (info.format !== REPO_FORMAT) {
      throw new StackbackError('REPO_FORMAT', `repository ${root} has format ${String(info.format)}; this stackback reads format ${REPO_FORMAT}`, 'use a stackback version that matches the repository');
    }
    const repo = new Repository(root, info);
    await repo.ensureFolders();
    return repo;
  }

  /** Makes a new repository at `root` (`stackback init`, or a first backup); refuses if one is there. */
  static async create(root: string): Promise<Repository> {
    if (existsSync(path.join(root, 'repo.json'))) {
      throw new StackbackError('REPO_EXISTS', `a repository already exists at ${root} (id ${readRepoInfo(root).id})`, 'use it as it is, or choose another repository.path');
    }
    const info: RepoInfo = {
      format: REPO_FORMAT,
      id: randomUUID(),
      created_at: new Date().toISOString(),
      chunker: { ...DEFAULT_CHUNKER, seed: randomBytes(16).toString('hex') },
      codec: 'zstd',
      encryption: null,
    };
    const repo = new Repository(root, info);
    await repo.ensureFolders();
    // repo.json last: a folder without it is not a repository yet.
    await replaceFileDurably(repo.tempDir, path.join(root, 'repo.json'), Buffer.from(`${JSON.stringify(info, null, 2)}\n`));
    return repo;
  }

  private async ensureFolders(): Promise<void> {
    for (const dir of [this.root, this.chainsDir, this.manifestsDir, this.locksDir, this.tempDir]) {
      await fs.mkdir(dir, { recursive: true, mode: 0o750 });
    }
  }

  get chainsDir(): string {
    return path.join(this.root, 'chains');
  }
  get manifestsDir(): string {
    return path.join(this.root, 'manifests');
  }
  get locksDir(): string {
    return path.join(this.root, 'locks');
  }
  get tempDir(): string {
    return path.join(this.root, 'tmp');
  }

  chainDir(chain: string): string {
    if (!CHAIN_ID.test(chain)) throw new StackbackError('REPO_CORRUPT', `invalid chain id ${JSON.stringify(chain)}`);
    return path.join(this.chainsDir, chain);
  }

  chunkPath(chain: string, id: string): string {
    if (!CHUNK_ID.test(id)) throw new StackbackError('REPO_CORRUPT', `invalid chunk id ${JSON.stringify(id)}`);
    return path.join(this.chainDir(chain), id.slice(0, 2), id);
  }

  /** A new chain id: time-ordered, so `ls chains/` reads oldest first. */
  static newChainId(at: Date): string {
    return `${at.getTime().toString(36)}-${randomBytes(4).toString('hex')}`;
  }

  async lockWriter(options: WriterLockOptions): Promise<Lock> {
    return acquireWriterLock(this.locksDir, options);
  }

  async lockReader(command: string, timeoutMs: number): Promise<Lock> {
    return acquireReaderLock(this.locksDir, command, timeoutMs);
  }

  async lockDaemon(): Promise<Lock> {
    return acquireDaemonLock(this.locksDir);
  }

  /**
   * Writes one chunk object durably except for the folder fsync: the caller collects the
   * folders (`touched`) and syncs them once, before the manifest that names the chunks.
   */
  async writeChunk(chain: string, id: string, stored: Buffer, touched: Set<string>): Promise<void> {
    const target = this.chunkPath(chain, id);
    const folder = path.dirname(target);
    if (!touched.has(folder)) {
      await fs.mkdir(folder, { recursive: true, mode: 0o750 });
      touched.add(folder);
      touched.add(path.dirname(folder));
      touched.add(this.chainsDir);
    }
    try {
      await writeFileDurably(this.tempDir, target, stored);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw new StackbackError('DISK_SPACE', `the repository's disk is full (${code}) at ${this.root}`, 'free space or move repository.path; the failed backup frees what it wrote', { cause: error });
      }
      throw error;
    }
  }

  async syncFolders(folders: Iterable<string>): Promise<void> {
    for (const folder of folders) await syncFolder(folder);
  }

  /** The stored bytes of a chunk; CHUNK_MISSING if the object is gone. */
  async readChunk(chain: string, id: string): Promise<Buffer> {
    try {
      return await fs.readFile(this.chunkPath(chain, id));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw missingChunk(chain, id);
      }
      throw error;
    }
  }

  async chunkSize(chain: string, id: string): Promise<number | undefined> {
    try {
      return (await fs.stat(this.chunkPath(chain, id))).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  private manifestPath(name: string): string {
    return path.join(this.manifestsDir, `${validateBackupName(name)}.json`);
  }

  /** The commit point of a backup. */
  async writeManifest(manifest: Manifest): Promise<void> {
    await replaceFileDurably(this.tempDir, this.manifestPath(manifest.name), Buffer.from(`${JSON.stringify(manifest)}\n`));
  }

  hasManifest(name: string): boolean {
    return existsSync(this.manifestPath(name));
  }

  async readManifest(name: string): Promise<Manifest> {
    const file = this.manifestPath(name);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new StackbackError('BACKUP_NOT_FOUND', `backup ${name} not found in the repository`, '`stackback list` shows the backups');
      }
      throw error;
    }
    return parseManifest(text, file);
  }

  async listManifestNames(): Promise<string[]> {
    const names = (await fs.readdir(this.manifestsDir)).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length));
    return names.sort();
  }

  /** The commit point of a deletion: after this the backups no longer exist (one folder fsync for all). */
  async deleteManifests(...names: string[]): Promise<void> {
    for (const name of names) await fs.rm(this.manifestPath(name));
    await syncFolder(this.manifestsDir);
  }

  async removeChain(chain: string): Promise<void> {
    await fs.rm(this.chainDir(chain), { recursive: true, force: true });
  }

  /**
   * Deletes the chunk objects of `chain` for which `remove(id, mtimeMs)` says so, one
   * folder listing at a time (memory stays bounded whatever the chain's size); removes the
   * chain folder when nothing is left. Returns what was freed and what remains.
   */
  async removeChunksWhere(chain: string, remove: (id: string, mtimeMs: number) => boolean): Promise<{ chunks: number; bytes: number; remaining: number }> {
    const result = { chunks: 0, bytes: 0, remaining: 0 };
    const chainDir = this.chainDir(chain);
    if (!existsSync(chainDir)) return result;
    for (const prefix of await fs.readdir(chainDir)) {
      const folder = path.join(chainDir, prefix);
      for (const id of await fs.readdir(folder)) {
        const file = path.join(folder, id);
        const info = await fs.stat(file);
        if (!remove(id, info.mtimeMs)) {
          result.remaining += 1;
          continue;
        }
        await fs.rm(file);
        result.chunks += 1;
        result.bytes += info.size;
      }
    }
    if (result.remaining === 0) await fs.rm(chainDir, { recursive: true, force: true });
    return result;
  }

  async listChains(): Promise<string[]> {
    return (await fs.readdir(this.chainsDir)).sort();
  }

  /** Removes temp files of writes that never finished (call under the writer lock). */
  async cleanTemp(): Promise<number> {
    const names = await fs.readdir(this.tempDir);
    for (const name of names) await fs.rm(path.join(this.tempDir, name), { recursive: true, force: true });
    return names.length;
  }
}
