// The thread body behind chunk-threads.ts: the byte-heavy loops of restores and restore
// prechecks. It loads a handful of small modules, so its heap stays tiny and garbage
// collection costs next to nothing however many bytes pass through (in the main thread,
// every collection marks the whole program's heap), and the main thread's event loop stays
// free for its sockets.
import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { type ChunkProblem, type MainThreadChannel, type PlaintextSink, type ReadCheck, type SinkFactory, checkArtifactDigest, checkPlainBytes, checkStoredBytes, missingChunk, sizeProblem, storedBytesMatch, undecodable, writeAll } from './artifact-reader.ts';
import { ANSWER_SLOT, ANSWERED, ASKED, STATE_SLOT } from './chunk-threads.ts';
import type { ArtifactManifest, ChunkRef } from './manifest.ts';
import { type CodecSpec, ObjectCodec } from './object-codec.ts';
import { chunkKey, ReadScratch, type StorageSpec } from './storage.ts';
import { openStorage } from './storage/open.ts';
import { lowerThreadPriority } from './thread-priority.ts';
import { describeFailure, type ThreadFailure } from './thread-failure.ts';

/** Hand an artifact's checked plaintext to a sink: a named pipe, or a sink module (PlaintextSink). */
export interface PipeJob {
  kind: 'pipe';
  /** The repository's storage, which the thread opens itself. */
  storage: StorageSpec;
  chain: string;
  artifact: ArtifactManifest;
  check: ReadCheck;
  /** How the repository's objects decode (its keys, its largest chunk). */
  codec: CodecSpec;
  /** CPU priority of this thread while it writes (0 = unchanged). */
  nice: number;
  /** The pipe that gets the plaintext as it is, or the URL of a module exporting createSink (a SinkFactory) and its options. */
  sink: { pipe: string } | { module: string; options: unknown };
  /** The sink's MainThreadChannel, shared with the main thread (see chunk-threads.ts). */
  channel: Int32Array;
}

/** Check stored objects against their recorded size and sha256; the answer lists the problems. */
export interface CheckJob {
  kind: 'check';
  storage: StorageSpec;
  chain: string;
  chunks: ChunkRef[];
}

export type ChunkJob = PipeJob | CheckJob;

/** What the thread posts when its sink asks the main thread something (MainThreadChannel). */
export interface SinkQuestion {
  question: unknown;
}

/** What the thread posts when it ends. */
export type ChunkJobOutcome = { ok: true; problems?: ChunkProblem[]; report?: unknown } | { ok: false; failure: ThreadFailure };

// One buffer for every chunk the thread reads: the hot loop makes no copies.
const scratch = new ReadScratch();

/** The sink without a module: the plaintext goes into the pipe as it is. */
class PipeSink implements PlaintextSink {
  private readonly fd: number;
  constructor(pipe: string) {
    // Blocks until the reading tool has opened its end (the feed's releaseWriter in sources/tool.ts frees it if the tool never does).
    this.fd = openSync(pipe, 'w');
  }
  write(plain: Buffer): void {
    writeAll(this.fd, plain);
  }
  end(): undefined {
    return undefined;
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** The thread's side of a MainThreadChannel: posts the question, then sleeps until the main thread has answered. */
function channelToMainThread(channel: Int32Array): MainThreadChannel {
  return {
    ask(question) {
      Atomics.store(channel, STATE_SLOT, ASKED);
      parentPort!.postMessage({ question } satisfies SinkQuestion);
      Atomics.wait(channel, STATE_SLOT, ASKED);
      if (Atomics.load(channel, STATE_SLOT) !== ANSWERED) throw new Error('the main thread did not answer the sink');
      return Atomics.load(channel, ANSWER_SLOT);
    },
  };
}

/** Hands the pipe job's plaintext to the sink `open` makes; resolves with the sink's report. */
async function feedSink({ storage, chain, artifact, check, codec: codecSpec, nice }: PipeJob, open: () => PlaintextSink): Promise<unknown> {
  lowerThreadPriority(nice);
  const sink = open();
  const objects = openStorage(storage);
  const codec = new ObjectCodec(codecSpec);
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
      // After the checks: a sink may rewrite `plain` in place.
      sink.write(plain);
    }
    if (whole) checkArtifactDigest(artifact, whole.digest('hex'));
    return sink.end();
  } finally {
    sink.close();
  }
}

/** What makes the job's sink: its module's createSink (loaded here, in the thread), or the pipe writer. */
async function sinkMaker({ sink, channel }: PipeJob): Promise<() => PlaintextSink> {
  if ('pipe' in sink) return () => new PipeSink(sink.pipe);
  const { createSink } = (await import(sink.module)) as { createSink: SinkFactory };
  return () => createSink(sink.options, channelToMainThread(channel));
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
      return { ok: true, report: await feedSink(job, await sinkMaker(job)) };
    }
    return { ok: true, problems: await checkStored(job) };
  } catch (error) {
    return { ok: false, failure: describeFailure(error) };
  }
}

parentPort!.postMessage(await outcome(workerData as ChunkJob));
