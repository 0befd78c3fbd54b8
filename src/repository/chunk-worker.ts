// The thread body behind chunk-threads.ts: the byte-heavy loops of restores and restore
// prechecks. It loads a handful of small modules, so its heap stays tiny and garbage
// collection costs next to nothing however many bytes pass through (in the main thread,
// every collection marks the whole program's heap), and the main thread's event loop stays
// free for its sockets.
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { StackbackError } from '../errors.ts';
import { type ChunkProblem, type ReadCheck, checkArtifactDigest, checkPlainBytes, checkStoredBytes, missingChunk, sizeProblem, undecodable } from './artifact-reader.ts';
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
  /** Set to 1 by the main thread once the reading tool has exited: stop waiting for it to open the pipe. */
  readerGone: SharedArrayBuffer;
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

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms: number) => Atomics.wait(sleeper, 0, 0, ms);
const readerGoneError = () => Object.assign(new Error('the tool reading the pipe has exited'), { code: 'EPIPE' });

/** Opened without blocking, so that a tool that never opens its end cannot hold this thread forever. */
function openPipe(pipe: string, readerGone: Int32Array): number {
  for (;;) {
    try {
      return openSync(pipe, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (error) {
      // ENXIO: no reader yet.
      if ((error as NodeJS.ErrnoException).code !== 'ENXIO') throw error;
      if (Atomics.load(readerGone, 0) === 1) throw readerGoneError();
      sleep(1);
    }
  }
}

/**
 * Writes without blocking and sleeps while the pipe is full. A writer blocked in write(2) is
 * woken for every 4 KiB pg_restore reads: some 130,000 wake-ups (each a pair of context
 * switches) per 500 MiB, on cores the database server needs. The pause adapts so that the
 * reader has drained about half the pipe when the writer comes back: long enough to batch
 * the work, short enough that the reader never waits (with the 1 MiB pipe runToolOnArtifact
 * asks for, ~1 ms at pg_restore's pace; shorter for a default 64 KiB pipe or a faster reader).
 */
class PacedWriter {
  private readonly fd: number;
  private pauseMs = 0.1;
  /** The most the pipe took in one go after a pause: about its size. */
  private capacity = 0;
  /** Bytes written since the last pause. */
  private burst = 0;
  private paused = false;

  constructor(fd: number) {
    this.fd = fd;
  }

  write(data: Buffer): void {
    let offset = 0;
    while (offset < data.length) {
      try {
        const bytes = writeSync(this.fd, data, offset);
        offset += bytes;
        this.burst += bytes;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
        this.adapt();
        sleep(this.pauseMs);
      }
    }
  }

  private adapt(): void {
    // The fill before the first pause also counts what the reader took meanwhile: no measure of the pipe.
    if (this.paused) {
      this.capacity = Math.max(this.capacity, this.burst);
      const drained = this.burst / this.capacity;
      // Nearly empty on return: the reader may have waited, come back sooner. Barely drained: sleep longer.
      if (drained > 0.75) this.pauseMs = Math.max(0.05, this.pauseMs / 2);
      else if (drained < 0.25) this.pauseMs = Math.min(2, this.pauseMs * 1.5);
    }
    this.paused = true;
    this.burst = 0;
  }
}

function writePipe({ chain, artifact, paths, check, pipe, readerGone }: PipeJob): void {
  const out = openPipe(pipe, new Int32Array(readerGone));
  const writer = new PacedWriter(out);
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
      writer.write(plain);
    });
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
    else if (createHash('sha256').update(stored!).digest('hex') !== ref.stored_sha256) {
      problems.push({ chunk: ref.id, problem: 'damaged', detail: 'stored bytes do not match their recorded sha256' });
    }
  });
  return problems;
}

function outcome(job: ChunkJob): ChunkJobOutcome {
  try {
    if (job.kind === 'pipe') {
      writePipe(job);
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

parentPort!.postMessage(outcome(workerData as ChunkJob));
