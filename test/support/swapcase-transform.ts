// A StreamTransform for tests of the pipe path: swaps the case of ASCII letters in place and
// adds a trailer at the end, so that both push() and end() leave their mark on the output.
import type { StreamTransform } from '../../src/repository/artifact-reader.ts';

export const TRAILER = '-- end of stream\n';

export function swapCase(data: Buffer): Buffer {
  for (let i = 0; i < data.length; i++) {
    const c = data[i]!;
    if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) data[i] = c ^ 0x20;
  }
  return data;
}

export function createTransform(): StreamTransform {
  return { push: swapCase, end: () => Buffer.from(TRAILER) };
}
