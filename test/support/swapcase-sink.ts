// A PlaintextSink for tests of the feeding thread's sink hook: writes the plaintext into its
// pipe with the case of ASCII letters swapped in place, and at the end asks the main thread
// for a number, which it writes after a trailer and reports, so that write(), end(), the
// channel to the main thread and the report all leave their mark.
import { closeSync, openSync } from 'node:fs';
import { type SinkFactory, writeAll } from '../../src/repository/artifact-reader.ts';

export const TRAILER = '-- end of stream, answer ';
export const QUESTION = 'which number?';

export function swapCase(data: Buffer): Buffer {
  for (let i = 0; i < data.length; i++) {
    const c = data[i]!;
    if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) data[i] = c ^ 0x20;
  }
  return data;
}

export const createSink: SinkFactory = (options, mainThread) => {
  const fd = openSync((options as { pipe: string }).pipe, 'w');
  return {
    write: (plain) => writeAll(fd, swapCase(plain)),
    end() {
      const answer = mainThread.ask(QUESTION);
      writeAll(fd, Buffer.from(`${TRAILER}${answer}\n`));
      return { answer };
    },
    close: () => closeSync(fd),
  };
};
