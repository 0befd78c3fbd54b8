import { closeSync, fstatSync, promises as fs, openSync, readSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { StackbackError } from '../../errors.ts';
import { syncFolder, writeFileDurably } from '../atomic-file.ts';
import { CHAINS, checkChainId, checkChunkId, manifestKey, MANIFESTS, type ObjectInfo, type ObjectStorage, type ReadScratch, REPO_INFO_KEY } from '../storage.ts';

/**
 * The repository in a local folder (DESIGN.md §3); the only place that turns keys into paths:
 *   repo.json
 *   manifests/<backup>.json
 *   chains/<chain>/<aa>/<chunk-id>   (aa: the id's first two hex digits, so no folder grows past ~1/256 of a chain)
 *   tmp/                             temp files of puts in flight (same filesystem, so the rename is atomic)
 * A put is temp file → fsync → rename; the folders it touched are fsynced by sync().
 * locks/ sits beside these but is not an object (lock.ts).
 */
export class LocalStorage implements ObjectStorage {
  readonly root: string;
  /** Folders whose entries changed since the last sync (and that exist, as far as this process knows). */
  private readonly unsynced = new Set<string>();

  constructor(root: string) {
    this.root = root;
  }

  async specFor(): Promise<{ kind: 'local'; root: string }> {
    return { kind: 'local', root: this.root };
  }

  /** Local reads are hashing-bound: a thread per core, at most 4. */
  get hashThreads(): number {
    return Math.min(4, availableParallelism());
  }

  get location(): string {
    return this.root;
  }

  get tempDir(): string {
    return path.join(this.root, 'tmp');
  }

  /** Makes the top-level folders (opening or creating a repository). */
  async ensureFolders(): Promise<void> {
    for (const dir of [this.root, this.folderOf(CHAINS), this.folderOf(MANIFESTS), this.tempDir]) {
      await fs.mkdir(dir, { recursive: true, mode: 0o750 });
    }
  }

  /** The file of an object key; anything that is not a valid key is REPO_CORRUPT. */
  fileOf(key: string): string {
    if (key === REPO_INFO_KEY) return path.join(this.root, key);
    const parts = key.split('/');
    if (parts.length === 2 && `${parts[0]}/` === MANIFESTS && parts[1]!.endsWith('.json')) {
      return path.join(this.root, manifestKey(parts[1]!.slice(0, -'.json'.length)));
    }
    if (parts.length === 3 && `${parts[0]}/` === CHAINS) {
      const id = checkChunkId(parts[2]!);
      return path.join(this.root, 'chains', checkChainId(parts[1]!), id.slice(0, 2), id);
    }
    throw invalidKey(key);
  }

  /** The folder of a prefix: manifests/, chains/ or chains/<chain>/. */
  private folderOf(prefix: string): string {
    if (prefix === MANIFESTS || prefix === CHAINS) return path.join(this.root, prefix.slice(0, -1));
    const parts = prefix.split('/');
    if (parts.length === 3 && `${parts[0]}/` === CHAINS && parts[2] === '') return path.join(this.root, 'chains', checkChainId(parts[1]!));
    throw invalidKey(prefix);
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const target = this.fileOf(key);
    const folder = path.dirname(target);
    if (!this.unsynced.has(folder)) {
      await fs.mkdir(folder, { recursive: true, mode: 0o750 });
      // Its parents below the root too: a folder made by this put is durable only once its parent is synced.
      for (let dir = folder; ; dir = path.dirname(dir)) {
        this.unsynced.add(dir);
        if (dir === this.root || path.dirname(dir) === this.root) break;
      }
    }
    try {
      await writeFileDurably(this.tempDir, target, data);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw new StackbackError('DISK_SPACE', `the repository's disk is full (${code}) at ${this.root}`, 'free space or move repository.path; the failed backup frees what it wrote', { cause: error });
      }
      throw error;
    }
  }

  async sync(): Promise<void> {
    const folders = [...this.unsynced];
    this.unsynced.clear();
    for (const folder of folders) {
      try {
        await syncFolder(folder);
      } catch (error) {
        // Removed since (a discarded chain): nothing of it is left to make durable.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
  }

  async get(key: string, scratch?: ReadScratch): Promise<Buffer | undefined> {
    const file = this.fileOf(key);
    if (scratch) return readInto(file, scratch);
    try {
      return await fs.readFile(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async getStream(key: string): Promise<Readable | undefined> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(this.fileOf(key), 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    return handle.createReadStream();
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const info = await fs.stat(this.fileOf(key));
      return { size: info.size, mtimeMs: info.mtimeMs };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    const folder = this.folderOf(prefix);
    const names = await readdirIfAny(folder);
    if (prefix === CHAINS) {
      for (const chain of names) yield `${prefix}${chain}/`;
    } else if (prefix === MANIFESTS) {
      for (const name of names) if (name.endsWith('.json')) yield `${prefix}${name}`;
    } else {
      // One fan-out folder listed at a time: memory stays flat however big the chain.
      for (const fanOut of names) for (const id of await readdirIfAny(path.join(folder, fanOut))) yield `${prefix}${id}`;
    }
  }

  async remove(key: string): Promise<void> {
    if (key.endsWith('/')) {
      const folder = this.folderOf(key);
      await fs.rm(folder, { recursive: true, force: true });
      for (const dir of this.unsynced) if (dir === folder || dir.startsWith(`${folder}${path.sep}`)) this.unsynced.delete(dir);
      this.unsynced.add(path.dirname(folder));
      return;
    }
    const file = this.fileOf(key);
    await fs.rm(file, { force: true });
    this.unsynced.add(path.dirname(file));
  }

  async removeUnfinished(): Promise<number> {
    const names = await fs.readdir(this.tempDir);
    for (const name of names) await fs.rm(path.join(this.tempDir, name), { recursive: true, force: true });
    return names.length;
  }

  async freeBytes(): Promise<number> {
    const stats = await fs.statfs(this.root);
    return stats.bavail * stats.bsize;
  }
}

function invalidKey(key: string): StackbackError {
  return new StackbackError('REPO_CORRUPT', `invalid object key ${JSON.stringify(key)}`);
}

async function readdirIfAny(folder: string): Promise<string[]> {
  try {
    return await fs.readdir(folder);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** A plain blocking read into the scratch buffer: the restore thread's hot loop, no copies. */
function readInto(file: string, scratch: ReadScratch): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    if (scratch.buffer.length < size) scratch.buffer = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const read = readSync(fd, scratch.buffer, filled, size - filled, null);
      if (read === 0) break;
      filled += read;
    }
    return scratch.buffer.subarray(0, filled);
  } finally {
    closeSync(fd);
  }
}
