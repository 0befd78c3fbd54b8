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

/** Compresses on the libuv thread pool so chunking and hashing overlap with it. */
export async function encodeObject(plain: Buffer, level: number): Promise<Buffer> {
  const compressed = await zstdCompress(plain, { params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
  if (compressed.length >= plain.length) return Buffer.concat([Buffer.of(TAG_RAW), plain]);
  return Buffer.concat([Buffer.of(TAG_ZSTD), compressed]);
}

export async function decodeObject(stored: Buffer): Promise<Buffer> {
  const tag = stored[0];
  const payload = stored.subarray(1);
  if (tag === TAG_RAW) return payload;
  if (tag === TAG_ZSTD) return zstdDecompress(payload);
  throw new Error(`unknown object encoding tag ${String(tag)}`);
}
