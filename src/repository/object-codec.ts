import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { chunkIdOf, type ObjectKeys, type ObjectType, seal, unseal } from './crypto.ts';
import { releaseMemory } from './release-memory.ts';

/**
 * How a chunk is stored: one tag byte, then the payload. The tag lets a repository hold
 * chunks written at different settings, and keeps incompressible data (already compressed
 * files, encrypted blobs) from growing: those are stored raw.
 */
const TAG_RAW = 0x00;
const TAG_ZSTD = 0x01;

const zstdDecompress = promisify(zlib.zstdDecompress);

/**
 * zlib's default 16 KiB output slices would cut a 1 MiB chunk into dozens of pieces to join
 * (and, decoding on the thread pool, as many round trips to the calling thread): size them
 * to the whole chunk instead.
 */
function outputSlice(bytes: number): number {
  return Math.max(64 * 1024, bytes + 1024);
}

/**
 * A chunk's encoding as parts, the tag byte then the payload, so that sealing reads them in
 * turn instead of a copy joining them. Compressed on the calling thread: chunks are written
 * by the write threads (write-threads.ts), where a synchronous call is the cheapest. An
 * output of zstd's bound for the input lets it compress in one pass straight from the input;
 * a smaller one makes it stream through its own window (measured: 15–20% more CPU). The
 * pledged size lets zstd size its tables to the chunk and records the size in the frame.
 */
export function encodeObject(plain: Uint8Array, level: number): [Buffer, Uint8Array] {
  const compressed = zlib.zstdCompressSync(plain, { chunkSize: zstdBound(plain.length), pledgedSrcSize: plain.length, params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
  if (compressed.length < plain.length) return [Buffer.of(TAG_ZSTD), compressed];
  releaseMemory(compressed);
  return [Buffer.of(TAG_RAW), plain];
}

/** ZSTD_COMPRESSBOUND of zstd.h: the largest frame `bytes` of input can make. */
function zstdBound(bytes: number): number {
  const small = 128 * 1024;
  return bytes + (bytes >>> 8) + (bytes < small ? (small - bytes) >>> 11 : 0);
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

/** What a thread needs to decode a repository's objects itself (structured-clone safe). */
export interface CodecSpec {
  /** Format 2: the derived keys; format 1: none (objects are stored as encoded). */
  keys: ObjectKeys | undefined;
  /** The repository's largest chunk (its chunker, repo.json): no chunk decodes to more. */
  maxChunkSize: number;
}

/**
 * How a repository's objects are stored: compressed (the tag above), then sealed when the
 * repository is encrypted (crypto.ts), under the object's storage key. Chunk ids come from
 * here too, since an encrypted repository keys them.
 */
export class ObjectCodec {
  readonly spec: CodecSpec;
  constructor(spec: CodecSpec) {
    this.spec = spec;
  }

  /** Whether reading an object proves it is the one written under its key (AES-GCM does). */
  get authenticates(): boolean {
    return this.spec.keys !== undefined;
  }

  chunkId(plain: Uint8Array): string {
    return chunkIdOf(plain, this.spec.keys?.idKey);
  }

  /** The stored form of a chunk; what it made on the way is freed at once (release-memory.ts). */
  encodeChunk(key: string, plain: Uint8Array, level: number): Buffer {
    const [tag, payload] = encodeObject(plain, level);
    const stored = this.spec.keys ? seal(this.spec.keys.objectKey, 'chunk', key, [tag, payload]) : Buffer.concat([tag, payload]);
    if (payload !== plain) releaseMemory(payload);
    return stored;
  }

  async decodeChunk(key: string, stored: Buffer, expectedSize: number): Promise<Buffer> {
    return decodeObject(this.unseal('chunk', key, stored), expectedSize, this.spec.maxChunkSize);
  }

  decodeChunkSync(key: string, stored: Buffer, expectedSize: number): Buffer {
    return decodeObjectSync(this.unseal('chunk', key, stored), expectedSize, this.spec.maxChunkSize);
  }

  /** Small objects (manifests): sealed, not compressed. */
  seal(type: ObjectType, key: string, data: Buffer): Buffer {
    return this.spec.keys ? seal(this.spec.keys.objectKey, type, key, data) : data;
  }

  unseal(type: ObjectType, key: string, stored: Buffer): Buffer {
    return this.spec.keys ? unseal(this.spec.keys.objectKey, type, key, stored) : stored;
  }
}
