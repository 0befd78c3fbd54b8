// The thread body behind chunk-threads.ts: the byte-heavy loops of restores and restore
// prechecks. It loads a handful of small modules, so its heap stays tiny and garbage
// collection costs next to nothing however many bytes pass through (in the main thread,
// every collection marks the whole program's heap), and the main thread's event loop stays
// free for its sockets.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { StackbackError } from '../errors.ts';
import { type ChunkProblem, type ReadCheck, type StreamTransform, checkArtifactDigest, checkPlainBytes, checkStoredBytes, missingChunk, sizeProblem, storedBytesMatch, undecodable } from './artifact-reader.ts';
import type { ArtifactManifest, ChunkRef } from './manifest.ts';
import { decodeObjectSync } from './object-codec.ts';

/** Write an artifact's checked plaintext into a named pipe. */
export interface PipeJob {
  kind: 'pipe';
  chain: string;
  artifact: ArtifactManifest;
  /** Object file of each chunk, in artifact order. */
  paths: string[];
  check: ReadCheck;
  pipe: string;
  /** CPU priority of this thread while it writes (0 = unchanged). */
  nice: number;
  /** URL of a module exporting createTransform(): the stream is rewritten on its way out. */
  transform?: string | undefined;
}

/** Check stored objects against their recorded size and sha256; the answer lists the problems. */
export interface CheckJob {
  kind: 'check';
  chunks: ChunkRef[];
  paths: string[];
}

export type ChunkJob = PipeJob | CheckJob;

/** What the thread posts when it ends. */
export type ChunkJobOutcome = { ok: true; problems?: ChunkProblem[] } | { ok: false; failure: ThreadFailure };

export interface ThreadFailure {
  message: string;
  /** A StackbackError's code, or an errno code such as EPIPE. */
  code: string | undefined;
  hint: string | undefined;
  stackback: boolean;
}

let buffer = Buffer.alloc(0);

/** A stored object, read into a buffer reused from chunk to chunk; undefined when the file is missing. */
function readObject(file: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    if (buffer.length < size) buffer = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const read = readSync(fd, buffer, filled, size - filled, null);
      if (read === 0) break;
      filled += read;
    }
    return buffer.subarray(0, filled);
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, data: Buffer): void {
  let written = 0;
  while (written < data.length) written += writeSync(fd, data, written);
}

function writePipe({ chain, artifact, paths, check, pipe, nice }: PipeJob, transform: StreamTransform | undefined): void {
  // On Linux, setpriority() of "process 0" changes the calling thread only; elsewhere it would
  // change the whole process, so the priority is left alone there.
  if (nice > 0 && process.platform === 'linux') setPriority(nice);
  // Blocks until the reading tool has opened its end (the feed's releaseWriter in sources/tool.ts frees it if the tool never does).
  const out = openSync(pipe, 'w');
  try {
    const whole = check === 'content' ? createHash('sha256') : undefined;
    artifact.chunks.forEach((ref, index) => {
      const stored = readObject(paths[index]!);
      if (!stored) throw missingChunk(chain, ref.id);
      if (check === 'stored') checkStoredBytes(chain, ref, stored);
      let plain: Buffer;
      try {
        plain = decodeObjectSync(stored, ref.size);
      } catch (error) {
        throw undecodable(chain, ref, error);
      }
      checkPlainBytes(chain, ref, plain, check);
      whole?.update(plain);
      // After the checks: a transform may rewrite `plain` in place.
      writeAll(out, transform ? transform.push(plain) : plain);
    });
    if (transform) writeAll(out, transform.end());
    if (whole) checkArtifactDigest(artifact, whole.digest('hex'));
  } finally {
    closeSync(out);
  }
}

function checkStored({ chunks, paths }: CheckJob): ChunkProblem[] {
  const problems: ChunkProblem[] = [];
  chunks.forEach((ref, index) => {
    const stored = readObject(paths[index]!);
    const problem = sizeProblem(ref, stored?.length);
    if (problem) problems.push(problem);
    else if (!storedBytesMatch(ref, stored!)) {
      problems.push({ chunk: ref.id, problem: 'damaged', detail: 'stored bytes do not match their recorded sha256' });
    }
  });
  return problems;
}

async function outcome(job: ChunkJob): Promise<ChunkJobOutcome> {
  try {
    if (job.kind === 'pipe') {
      const transform = job.transform ? ((await import(job.transform)) as { createTransform(): StreamTransform }).createTransform() : undefined;
      writePipe(job, transform);
      return { ok: true };
    }
    return { ok: true, problems: checkStored(job) };
  } catch (error) {
    return {
      ok: false,
      failure: {
        message: (error as Error).message,
        code: (error as NodeJS.ErrnoException).code,
        hint: error instanceof StackbackError ? error.hint : undefined,
        stackback: error instanceof StackbackError,
      },
    };
  }
}

parentPort!.postMessage(await outcome(workerData as ChunkJob));
