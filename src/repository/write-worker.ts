// The thread body behind write-threads.ts: compresses, seals, hashes and stores the chunks
// the main thread cut, reading each from its slot of the shared memory. Its heap stays tiny,
// so the megabytes it allocates per chunk cost next to nothing to collect, and none of it
// is the main thread's, which keeps reading, cutting and hashing meanwhile.
import { createHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { ObjectCodec } from './object-codec.ts';
import { releaseMemory } from './release-memory.ts';
import { lowerThreadPriority } from './thread-priority.ts';
import { LocalStorage } from './storage/local.ts';
import { describeFailure } from './thread-failure.ts';
import { WRITE_THREAD_NICE, type WriteReply, type WriteRequest, type WriteThreadSetup } from './write-threads.ts';

const setup = workerData as WriteThreadSetup;
// Below the main thread, pg_dump and its server: the control socket stays answerable during a
// backup, and on 2 cores the backup itself got no slower (paired, scale 30: 0.95× the wall
// time, 0.92× the CPU of nice 0; p99 of status requests during a backup 102–124 ms vs 147–182 ms).
lowerThreadPriority(WRITE_THREAD_NICE);
const memory = new Uint8Array(setup.memory);
const storage = new LocalStorage(setup.root);
const codec = new ObjectCodec(setup.codec);
/** Puts not yet durable: a sync waits for them before it syncs their folders. */
const puts = new Set<Promise<void>>();

async function answer(request: WriteRequest): Promise<WriteReply> {
  try {
    if (request.type === 'sync') {
      await Promise.allSettled(puts);
      await storage.sync();
      return { seq: request.seq, ok: true };
    }
    const start = request.slot * setup.slotSize;
    const stored = codec.encodeChunk(request.key, memory.subarray(start, start + request.length), setup.level);
    const storedSize = stored.length;
    const storedSha256 = createHash('sha256').update(stored).digest('hex');
    // The put's file writes run on the thread pool while this thread compresses the next chunk.
    const put = storage.put(request.key, stored);
    puts.add(put);
    try {
      await put;
    } finally {
      puts.delete(put);
      // Written (or failed): nothing reads these bytes again.
      releaseMemory(stored);
    }
    return { seq: request.seq, ok: true, storedSize, storedSha256 };
  } catch (error) {
    return { seq: request.seq, ok: false, failure: describeFailure(error) };
  }
}

parentPort!.on('message', (request: WriteRequest) => {
  void answer(request).then((reply) => parentPort!.postMessage(reply));
});
