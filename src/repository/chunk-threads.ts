import { Worker } from 'node:worker_threads';
import { siblingModule } from '../sibling-module.ts';
import type { ChunkProblem, ModuleSink, ReadCheck, WriterThreadOptions } from './artifact-reader.ts';
import type { ChunkJob, ChunkJobOutcome, SinkQuestion } from './chunk-worker.ts';
import type { ArtifactManifest, ChunkRef } from './manifest.ts';
import type { Repository } from './repository.ts';
import { rebuildFailure } from './thread-failure.ts';

// A pipe job's `channel` (MainThreadChannel) is two int32 slots: the state goes from ASKED to
// ANSWERED (the answer slot then holds the answer) or to UNANSWERED; the thread sleeps on it in between.
export const STATE_SLOT = 0;
export const ANSWER_SLOT = 1;
export const ASKED = 1;
export const ANSWERED = 2;
const UNANSWERED = 3;

// The thread body, beside this file.
const WORKER = siblingModule(import.meta.url, 'chunk-worker');

interface ThreadRun {
  /** Resolves with the problems list (check jobs) or the sink's report (pipe jobs); rejects with the job's error. */
  done: Promise<{ problems: ChunkProblem[]; report?: unknown }>;
  stop(): void;
}

/** Runs one job on a thread of its own; `onQuestion` gets the questions of a pipe job's sink. */
function startThread(job: ChunkJob, what: string, onQuestion?: (question: unknown) => void): ThreadRun {
  const worker = new Worker(WORKER, { workerData: job });
  const done = new Promise<{ problems: ChunkProblem[]; report?: unknown }>((resolve, reject) => {
    let reported = false;
    worker.on('message', (message: ChunkJobOutcome | SinkQuestion) => {
      if ('question' in message) return onQuestion?.(message.question);
      reported = true;
      if (message.ok) resolve({ problems: message.problems ?? [], report: message.report });
      else reject(rebuildFailure(message.failure));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!reported) reject(new Error(`the thread ${what} ended with code ${code} before reporting`));
    });
  });
  return { done, stop: () => void worker.terminate() };
}

/**
 * Writes an artifact's checked plaintext into the named pipe `sink.pipe` from a worker thread,
 * as readArtifact would yield it, with blocking writes, or hands it to a sink module in that
 * thread (PlaintextSink). This
 * is the restore path into external tools: the tool (and the database server behind it)
 * waits on every gap in its input, and a thread with a tiny heap that does nothing but read,
 * check, decode and write leaves far fewer gaps than a busy main thread between garbage
 * collections. Rejects with the first problem: a damaged chunk (CHUNK_CORRUPT, …) or the
 * pipe's reader gone (an error with code EPIPE). Resolves with the sink's report.
 *
 * `options.nice` lowers the thread's CPU priority (Linux: the thread alone). The reading tool
 * keeps only a few milliseconds of data ahead of its database server, so whenever it
 * wakes up it must get a CPU at once: a writer at equal priority that is decoding the next
 * chunk makes it wait out the scheduler's time slice, and the server idles meanwhile
 * (measured: 0.45 s of a 4.5 s COPY at scale 50 on 2 cores; at nice 10, 0.15 s).
 */
export async function writeArtifactInThread(repo: Repository, chain: string, artifact: ArtifactManifest, check: ReadCheck, sink: { pipe: string } | ModuleSink, options: WriterThreadOptions): Promise<unknown> {
  const target = 'pipe' in sink ? { pipe: sink.pipe } : { module: sink.module, options: sink.options };
  const answer = 'pipe' in sink ? undefined : sink.answer;
  // The sink's MainThreadChannel: the thread sleeps on `channel` until its question is answered (see chunk-worker.ts).
  const channel = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
  const onQuestion = (question: unknown) => {
    const wake = (state: number, value = 0) => {
      Atomics.store(channel, ANSWER_SLOT, value);
      Atomics.store(channel, STATE_SLOT, state);
      Atomics.notify(channel, STATE_SLOT);
    };
    // Whatever happens to the answer, the thread must wake up.
    const answered = answer ? Promise.resolve().then(() => answer(question)) : Promise.reject(new Error('the sink has nobody to ask'));
    answered.then((value) => wake(ANSWERED, value), () => wake(UNANSWERED));
  };
  const job = { kind: 'pipe' as const, storage: await repo.storage.specFor(chain, artifact.chunks.map((c) => c.id)), chain, artifact, check, codec: repo.codec.spec, nice: options.nice, sink: target, channel };
  return (await startThread(job, `writing artifact ${artifact.id}`, onQuestion).done).report;
}

/**
 * Reads and hashes stored objects on as many threads as the storage takes at once
 * (ObjectStorage.hashThreads); `signal` stops them.
 */
export async function checkStoredInThreads(repo: Repository, chain: string, chunks: ChunkRef[], signal?: AbortSignal): Promise<ChunkProblem[]> {
  if (chunks.length === 0) return [];
  signal?.throwIfAborted();
  const threads = Math.min(repo.storage.hashThreads, chunks.length);
  // Runs of neighbouring chunks, of about equal stored bytes: a remote reads a run as a few ranged GETs.
  const total = chunks.reduce((sum, c) => sum + c.stored_size, 0);
  const shares: ChunkRef[][] = Array.from({ length: threads }, () => []);
  let done = 0;
  for (const chunk of chunks) {
    shares[Math.min(threads - 1, Math.floor((done * threads) / Math.max(1, total)))]!.push(chunk);
    done += chunk.stored_size;
  }
  const specs = await Promise.all(shares.map((share) => repo.storage.specFor(chain, share.map((c) => c.id))));
  // Stopped while the specs were made (a remote lists its packs): start nothing.
  signal?.throwIfAborted();
  const runs = shares.map((share, t) => startThread({ kind: 'check', storage: specs[t]!, chain, chunks: share }, `checking chunks of chain ${chain}`));
  const stopAll = () => runs.forEach((run) => run.stop());
  signal?.addEventListener('abort', stopAll, { once: true });
  try {
    return (await Promise.all(runs.map((r) => r.done))).flatMap((outcome) => outcome.problems);
  } catch (error) {
    // One failed: the others would go on reading the repository after the caller gave up.
    stopAll();
    throw signal?.aborted ? signal.reason : error;
  } finally {
    signal?.removeEventListener('abort', stopAll);
  }
}
