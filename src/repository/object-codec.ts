import { promisify } from 'node:util';
import zlib from 'node:zlib';

/**
 * How a chunk is stored: one tag byte, then the payload. The tag lets a repository hold
 * chunks written at different settings, and keeps incompressible data (already compressed
 * files, encrypted blobs) from growing: those are stored raw.
 */
const TAG_RAW = 0x00;
const TAG_ZSTD = 0x01;

const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);

/**
 * zlib's default 16 KiB output slices would make a 1 MiB chunk cost dozens of round trips
 * between the thread pool and the main thread: size them to the whole chunk instead.
 */
function outputSlice(bytes: number): number {
  return Math.max(64 * 1024, bytes + 1024);
}

/** Compresses on the libuv thread pool so chunking and hashing overlap with it. */
export async function encodeObject(plain: Buffer, level: number): Promise<Buffer> {
  const compressed = await zstdCompress(plain, { chunkSize: outputSlice(plain.length), params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
  if (compressed.length >= plain.length) return Buffer.concat([Buffer.of(TAG_RAW), plain]);
  return Buffer.concat([Buffer.of(TAG_ZSTD), compressed]);
}

/**
 * `expectedSize` (from the manifest) sizes the output buffer and caps it: a crafted object
 * whose zstd frame inflates to more (a decompression bomb) fails after at most that many
 * bytes, never more than `maxChunkSize`, the largest chunk of the repository's own chunker
 * (repo.json: a repository keeps the chunker it was made with, whatever today's default is),
 * instead of exhausting memory.
 */
export async function decodeObject(stored: Buffer, expectedSize: number, maxChunkSize: number): Promise<Buffer> {
  try {
    return await decodeTagged(stored, (payload) => zstdDecompress(payload, zstdOptions(expectedSize, maxChunkSize)));
  } catch (error) {
    throw inflatedTooFar(error, expectedSize, maxChunkSize);
  }
}

/** The same on the calling thread: for the worker that feeds restores (src/repository/chunk-worker.ts). */
export function decodeObjectSync(stored: Buffer, expectedSize: number, maxChunkSize: number): Buffer {
  try {
    return decodeTagged(stored, (payload) => zlib.zstdDecompressSync(payload, zstdOptions(expectedSize, maxChunkSize)));
  } catch (error) {
    throw inflatedTooFar(error, expectedSize, maxChunkSize);
  }
}

const outputLimit = (expectedSize: number, maxChunkSize: number) => Math.max(1, Math.min(expectedSize, maxChunkSize));

function zstdOptions(expectedSize: number, maxChunkSize: number): zlib.ZstdOptions {
  const limit = outputLimit(expectedSize, maxChunkSize);
  return { chunkSize: outputSlice(limit), maxOutputLength: limit };
}

function inflatedTooFar(error: unknown, expectedSize: number, maxChunkSize: number): unknown {
  if ((error as NodeJS.ErrnoException).code !== 'ERR_BUFFER_TOO_LARGE') return error;
  return new Error(`it inflates to more than ${outputLimit(expectedSize, maxChunkSize)} bytes (recorded size ${expectedSize}): decoding stopped there`);
}

function decodeTagged<T>(stored: Buffer, zstd: (payload: Buffer) => T): T | Buffer {
  const tag = stored[0];
  const payload = stored.subarray(1);
  if (tag === TAG_RAW) return payload;
  if (tag === TAG_ZSTD) return zstd(payload);
  throw new Error(`unknown object encoding tag ${String(tag)}`);
}
