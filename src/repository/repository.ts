import { randomBytes, randomUUID } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { StackbackError } from '../errors.ts';
import { missingChunk } from './artifact-reader.ts';
import { type ChunkerParams, DEFAULT_CHUNKER } from './chunker.ts';
import { acquireDaemonLock, acquireReaderLock, acquireWriterLock, type Lock, type WriterLockOptions } from './lock.ts';
import { type Manifest, parseManifest } from './manifest.ts';
import { CHAINS, chainPrefix, chunkKey, keyName, manifestKey, MANIFESTS, type ObjectStorage, REPO_INFO_KEY, type StorageSpec } from './storage.ts';
import { LocalStorage } from './storage/local.ts';

/**
 * The repository (format version 1; DESIGN.md §3): repo.json, manifests and chunk objects,
 * kept in an ObjectStorage (storage.ts says how keys and crash safety work), plus locks/
 * beside them, which are local files. The repository is the source of truth; the catalog is
 * an index of it.
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

function parseRepoInfo(text: string, origin: string): RepoInfo {
  try {
    return JSON.parse(text) as RepoInfo;
  } catch (error) {
    throw new StackbackError('REPO_CORRUPT', `cannot read ${origin}: ${(error as Error).message}`);
  }
}

/** repo.json of the local repository at `root` (which must exist). */
export function readRepoInfo(root: string): RepoInfo {
  const infoFile = new LocalStorage(root).fileOf(REPO_INFO_KEY);
  let text: string;
  try {
    text = readFileSync(infoFile, 'utf8');
  } catch (error) {
    throw new StackbackError('REPO_CORRUPT', `cannot read ${infoFile}: ${(error as Error).message}`);
  }
  return parseRepoInfo(text, infoFile);
}

export class Repository {
  readonly info: RepoInfo;
  readonly storage: ObjectStorage;
  private readonly locksDir: string;

  private constructor(storage: LocalStorage, info: RepoInfo) {
    this.storage = storage;
    this.info = info;
    this.locksDir = path.join(storage.root, 'locks');
  }

  /**
   * Opens the repository at `root`. Never creates one: a missing repo.json is an error (a
   * disk that is not mounted must not turn into a new, empty repository).
   */
  static async open(root: string): Promise<Repository> {
    const storage = new LocalStorage(root);
    const text = await storage.get(REPO_INFO_KEY);
    if (!text) {
      throw new StackbackError('REPO_NOT_INITIALIZED', `no repository at ${root} (repo.json missing)`, 'run `stackback init`, or fix repository.path');
    }
    const info = parseRepoInfo(text.toString('utf8'), storage.fileOf(REPO_INFO_KEY));
    if (info.format !== REPO_FORMAT) {
      throw new StackbackError('REPO_FORMAT', `repository ${root} has format ${String(info.format)}; this stackback reads format ${REPO_FORMAT}`, 'use a stackback version that matches the repository');
    }
    const repo = new Repository(storage, info);
    await repo.ensureFolders(storage);
    return repo;
  }

  /** Makes a new repository at `root` (`stackback init`, or a first backup); refuses if one is there. */
  static async create(root: string): Promise<Repository> {
    const storage = new LocalStorage(root);
    if (await storage.stat(REPO_INFO_KEY)) {
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
    const repo = new Repository(storage, info);
    await repo.ensureFolders(storage);
    // repo.json last: a folder without it is not a repository yet.
    await storage.put(REPO_INFO_KEY, Buffer.from(`${JSON.stringify(info, null, 2)}\n`));
    await storage.sync();
    return repo;
  }

  private async ensureFolders(storage: LocalStorage): Promise<void> {
    await storage.ensureFolders();
    await fs.mkdir(this.locksDir, { recursive: true, mode: 0o750 });
  }

  /** For people: where the repository is. */
  get location(): string {
    return this.storage.location;
  }

  /** What a worker thread needs to open the repository's storage itself. */
  get storageSpec(): StorageSpec {
    return this.storage.spec;
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

  /** Stores one chunk object; it may vanish in a crash until sync(), which must come before the manifest naming it. */
  async writeChunk(chain: string, id: string, stored: Buffer): Promise<void> {
    await this.storage.put(chunkKey(chain, id), stored);
  }

  /** The durability barrier: every chunk written (and object removed) before it survives a crash. */
  async sync(): Promise<void> {
    await this.storage.sync();
  }

  /** The stored bytes of a chunk; CHUNK_MISSING if the object is gone. */
  async readChunk(chain: string, id: string): Promise<Buffer> {
    const stored = await this.storage.get(chunkKey(chain, id));
    if (!stored) throw missingChunk(chain, id);
    return stored;
  }

  async chunkSize(chain: string, id: string): Promise<number | undefined> {
    return (await this.storage.stat(chunkKey(chain, id)))?.size;
  }

  async removeChunk(chain: string, id: string): Promise<void> {
    await this.storage.remove(chunkKey(chain, id));
  }

  /** The commit point of a backup. */
  async writeManifest(manifest: Manifest): Promise<void> {
    await this.storage.put(manifestKey(manifest.name), Buffer.from(`${JSON.stringify(manifest)}\n`));
    await this.storage.sync();
  }

  async hasManifest(name: string): Promise<boolean> {
    return (await this.storage.stat(manifestKey(name))) !== undefined;
  }

  async readManifest(name: string): Promise<Manifest> {
    const key = manifestKey(name);
    const text = await this.storage.get(key);
    if (!text) throw new StackbackError('BACKUP_NOT_FOUND', `backup ${name} not found in the repository`, '`stackback list` shows the backups');
    return parseManifest(text.toString('utf8'), `${this.location}/${key}`);
  }

  async listManifestNames(): Promise<string[]> {
    const names: string[] = [];
    for await (const key of this.storage.list(MANIFESTS)) names.push(keyName(key).slice(0, -'.json'.length));
    return names.sort();
  }

  /** The commit point of a deletion: after this the backups no longer exist (one sync for all). */
  async deleteManifests(...names: string[]): Promise<void> {
    for (const name of names) await this.storage.remove(manifestKey(name));
    await this.storage.sync();
  }

  async removeChain(chain: string): Promise<void> {
    await this.storage.remove(chainPrefix(chain));
  }

  /**
   * Deletes the chunk objects of `chain` for which `remove(id, mtimeMs)` says so, as the
   * storage lists them (memory stays bounded whatever the chain's size); removes the chain
   * when nothing is left. Returns what was freed and what remains.
   */
  async removeChunksWhere(chain: string, remove: (id: string, mtimeMs: number) => boolean): Promise<{ chunks: number; bytes: number; remaining: number }> {
    const result = { chunks: 0, bytes: 0, remaining: 0 };
    const prefix = chainPrefix(chain);
    for await (const key of this.storage.list(prefix)) {
      const info = await this.storage.stat(key);
      if (!info) continue;
      if (!remove(keyName(key), info.mtimeMs)) {
        result.remaining += 1;
        continue;
      }
      await this.storage.remove(key);
      result.chunks += 1;
      result.bytes += info.size;
    }
    if (result.remaining === 0) await this.storage.remove(prefix);
    return result;
  }

  async listChains(): Promise<string[]> {
    const chains: string[] = [];
    for await (const prefix of this.storage.list(CHAINS)) chains.push(keyName(prefix));
    return chains.sort();
  }

  /** Removes what writes that never finished left behind (call under the writer lock). */
  async cleanTemp(): Promise<number> {
    return this.storage.removeUnfinished();
  }

  /** Bytes the repository can still take, or undefined where its storage cannot tell. */
  async freeBytes(): Promise<number | undefined> {
    return this.storage.freeBytes();
  }
}
