import { availableParallelism } from 'node:os';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { StackbackError, type ErrorCode } from '../errors.ts';
import type { ChunkProblem, ReadCheck } from './artifact-reader.ts';
import type { ChunkJob, ChunkJobOutcome, ThreadFailure } from './chunk-worker.ts';
import type { ArtifactManifest, ChunkRef } from './manifest.ts';
import type { Repository } from './repository.ts';

// Beside this file: .ts when run from source (tests), .js once built.
const WORKER = new URL(`./chunk-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

/** Runs one job on a thread of its own; resolves with its problems list (check jobs) or nothing. */
function runInThread(job: ChunkJob, what: string): Promise<ChunkProblem[]> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER, { workerData: job });
    let reported = false;
    worker.once('message', (outcome: ChunkJobOutcome) => {
      reported = true;
      if (outcome.ok) resolve(outcome.problems ?? []);
      else reject(rebuild(outcome.failure));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!reported) reject(new Error(`the thread ${what} ended with code ${code} before reporting`));
    });
  });
}

function rebuild(failure: ThreadFailure): Error {
  if (failure.stackback) return new StackbackError(failure.code as ErrorCode, failure.message, failure.hint);
  return Object.assign(new Error(failure.message), { code: failure.code });
}

/**
 * Writes an artifact's checked plaintext into the named pipe `pipe` from a worker thread,
 * as readArtifact would yield it; `readerGone` fires once the reading tool has exited. This is the restore path into external tools: the tool
 * (and the database server behind it) waits on every gap in its input, and blocking writes
 * from a thread with a tiny heap leave far fewer gaps than a busy main thread's socket
 * writes between garbage collections. Rejects with the first problem: a damaged chunk
 * (CHUNK_CORRUPT, …) or the pipe's reader gone (an error with code EPIPE).
 */
export function writeArtifactToPipe(repo: Repository, chain: string, artifact: ArtifactManifest, check: ReadCheck, pipe: string, readerGone: AbortSignal): Promise<void> {
  const paths = artifact.chunks.map((c) => repo.chunkPath(chain, c.id));
  const gone = new SharedArrayBuffer(4);
  const flag = () => Atomics.store(new Int32Array(gone), 0, 1);
  if (readerGone.aborted) flag();
  else readerGone.addEventListener('abort', flag, { once: true });
  return runInThread({ kind: 'pipe', chain, artifact, paths, check, pipe, readerGone: gone }, `writing artifact ${artifact.id}`).then(() => undefined);
}

/** Reads and hashes stored objects on as many threads as the machine has cores (at most 4). */
export async function checkStoredInThreads(repo: Repository, chain: string, chunks: ChunkRef[]): Promise<ChunkProblem[]> {
  const threads = Math.max(1, Math.min(4, availableParallelism(), chunks.length));
  // Dealt round-robin: neighbouring chunks have similar sizes, so every thread gets a fair share.
  const shares = Array.from({ length: threads }, (_, t) => chunks.filter((_, index) => index % threads === t));
  const results = await Promise.all(
    shares.map((share) => runInThread({ kind: 'check', chunks: share, paths: share.map((c) => repo.chunkPath(chain, c.id)) }, `checking chunks of chain ${chain}`)),
  );
  return results.flat();
}
