import { createHash } from 'node:crypto';
import { writeSync } from 'node:fs';
import { StackbackError } from '../errors.ts';
import { checkStoredInThreads, writeArtifactInThread } from './chunk-threads.ts';
import type { ArtifactManifest, ChunkRef } from './manifest.ts';
import type { ObjectCodec } from './object-codec.ts';
import type { Repository } from './repository.ts';
import { chunkKey } from './storage.ts';

/**
 * How much a read checks:
 * - content: every decoded chunk re-hashed against its id, and the whole artifact against its
 *   sha256 (deep verify: proves the data itself);
 * - stored: every chunk's stored bytes against their recorded sha256, and its decoded size
 *   (restore: the same protection against damage at rest for a third of the hashing, which
 *   leaves the CPU to pg_restore). In an encrypted repository decryption authenticates every
 *   object (AES-GCM), which proves the same, so the sha256 is not computed there.
 */
export type ReadCheck = 'content' | 'stored';

/**
 * Takes an artifact's checked plaintext in the thread that reads it, in place of the plain
 * pipe writer: a source's own way into its tools (sources/postgres/restore-feed-sink.ts
 * merges pg_dump's per-row blocks and shares big tables out over several pipes). A module
 * that provides one exports `createSink` (a SinkFactory); it is loaded in that thread.
 */
export interface PlaintextSink {
  /** The next piece of checked plaintext; it may be rewritten in place, and is the caller's again once write() returns. */
  write(plain: Buffer): void;
  /**
   * After the last piece, once the whole artifact has passed its checks: finishes the output.
   * Returns what the sink did, for the restore's log and record (must survive structured cloning).
   */
  end(): unknown;
  /** Called last, after end() or a failure: closes whatever is still open, without blocking. */
  close(): void;
}

/** A sink's line to the main thread: ask() posts `question` to ModuleSink.answer and blocks until it has answered. */
export interface MainThreadChannel {
  ask(question: unknown): number;
}

/** What a sink module exports as `createSink`; `options` comes from ModuleSink.options. */
export type SinkFactory = (options: unknown, main: MainThreadChannel) => PlaintextSink;

/** A sink module that takes an artifact's plaintext in a worker thread (ArtifactData.writeToSink). */
export interface ModuleSink {
  /** URL of the module exporting `createSink`. */
  module: string;
  /** Handed to createSink (structured-cloned into the thread). */
  options: unknown;
  /** Answers the sink's MainThreadChannel.ask() with an int32; when it rejects (or is missing), ask() throws. */
  answer?: ((question: unknown) => Promise<number>) | undefined;
}

/** Writes all of `data` to a blocking file descriptor (a pipe, for sinks too). */
export function writeAll(fd: number, data: Buffer): void {
  let written = 0;
  while (written < data.length) written += writeSync(fd, data, written);
}

/**
 * An artifact's checked plaintext: iterate it in-process, or have a worker thread write it into
 * a named pipe that an external tool reads, or hand it to a sink module there (the fast path
 * for big restores, see chunk-threads.ts).
 */
export interface ArtifactData extends AsyncIterable<Buffer> {
  /** Resolves once everything is written into `pipe`. */
  writeToPipe(pipe: string, options: WriterThreadOptions): Promise<void>;
  /** Resolves, once the sink has ended, with what its end() returned. */
  writeToSink(sink: ModuleSink, options: WriterThreadOptions): Promise<unknown>;
}

export interface WriterThreadOptions {
  /** CPU priority of the writing thread (see chunk-threads.ts). */
  nice: number;
}

export function openArtifact(repo: Repository, chain: string, artifact: ArtifactManifest, check: ReadCheck): ArtifactData {
  return {
    [Symbol.asyncIterator]: () => readArtifact(repo, chain, artifact, check),
    writeToPipe: async (pipe, options) => void (await writeArtifactInThread(repo, chain, artifact, check, { pipe }, options)),
    writeToSink: (sink, options) => writeArtifactInThread(repo, chain, artifact, check, sink, options),
  };
}

/**
 * Reads an artifact back as plaintext, in order, with a few chunks read and decoded ahead.
 * A check can fail late (the whole-artifact hash only at the very end), so consumers must
 * treat any error as fatal for everything they wrote (restore writes into a scratch target).
 */
export async function* readArtifact(repo: Repository, chain: string, artifact: ArtifactManifest, check: ReadCheck, prefetch = 4): AsyncGenerator<Buffer> {
  const whole = check === 'content' ? createHash('sha256') : undefined;
  const ahead: Promise<Buffer>[] = [];
  let next = 0;
  const fill = () => {
    while (ahead.length < prefetch && next < artifact.chunks.length) ahead.push(loadChunk(repo, chain, artifact.chunks[next++]!, check));
  };
  // Keep rejected prefetches from being reported as unhandled when we stop early.
  const settle = () => ahead.forEach((p) => p.catch(() => undefined));
  try {
    fill();
    while (ahead.length > 0) {
      const plain = await ahead.shift()!;
      fill();
      whole?.update(plain);
      yield plain;
    }
  } finally {
    settle();
  }
  if (whole) checkArtifactDigest(artifact, whole.digest('hex'));
}

async function loadChunk(repo: Repository, chain: string, ref: ChunkRef, check: ReadCheck): Promise<Buffer> {
  const stored = await repo.readChunk(chain, ref.id);
  if (check === 'stored' && !repo.codec.authenticates) checkStoredBytes(chain, ref, stored);
  let plain: Buffer;
  try {
    plain = await repo.codec.decodeChunk(chunkKey(chain, ref.id), stored, ref.size);
  } catch (error) {
    throw undecodable(chain, ref, error);
  }
  checkPlainBytes(chain, ref, plain, check, repo.codec);
  return plain;
}

export function missingChunk(chain: string, id: string): StackbackError {
  return new StackbackError('CHUNK_MISSING', `chunk ${id} of chain ${chain} is missing from the repository`);
}

/** Whether a chunk's stored bytes hash to their recorded sha256. */
export function storedBytesMatch(ref: ChunkRef, stored: Buffer): boolean {
  return createHash('sha256').update(stored).digest('hex') === ref.stored_sha256;
}

/** Throws CHUNK_CORRUPT unless a chunk's stored bytes match their recorded sha256. */
export function checkStoredBytes(chain: string, ref: ChunkRef, stored: Buffer): void {
  if (!storedBytesMatch(ref, stored)) {
    throw new StackbackError('CHUNK_CORRUPT', `chunk ${ref.id} of chain ${chain} is damaged (stored bytes do not match their recorded sha256)`);
  }
}

export function undecodable(chain: string, ref: ChunkRef, error: unknown): StackbackError {
  return new StackbackError('CHUNK_CORRUPT', `chunk ${ref.id} of chain ${chain} cannot be decoded: ${(error as Error).message}`);
}

/** Throws CHUNK_CORRUPT unless a decoded chunk has its recorded size and, for content checks, hashes to its id. */
export function checkPlainBytes(chain: string, ref: ChunkRef, plain: Buffer, check: ReadCheck, codec: ObjectCodec): void {
  if (plain.length !== ref.size) throw new StackbackError('CHUNK_CORRUPT', `chunk ${ref.id} of chain ${chain} decodes to ${plain.length} bytes, expected ${ref.size}`);
  if (check === 'content') {
    const actual = codec.chunkId(plain);
    if (actual !== ref.id) throw new StackbackError('CHUNK_CORRUPT', `chunk ${ref.id} of chain ${chain} is damaged (content hashes to ${actual})`);
  }
}

/** Throws ARTIFACT_CORRUPT unless the whole plaintext hashed to the manifest's sha256. */
export function checkArtifactDigest(artifact: ArtifactManifest, digest: string): void {
  if (digest !== artifact.sha256) {
    throw new StackbackError('ARTIFACT_CORRUPT', `artifact ${artifact.id} reads back with sha256 ${digest}, the manifest says ${artifact.sha256}`);
  }
}

/** Missing or of the wrong size: what a stored object's size alone tells. */
export function sizeProblem(ref: ChunkRef, size: number | undefined): ChunkProblem | undefined {
  if (size === undefined) return { chunk: ref.id, problem: 'missing', detail: 'object file not found' };
  if (size !== ref.stored_size) return { chunk: ref.id, problem: 'wrong size', detail: `${size} bytes, expected ${ref.stored_size}` };
  return undefined;
}

export interface ChunkProblem {
  chunk: string;
  problem: 'missing' | 'wrong size' | 'damaged';
  detail: string;
}

const SIZE_CHECKS_AT_ONCE = 8;

/**
 * Checks the stored objects without decoding them: present, right size and, with
 * `hash`, the recorded SHA-256 of the stored bytes (on worker threads: that is a read of
 * the whole backup). Each distinct chunk is checked once.
 */
export async function checkStoredChunks(
  repo: Repository,
  chain: string,
  chunks: ChunkRef[],
  options: { hash: boolean; signal?: AbortSignal },
): Promise<ChunkProblem[]> {
  const unique = [...new Map(chunks.map((c) => [c.id, c])).values()];
  if (options.hash) return checkStoredInThreads(repo, chain, unique, options.signal);
  const problems: ChunkProblem[] = [];
  const check = async (ref: ChunkRef) => {
    const problem = sizeProblem(ref, await repo.chunkSize(chain, ref.id));
    if (problem) problems.push(problem);
  };
  // A sliding window, not batches: one slow read must not idle the other slots.
  let next = 0;
  const worker = async () => {
    while (next < unique.length) await check(unique[next++]!);
  };
  await Promise.all(Array.from({ length: SIZE_CHECKS_AT_ONCE }, worker));
  return problems;
}
