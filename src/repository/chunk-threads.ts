import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { StackbackError, type ErrorCode } from '../errors.ts';
import { siblingModule } from '../sibling-module.ts';
import type { ChunkProblem, PipeWriteOptions, ReadCheck } from './artifact-reader.ts';
import type { ChunkJob, ChunkJobOutcome, ThreadFailure } from './chunk-worker.ts';
import type { ArtifactManifest, ChunkRef } from './manifest.ts';
import type { Repository } from './repository.ts';

/** A pipe job's thread posts this once it has closed its side pipes; it then waits for RELEASE or ABANDON (PipeJob.release). */
export const SIDES_CLOSED = 'sides-closed';
export const RELEASE = 1;
export const ABANDON = 2;
/** The error code of a feed given up because a side tool failed (that tool's own error says why). */
export const SIDES_FAILED = 'SIDES_FAILED';

// The thread body, beside this file.
const WORKER = siblingModule(import.meta.url, 'chunk-worker');

interface ThreadRun {
  /** Resolves with the problems list (check jobs) or the transform's report (pipe jobs); rejects with the job's error. */
  done: Promise<{ problems: ChunkProblem[]; report?: unknown }>;
  stop(): void;
}

/** Runs one job on a thread of its own; `onSidesClosed` answers a pipe job's SIDES_CLOSED message. */
function startThread(job: ChunkJob, what: string, onSidesClosed?: () => void): ThreadRun {
  const worker = new Worker(WORKER, { workerData: job });
  const done = new Promise<{ problems: ChunkProblem[]; report?: unknown }>((resolve, reject) => {
    let reported = false;
    worker.on('message', (message: ChunkJobOutcome | typeof SIDES_CLOSED) => {
      if (message === SIDES_CLOSED) return onSidesClosed?.();
      reported = true;
      if (message.ok) resolve({ problems: message.problems ?? [], report: message.report });
      else reject(rebuild(message.failure));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!reported) reject(new Error(`the thread ${what} ended with code ${code} before reporting`));
    });
  });
  return { done, stop: () => void worker.terminate() };
}

function rebuild(failure: ThreadFailure): Error {
  if (failure.stackback) return new StackbackError(failure.code as ErrorCode, failure.message, failure.hint);
  return Object.assign(new Error(failure.message), { code: failure.code });
}

/**
 * Writes an artifact's checked plaintext into the named pipe `pipe` from a worker thread,
 * as readArtifact would yield it, with blocking writes. This
 * is the restore path into external tools: the tool (and the database server behind it)
 * waits on every gap in its input, and a thread with a tiny heap that does nothing but read,
 * check, decode and write leaves far fewer gaps than a busy main thread between garbage
 * collections. Rejects with the first problem: a damaged chunk (CHUNK_CORRUPT, …) or the
 * pipe's reader gone (an error with code EPIPE).
 *
 * `options.nice` lowers the thread's CPU priority (Linux: the thread alone). The reading tool
 * keeps only a few milliseconds of data ahead of its database server, so whenever it
 * wakes up it must get a CPU at once: a writer at equal priority that is decoding the next
 * chunk makes it wait out the scheduler's time slice, and the server idles meanwhile
 * (measured: 0.45 s of a 4.5 s COPY at scale 50 on 2 cores; at nice 10, 0.15 s).
 */
export async function writeArtifactToPipe(repo: Repository, chain: string, artifact: ArtifactManifest, check: ReadCheck, pipe: string, options: PipeWriteOptions): Promise<unknown> {
  const { sides, ...rest } = options;
  // The thread waits on this flag (Atomics.wait) for the verdict on the side tools.
  const release = sides ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
  const answer = (verdict: number) => {
    Atomics.store(release!, 0, verdict);
    Atomics.notify(release!, 0);
  };
  const onSidesClosed = () => void sides!.done.then(() => answer(RELEASE), () => answer(ABANDON));
  const job = { kind: 'pipe' as const, storage: repo.storageSpec, chain, artifact, check, codec: repo.codec.spec, pipe, ...rest, sidePipes: sides?.pipes ?? [], release };
  return (await startThread(job, `writing artifact ${artifact.id}`, onSidesClosed).done).report;
}

/** Reads and hashes stored objects on as many threads as the machine has cores (at most 4); `signal` stops them. */
export async function checkStoredInThreads(repo: Repository, chain: string, chunks: ChunkRef[], signal?: AbortSignal): Promise<ChunkProblem[]> {
  if (chunks.length === 0) return [];
  signal?.throwIfAborted();
  const threads = Math.min(4, availableParallelism(), chunks.length);
  // Dealt round-robin: neighbouring chunks have similar sizes, so every thread gets a fair share.
  const shares = Array.from({ length: threads }, (_, t) => chunks.filter((_, index) => index % threads === t));
  const runs = shares.map((share) => startThread({ kind: 'check', storage: repo.storageSpec, chain, chunks: share }, `checking chunks of chain ${chain}`));
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
