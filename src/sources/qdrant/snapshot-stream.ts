import { createHash } from 'node:crypto';
import { StackbackError } from '../../errors.ts';

/**
 * Passes a downloaded snapshot through while checking it against what the server said
 * about it: its size and (when Qdrant keeps a checksum sidecar) its sha256. A mismatch is
 * thrown from the stream itself, so the consumer can never record the artifact as good.
 * `cleanup` runs however the stream ends: finished, failed, or abandoned by the consumer.
 */
export async function* checkedSnapshot(
  body: AsyncIterable<Uint8Array>,
  expected: { name: string; size: number; checksum: string | null },
  cleanup: () => Promise<void>,
): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of body) {
      hash.update(chunk);
      size += chunk.length;
      yield chunk;
    }
    if (size !== expected.size) {
      throw new StackbackError('QDRANT_CHECKSUM', `snapshot ${expected.name} downloaded with ${size} bytes, the server announced ${expected.size}`);
    }
    const digest = hash.digest('hex');
    if (expected.checksum !== null && digest !== expected.checksum.toLowerCase()) {
      throw new StackbackError('QDRANT_CHECKSUM', `snapshot ${expected.name} does not match its checksum: downloaded sha256 ${digest}, the server says ${expected.checksum}`);
    }
  } finally {
    await cleanup();
  }
}

/** A multipart/form-data body with one file field, streamed (the snapshot is never held in memory). */
export async function* multipartFile(boundary: string, field: string, filename: string, data: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
  yield* data;
  yield Buffer.from(`\r\n--${boundary}--\r\n`);
}
