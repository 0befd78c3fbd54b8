import { createHash } from 'node:crypto';
import { Chunker } from './chunker.ts';
import type { ChunkRef, Manifest } from './manifest.ts';
import type { Repository } from './repository.ts';

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
 * Writes the artifacts of one backup into one chain. Chunking and hashing run on the main
 * thread; compression runs on the thread pool and object writes overlap with both, with at
 * most `concurrency` chunks in flight so memory stays bounded whatever the artifact size.
 *
 * Write order (the crash-safety argument, storage.ts): chunk objects → the storage's sync()
 * barrier → manifest. Nothing names a chunk before the chunk is durable.
 */
export class BackupWriter {
  readonly chain: string;
  readonly stats: WriterStats = { bytesRead: 0, bytesStored: 0, chunks: 0, chunksNew: 0 };
  /** Chunks written by this backup, for the catalog's chunk index. */
  readonly newChunks: ChunkRef[] = [];

  private readonly repo: Repository;
  private readonly index: ChunkIndex;
  private readonly compressionLevel: number;
  private readonly concurrency: number;
  private readonly yieldToForeground: (() => Promise<void> | undefined) | undefined;
  private readonly written = new Map<string, Promise<ChunkRef>>();
  private readonly inFlight = new Set<Promise<unknown>>();
  /** The first failed write: reading stops at the next chunk instead of at the input's end. */
  private failure: unknown;

  constructor(repo: Repository, chain: string, index: ChunkIndex, options: { compressionLevel: number; concurrency?: number; yieldToForeground?: (() => Promise<void> | undefined) | undefined }) {
    this.repo = repo;
    this.chain = chain;
    this.index = index;
    this.compressionLevel = options.compressionLevel;
    this.concurrency = options.concurrency ?? 4;
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
    for (const chunk of chunker.finish()) refs.push((await this.addChunk(chunk)).ref);
    return { size, sha256: whole.digest('hex'), chunks: await Promise.all(refs) };
  }

  /**
   * Returns once the chunk is queued (waiting for a free slot), with its eventual ref
   * boxed: an awaited promise would otherwise be flattened and wait for the write.
   */
  private async addChunk(plain: Buffer): Promise<{ ref: Promise<ChunkRef> }> {
    if (this.failure !== undefined) throw this.failure;
    this.stats.chunks += 1;
    const id = this.repo.codec.chunkId(plain);
    const pending = this.written.get(id);
    if (pending) return { ref: pending };
    const known = this.index.lookup(this.chain, id);
    // A dedup hit is only as good as the object behind it: one that is gone or has another size is written anew.
    if (known && (await this.repo.chunkSize(this.chain, id)) === known.stored_size) return { ref: Promise.resolve(known) };

    while (this.inFlight.size >= this.concurrency) await Promise.race(this.inFlight);
    const write = this.writeChunk(id, plain);
    this.written.set(id, write);
    const slot = write.then(
      () => undefined,
      () => undefined,
    );
    this.inFlight.add(slot);
    void slot.finally(() => this.inFlight.delete(slot));
    // The ref promise is awaited by storeArtifact; a failure surfaces there.
    write.catch((error: unknown) => {
      this.failure ??= error;
    });
    return { ref: write };
  }

  private async writeChunk(id: string, plain: Buffer): Promise<ChunkRef> {
    const stored = await this.repo.writeChunk(this.chain, id, plain, this.compressionLevel);
    const ref: ChunkRef = {
      id,
      size: plain.length,
      stored_size: stored.length,
      stored_sha256: createHash('sha256').update(stored).digest('hex'),
    };
    this.stats.chunksNew += 1;
    this.stats.bytesStored += stored.length;
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
    await this.repo.sync();
    await this.repo.writeManifest(manifest);
  }
}
