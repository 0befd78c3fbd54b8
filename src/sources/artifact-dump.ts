import type { ArtifactDump } from './source.ts';

/**
 * An ArtifactDump made from a stream produced in-process: `finished` resolves with
 * `meta()` once the stream has ended cleanly, and rejects with the stream's own error
 * otherwise (the consumer sees that error first, from the stream).
 */
export function dumpOfStream(source: AsyncIterable<Uint8Array>, meta: () => Record<string, unknown>): ArtifactDump {
  let resolve!: (value: Record<string, unknown>) => void;
  let reject!: (error: unknown) => void;
  const finished = new Promise<Record<string, unknown>>((res, rej) => ((resolve = res), (reject = rej)));
  finished.catch(() => undefined);
  async function* stream(): AsyncGenerator<Uint8Array> {
    try {
      yield* source;
    } catch (error) {
      reject(error);
      throw error;
    }
    resolve(meta());
  }
  return { stream: stream(), finished };
}
