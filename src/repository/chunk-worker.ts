// The thread body behind chunk-threads.ts: the byte-heavy loops of restores and restore
// prechecks. It loads a handful of small modules, so its heap stays tiny and garbage
// collection costs next to nothing however many bytes pass through (in the main thread,
// every collection marks the whole program's heap), and the main thread's event loop stays
// free for its sockets.
import { createHash } from 'node:crypto';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { StackbackError } from '../errors.ts';
import { type ChunkProblem, type ReadCheck, type SideStreams, type TransformFactory, checkArtifactDigest, checkPlainBytes, checkStoredBytes, missingChunk, sizeProblem, storedBytesMatch, undecodable } from './artifact-reader.ts';
import { RELEASE, SIDES_CLOSED, SIDES_FAILED } from './chunk-threads.ts';
import type { ArtifactManifest, ChunkRef } from './manifest.ts';
import { type CodecSpec, ObjectCodec } from './object-codec.ts';
import { chunkKey, ReadScratch, type StorageSpec } from './storage.ts';
import { openStorage } from './storage/open.ts';

/** Write an artifact's checked plaintext into a named pipe. */
export interface PipeJob {
  kind: 'pipe';
  /** The repository's storage, which the thread opens itself. */
  storage: StorageSpec;
  chain: string;
  artifact: ArtifactManifest;
  check: ReadCheck;
  /** How the repository's objects decode (its keys, its largest chunk). */
  codec: CodecSpec;
  pipe: string;
  /** CPU priority of this thread while it writes (0 = unchanged). */
  nice: number;
  /** URL of a module exporting createTransform(options, sides): the stream is rewritten on its way out. */
  transform?: string | undefined;
  /** Handed to createTransform. */
  transformOptions?: unknown;
  /**
   * Named pipes of side streams the transform may write to (each read by a tool of its own).
   * While there are any, the main stream's last byte is held back: once everything else is
   * written and the side pipes are closed, the thread posts SIDES_CLOSED and waits until
   * `release[0]` is RELEASE (side tools all succeeded: the byte goes out) or ABANDON.
   */
  sidePipes: string[];
  release?: Int32Array | undefined;
}

/** Check stored objects against their recorded size and sha256; the answer lists the problems. */
export interface CheckJob {
  kind: 'check';
  storage: StorageSpec;
  chain: string;
  chunks: ChunkRef[];
}

export type ChunkJob = PipeJob | CheckJob;

/** What the thread posts when it ends. */
export type ChunkJobOutcome = { ok: true; problems?: ChunkProblem[]; report?: unknown } | { ok: false; failure: ThreadFailure };

export interface ThreadFailure {
  message: string;
  /** A StackbackError's code, or an errno code such as EPIPE. */
  code: string | undefined;
  hint: string | undefined;
  stackback: boolean;
}

// One buffer for every chunk the thread reads: the hot loop makes no copies.
const scratch = new ReadScratch();

function writeAll(fd: number, data: Buffer): void {
  let written = 0;
  while (written < data.length) written += writeSync(fd, data, written);
}

/** A transform's input is cut to this size, so that it hands out its main and side outputs in small turns. */
const TRANSFORM_SLICE_BYTES = 256 * 1024;

/** The side pipes, each opened (blocking until its reader has) when first written to. */
class SidePipes implements SideStreams {
  private readonly pipes: string[];
  private readonly fds: (number | undefined)[];
  private finished = false;
  constructor(pipes: string[]) {
    this.pipes = pipes;
    this.fds = pipes.map(() => undefined);
  }
  get count(): number {
    return this.pipes.length;
  }
  write(index: number, data: Buffer): void {
    this.fds[index] ??= openSync(this.pipes[index]!, 'w');
    writeAll(this.fds[index], data);
  }
  /** Closes them all; a pipe never written to is opened first, so its reader sees the end of its input. */
  finish(): void {
    this.pipes.forEach((_, index) => this.write(index, Buffer.alloc(0)));
    this.close();
    this.finished = true;
  }
  /** After a failure: closes what is open and ends the input of readers still waiting, without blocking. */
  close(): void {
    if (this.finished) return;
    this.pipes.forEach((pipe, index) => {
      let fd = this.fds[index];
      if (fd === undefined) {
        try {
          fd = openSync(pipe, constants.O_WRONLY | constants.O_NONBLOCK);
        } catch {
          return; // no reader (ENXIO): nobody waits for an end
        }
      }
      this.fds[index] = undefined;
      closeSync(fd);
    });
  }
}

/** Writes a stream, keeping its last byte back until release(). */
class HeldBackWriter {
  private readonly fd: number;
  private held: Buffer | undefined;
  constructor(fd: number) {
    this.fd = fd;
  }
  write(data: Buffer): void {
    if (data.length === 0) return;
    if (this.held) writeAll(this.fd, this.held);
    writeAll(this.fd, data.subarray(0, -1));
    this.held = Buffer.of(data[data.length - 1]!);
  }
  release(): void {
    if (this.held) writeAll(this.fd, this.held);
    this.held = undefined;
  }
}

/** Writes the pipe job's stream; resolves with the transform's report. */
async function writePipe({ storage, chain, artifact, check, codec: codecSpec, pipe, nice, sidePipes, release, transformOptions }: PipeJob, load: TransformFactory | undefined): Promise<unknown> {
  // On Linux, setpriority() of "process 0" changes the calling thread only; elsewhere it would
  // change the whole process, so the priority is left alone there.
  if (nice > 0 && process.platform === 'linux') setPriority(nice);
  // Blocks until the reading tool has opened its end (the feed's releaseWriter in sources/tool.ts frees it if the tool never does).
  const out = openSync(pipe, 'w');
  const sides = new SidePipes(sidePipes);
  const transform = load?.(transformOptions, sides);
  const objects = openStorage(storage);
  const codec = new ObjectCodec(codecSpec);
  const main = sidePipes.length > 0 ? new HeldBackWriter(out) : { write: (data: Buffer) => writeAll(out, data), release: () => undefined };
  try {
    const whole = check === 'content' ? createHash('sha256') : undefined;
    for (const ref of artifact.chunks) {
      const key = chunkKey(chain, ref.id);
      const stored = await objects.get(key, scratch);
      if (!stored) throw missingChunk(chain, ref.id);
      if (check === 'stored' && !codec.authenticates) checkStoredBytes(chain, ref, stored);
      let plain: Buffer;
      try {
        plain = codec.decodeChunkSync(key, stored, ref.size);
      } catch (error) {
        throw undecodable(chain, ref, error);
      }
      checkPlainBytes(chain, ref, plain, check, codec);
      whole?.update(plain);
      // After the checks: a transform may rewrite `plain` in place.
      if (!transform) main.write(plain);
      else for (let at = 0; at < plain.length; at += TRANSFORM_SLICE_BYTES) main.write(transform.push(plain.subarray(at, at + TRANSFORM_SLICE_BYTES)));
    }
    if (transform) main.write(transform.end());
    if (whole) checkArtifactDigest(artifact, whole.digest('hex'));
    if (sidePipes.length > 0) {
      sides.finish();
      parentPort!.postMessage(SIDES_CLOSED);
      Atomics.wait(release!, 0, 0);
      if (Atomics.load(release!, 0) !== RELEASE) throw Object.assign(new Error('a side tool failed: the main stream was not finished'), { code: SIDES_FAILED });
      main.release();
    }
    return transform?.report?.();
  } finally {
    sides.close();
    closeSync(out);
  }
}

async function checkStored({ storage, chain, chunks }: CheckJob): Promise<ChunkProblem[]> {
  const objects = openStorage(storage);
  const problems: ChunkProblem[] = [];
  for (const ref of chunks) {
    const stored = await objects.get(chunkKey(chain, ref.id), scratch);
    const problem = sizeProblem(ref, stored?.length);
    if (problem) problems.push(problem);
    else if (!storedBytesMatch(ref, stored!)) {
      problems.push({ chunk: ref.id, problem: 'damaged', detail: 'stored bytes do not match their recorded sha256' });
    }
  }
  return problems;
}

async function outcome(job: ChunkJob): Promise<ChunkJobOutcome> {
  try {
    if (job.kind === 'pipe') {
      const load = job.transform ? ((await import(job.transform)) as { createTransform: TransformFactory }).createTransform : undefined;
      return { ok: true, report: await writePipe(job, load) };
    }
    return { ok: true, problems: await checkStored(job) };
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
