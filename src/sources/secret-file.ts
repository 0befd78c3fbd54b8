import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { StackbackError } from '../errors.ts';

/**
 * A secret kept in a file (password_file, api_key_file): its first line, read once, on
 * first use. The secret itself never appears in a message, only the file's path. A file
 * that grants any access to others (o+r and the like) is refused: whoever can read it has
 * the database or the vector store; group access stays allowed (0640 root:stackback).
 */
export function secretFromFile(file: string | null, key: string, sourceName: string): () => string | undefined {
  let read = false;
  let secret: string | undefined;
  return () => {
    if (!read && file !== null) secret = readSecret(file, key, sourceName);
    read = true;
    return secret;
  };
}

function readSecret(file: string, key: string, sourceName: string): string | undefined {
  let fd: number | undefined;
  let mode: number;
  let text: string;
  try {
    fd = openSync(file, 'r');
    // The mode of the very file that is read (fstat), not of whatever the path names a moment later.
    mode = fstatSync(fd).mode & 0o7777;
    text = readFileSync(fd, 'utf8');
  } catch (error) {
    throw new StackbackError(
      'SECRET_FILE',
      `cannot read ${key} ${file} of source ${sourceName}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      'check the path and that the stackback user may read it (mode 0600 or 0640)',
    );
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if ((mode & 0o007) !== 0) {
    throw new StackbackError(
      'SECRET_FILE',
      `${key} ${file} of source ${sourceName} is accessible to others (mode ${mode.toString(8).padStart(4, '0')}): refusing to use it`,
      `chmod o-rwx ${file} (mode 0600, or 0640 with group stackback)`,
    );
  }
  return text.split(/\r?\n/)[0];
}
