import { createHash } from 'node:crypto';
import { StackbackError } from '../errors.ts';
import type { ArtifactManifest, ChunkRef } from './manifest.ts';
import { decodeObject } from './object-codec.ts';
import type { Repository } from './repository.ts';

/**
 * How much a read checks:
 * - content: every decoded chunk re-hashed against its id, and the whole artifact against its
 *   sha256 (deep verify: proves the data itself);
 * - stored: every chunk's stored bytes against their recorded sha256, and its decoded size
 *   (restore: the same protection against damage at rest for a third of the hashing, which
 *   leaves the CPU to pg_restore).
 */
export type ReadCheck = 'content' | 'stored';

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
  const digest = whole?.digest('hex');
  if (digest !== undefined && digest !== artifact.sha256) {
    throw new StackbackError('ARTIFACT_CORRUPT', `artifact ${artifact.id} reads back with sha256 ${digest}, the manifest says ${artifact.sha256}`);
  }
}

async function loadChunk(repo: Repository, chain: string, ref: ChunkRef, check: ReadCheck): Promise<Buffer> {
  const stored = await repo.readChunk(chain, ref.id);
  if (check === 'stored' && createHash('sha256').update(stored).digest('hex') !== ref.stored_sha256) {
    throw new StackbackError('CHUNK_CORRUPT', `chunk ${ref.id} of chain ${chain} is damaged (stored bytes do not match their recorded sha256)`);
  }
  let plain: Buffer;
  try {
    plain = await decodeObject(stored, ref.size);
  } catch (error) {
    throw new StackbackError('CHUNK_CORRUPT', `chunk ${ref.id} of chain ${chain} cannot be decoded: ${(error as Error).message}`);
  }
  if (plain.length !== ref.size) throw new StackbackError('CHUNK_CORRUPT', `chunk ${ref.id} of chain ${chain} decodes to ${plain.length} bytes, expected ${ref.size}`);
  if (check === 'content') {
    const actual = createHash('sha256').update(plain).digest('hex');
    if (actual !== ref.id) throw new StackbackError('CHUNK_CORRUPT', `chunk ${ref.id} of chain ${chain} is damaged (content hashes to ${actual})`);
  }
  return plain;
}

export interface ChunkProblem {
  chunk: string;
  problem: 'missing' | 'wrong size' | 'damaged';
  detail: string;
}

/**
 * Checks the stored objects without decoding them: present, right size and, with
 * `hash`, the recorded SHA-256 of the stored bytes. Each distinct chunk is read once.
 */
export async function checkStoredChunks(
  repo: Repository,
  chain: string,
  chunks: ChunkRef[],
  options: { hash: boolean; concurrency?: number },
): Promise<ChunkProblem[]> {
  const unique = [...new Map(chunks.map((c) => [c.id, c])).values()];
  const problems: ChunkProblem[] = [];
  const check = async (ref: ChunkRef) => {
    if (!options.hash) {
      const size = await repo.chunkSize(chain, ref.id);
      if (size === undefined) problems.push({ chunk: ref.id, problem: 'missing', detail: 'object file not found' });
      else if (size !== ref.stored_size) problems.push({ chunk: ref.id, problem: 'wrong size', detail: `${size} bytes, expected ${ref.stored_size}` });
      return;
    }
    let stored: Buffer;
    try {
      stored = await repo.readChunk(chain, ref.id);
    } catch (error) {
      if (error instanceof StackbackError && error.code === 'CHUNK_MISSING') {
        problems.push({ chunk: ref.id, problem: 'missing', detail: 'object file not found' });
        return;
      }
      throw error;
    }
    if (stored.length !== ref.stored_size) {
      problems.push({ chunk: ref.id, problem: 'wrong size', detail: `${stored.length} bytes, expected ${ref.stored_size}` });
    } else if (createHash('sha256').update(stored).digest('hex') !== ref.stored_sha256) {
      problems.push({ chunk: ref.id, problem: 'damaged', detail: 'stored bytes do not match their recorded sha256' });
    }
  };
  // A sliding window, not batches: one slow read must not idle the other slots.
  let next = 0;
  const worker = async () => {
    while (next < unique.length) await check(unique[next++]!);
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 8 }, worker));
  return problems;
}
