import { createHash } from 'node:crypto';
import { Chunker } from './chunker.ts';
import type { ChunkRef, Manifest } from './manifest.ts';
import type { Repository } from './repository.ts';
import { chunkKey } from './storage.ts';
import { ChunkWriteThreads } from './write-threads.ts';

/** Chunks a chain already holds (from committed backups): looked up to skip re-storing them. */
export interface ChunkIndex {
  lookup(chain: string, id: string): ChunkRef | undefined;
}

export interface StoredArtifact {
  size: number;
  sha256: string;
  chunks: ChunkRef[];
}

export interface WriterStats {
  bytesRead: number;
  bytesStored: number;
  chunks: number;
  chunksNew: number;
}

/**
 * Writes the artifacts of one backup into one chain. Reading, cutting, the artifact's hash
 * and the chunk ids (which decide what is new) run on the main thread; new chunks are
 * compressed, sealed and written by the write threads (write-threads.ts), through a few
 * fixed slots, so memory stays bounded whatever the artifact size. close() stops them.
 *
 * Write order (the crash-safety argument, storage.ts): chunk objects → the threads' and the
 * storage's sync() barrier → manifest. Nothing names a chunk before the chunk is durable.
 */
export class BackupWriter {
  readonly chain: string;
  readonly stats: WriterStats = { bytesRead: 0, bytesStored: 0, chunks: 0, chunksNew: 0 };
  /** Chunks written by this backup, for the catalog's chunk index. */
  readonly newChunks: ChunkRef[] = [];

  private readonly repo: Repository;
  private readonly index: ChunkIndex;
  private readonly compressionLevel: number;
  private readonly threadCount: number | undefined;
  private readonly yieldToForeground: (() => Promise<void> | undefined) | undefined;
  private readonly written = new Map<string, Promise<ChunkRef>>();
  /** Started with the first new chunk: a backup that finds every chunk stored starts none. */
  private threads: ChunkWriteThreads | undefined;
  /** The first failed write: reading stops at the next chunk instead of at the input's end. */
  private failure: unknown;

  constructor(repo: Repository, chain: string, index: ChunkIndex, options: { compressionLevel: number; threads?: number; yieldToForeground?: (() => Promise<void> | undefined) | undefined }) {
    this.repo = repo;
    this.chain = chain;
    this.index = index;
    this.compressionLevel = options.compressionLevel;
    this.threadCount = options.threads;
    this.yieldToForeground = options.yieldToForeground;
  }

  /** Reads `input` to its end and stores it; resolves once every chunk is durable. */
  async storeArtifact(input: AsyncIterable<Uint8Array>, onBytes?: (bytes: number) => void): Promise<StoredArtifact> {
    const chunker = new Chunker(this.repo.chunker);
    const whole = createHash('sha256');
    const refs: Promise<ChunkRef>[] = [];
    let size = 0;
    for await (const data of input) {
      // Hashing and chunking are the main thread's heaviest work: let control requests go first.
      const pause = this.yieldToForeground?.();
      if (pause) await pause;
      whole.update(data);
      size += data.length;
      this.stats.bytesRead += data.length;
      onBytes?.(data.length);
      for (const chunk of chunker.push(data)) refs.push((await this.addChunk(chunk)).ref);
    }
    const last = chunker.finish();
    if (last) refs.push((await this.addChunk(last)).ref);
    return { size, sha256: whole.digest('hex'), chunks: await Promise.all(refs) };
  }

  /**
   * Returns once the chunk is queued (waiting for a free slot), with its eventual ref
   * boxed: an awaited promise would otherwise be flattened and wait for the write. `plain`
   * is the chunker's own memory, valid until this returns: a new chunk is copied into a slot.
   */
  private async addChunk(plain: Uint8Array): Promise<{ ref: Promise<ChunkRef> }> {
    if (this.failure !== undefined) throw this.failure;
    this.stats.chunks += 1;
    const id = this.repo.codec.chunkId(plain);
    const pending = this.written.get(id);
    if (pending) return { ref: pending };
    const known = this.index.lookup(this.chain, id);
    // A dedup hit is only as good as the object behind it: one that is gone or has another size is written anew.
    if (known && (await this.repo.chunkSize(this.chain, id)) === known.stored_size) return { ref: Promise.resolve(known) };

    const threads = await this.startThreads();
    const slot = await threads.acquire();
    slot.bytes.set(plain);
    const size = plain.length;
    const write = threads.write(slot, size, chunkKey(this.chain, id)).then((stored) => this.recordNew(id, size, stored.storedSize, stored.storedSha256));
    this.written.set(id, write);
    // The ref promise is awaited by storeArtifact; a failure surfaces there.
    write.catch((error: unknown) => {
      this.failure ??= error;
    });
    return { ref: write };
  }

  private async startThreads(): Promise<ChunkWriteThreads> {
    if (this.threads) return this.threads;
    const spec = await this.repo.storage.specFor(this.chain, []);
    if (spec.kind !== 'local') throw new Error(`backups are written into a local repository, not ${this.repo.location}`);
    this.threads = new ChunkWriteThreads({ root: spec.root, codec: this.repo.codec.spec, level: this.compressionLevel, slotSize: this.repo.chunker.maxSize, threads: this.threadCount });
    return this.threads;
  }

  private recordNew(id: string, size: number, storedSize: number, storedSha256: string): ChunkRef {
    const ref: ChunkRef = { id, size, stored_size: storedSize, stored_sha256: storedSha256 };
    this.stats.chunksNew += 1;
    this.stats.bytesStored += storedSize;
    this.newChunks.push(ref);
    return ref;
  }

  /** Whether a chunk write has failed (the backup cannot be committed). */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Waits until no write is in flight, whatever their outcome (before discarding a failed backup). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.written.values());
  }

  /** Waits for every write, makes them durable, then writes the manifest. */
  async commit(manifest: Manifest): Promise<void> {
    await Promise.all(this.written.values());
    await this.threads?.sync();
    await this.repo.sync();
    await this.repo.writeManifest(manifest);
  }

  /** Stops the write threads (after commit, or after settle when the backup is discarded). */
  async close(): Promise<void> {
    await this.threads?.close();
  }
}
