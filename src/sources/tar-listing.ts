import { Parser, type ReadEntry } from 'tar';

/**
 * Reads a tar stream to its end and returns its entry paths: proof that an archive
 * artifact (a Qdrant snapshot, a storage folder) is a readable tar, without unpacking it.
 */
export async function listTar(data: AsyncIterable<Uint8Array>): Promise<string[]> {
  const paths: string[] = [];
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      paths.push(entry.path.replace(/^\.\//, ''));
      entry.resume();
    },
  });
  let failure: unknown;
  parser.on('error', (error: unknown) => (failure ??= error));
  parser.on('warn', (code: string, message: string) => (failure ??= new Error(`${code}: ${message}`)));
  for await (const chunk of data) {
    if (!parser.write(Buffer.from(chunk))) await new Promise<void>((resolve) => parser.once('drain', resolve));
  }
  await new Promise<void>((resolve) => parser.end(resolve));
  if (failure) throw failure;
  return paths;
}
