import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { siblingModule } from '../sibling-module.ts';
import type { CodecSpec } from './object-codec.ts';
import { rebuildFailure, type ThreadFailure } from './thread-failure.ts';

// The thread body, beside this file.
const WORKER = siblingModule(import.meta.url, 'write-worker');

/** The CPU priority (nice) of the write threads (write-worker.ts says why). */
export const WRITE_THREAD_NICE = 10;

/** What a write thread is started with (structured-clone safe). */
export interface WriteThreadSetup {
  /** The local repository the thread writes into. */
  root: string;
  codec: CodecSpec;
  /** zstd level of the chunks. */
  level: number;
  /** The slots, `slotSize` bytes each, shared by every thread of a pool. */
  memory: SharedArrayBuffer;
  slotSize: number;
}

/** Store the chunk in slot `slot` (its first `length` bytes) under `key`; or make every write so far durable. */
export type WriteRequest = { type: 'write'; seq: number; slot: number; length: number; key: string } | { type: 'sync'; seq: number };

export type WriteReply = { seq: number; ok: true; storedSize?: number; storedSha256?: string } | { seq: number; ok: false; failure: ThreadFailure };

export interface StoredChunk {
  storedSize: number;
  storedSha256: string;
}

interface Pending {
  resolve(reply: WriteReply & { ok: true }): void;
  reject(error: unknown): void;
}

/** One thread and the requests it has not answered. */
class WriteThread {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();

  constructor(setup: WriteThreadSetup, onDeath: (thread: WriteThread, error: Error) => void) {
    this.worker = new Worker(WORKER, { workerData: setup });
    // Kept alive only while it owes an answer (ask): an idle pool never holds the process open.
    this.worker.unref();
    this.worker.on('message', (reply: WriteReply) => {
      const waiting = this.pending.get(reply.seq);
      if (!waiting) return;
      this.pending.delete(reply.seq);
      if (this.pending.size === 0) this.worker.unref();
      if (reply.ok) waiting.resolve(reply);
      else waiting.reject(rebuildFailure(reply.failure));
    });
    this.worker.once('error', (error) => onDeath(this, error));
    this.worker.once('exit', (code) => onDeath(this, new Error(`a chunk write thread ended with code ${code}`)));
  }

  ask(request: WriteRequest): Promise<WriteReply & { ok: true }> {
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(request.seq, { resolve, reject });
      this.worker.postMessage(request);
    });
  }

  failAll(error: Error): void {
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }
}

/** A slot of the pool's shared memory, held from acquire() until its chunk is written. */
export interface WriteSlot {
  readonly index: number;
  /** The slot's bytes: copy the chunk in, then write(). */
  readonly bytes: Uint8Array;
}

/**
 * The chunk writers of one backup: `threads` worker threads (write-worker.ts) that compress,
 * seal, hash and store chunks, fed through a few fixed buffers (slots) of shared memory. The slots
 * bound the memory a backup uses however large its artifacts, and since they are reused the
 * main thread allocates nothing per chunk (its garbage collector marks the whole program's
 * heap, so churn there is what costs).
 */
export class ChunkWriteThreads {
  private readonly threads: WriteThread[];
  private readonly slots: WriteSlot[];
  private readonly free: number[];
  private readonly slotWaiters: (() => void)[] = [];
  private seq = 0;
  /** Set once a thread died: every later request fails with it. */
  private broken: Error | undefined;

  constructor(options: { root: string; codec: CodecSpec; level: number; slotSize: number; threads?: number | undefined }) {
    const threads = options.threads ?? defaultThreads();
    // Two slots a thread (one being compressed, one whose file is being written), and one the main thread fills.
    const slots = 2 * threads + 1;
    if (!(Number.isInteger(threads) && threads >= 1 && options.slotSize > 0)) throw new Error(`invalid write pool: ${threads} threads, slots of ${options.slotSize} bytes`);
    const memory = new SharedArrayBuffer(slots * options.slotSize);
    const setup: WriteThreadSetup = { root: options.root, codec: options.codec, level: options.level, memory, slotSize: options.slotSize };
    this.slots = Array.from({ length: slots }, (_, index) => ({ index, bytes: new Uint8Array(memory, index * options.slotSize, options.slotSize) }));
    this.free = this.slots.map((slot) => slot.index);
    this.threads = Array.from({ length: threads }, () => new WriteThread(setup, (thread, error) => this.died(thread, error)));
  }

  /** Waits for a free slot. */
  async acquire(): Promise<WriteSlot> {
    while (this.free.length === 0) await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    return this.slots[this.free.pop()!]!;
  }

  /** Stores the first `length` bytes of `slot` under `key` on the least busy thread; the slot is free again once this settles. */
  async write(slot: WriteSlot, length: number, key: string): Promise<StoredChunk> {
    if (!(length > 0 && length <= slot.bytes.length) || this.free.includes(slot.index)) throw new Error(`chunk write of ${length} bytes from slot ${slot.index}, which is not acquired or too small`);
    try {
      if (this.broken) throw this.broken;
      const thread = this.threads.reduce((best, t) => (t.pending.size < best.pending.size ? t : best));
      const reply = await thread.ask({ type: 'write', seq: ++this.seq, slot: slot.index, length, key });
      return { storedSize: reply.storedSize!, storedSha256: reply.storedSha256! };
    } finally {
      this.free.push(slot.index);
      this.slotWaiters.shift()?.();
    }
  }

  /** Makes every chunk written so far durable (each thread syncs the folders it wrote into). */
  async sync(): Promise<void> {
    if (this.broken) throw this.broken;
    await Promise.all(this.threads.map((thread) => thread.ask({ type: 'sync', seq: ++this.seq })));
  }

  /** Stops the threads; a write still in flight fails. */
  async close(): Promise<void> {
    this.broken ??= new Error('the chunk writers were closed');
    await Promise.all(this.threads.map((thread) => thread.worker.terminate()));
  }

  private died(thread: WriteThread, error: Error): void {
    this.broken ??= error;
    thread.failAll(error);
  }
}

/**
 * A core for the main thread and the source (pg_dump and its server), the others for
 * compression, at most 3: past that, pg_dump sets the pace. Measured on 2 cores: one
 * thread takes the same wall time as two, for 9% less CPU (less contention with pg_dump).
 */
function defaultThreads(): number {
  return Math.max(1, Math.min(3, availableParallelism() - 1));
}
