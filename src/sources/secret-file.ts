import { readFileSync } from 'node:fs';
import { StackbackError } from '../errors.ts';

/**
 * A secret kept in a file (password_file, api_key_file): its first line, read once, on
 * first use. The secret itself never appears in a message, only the file's path.
 */
export function secretFromFile(file: string | null, key: string, sourceName: string): () => string | undefined {
  let read = false;
  let secret: string | undefined;
  return () => {
    if (!read && file !== null) {
      try {
        secret = readFileSync(file, 'utf8').split(/\r?\n/)[0];
      } catch (error) {
        throw new StackbackError(
          'SECRET_FILE',
          `cannot read ${key} ${file} of source ${sourceName}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
          'check the path and that the stackback user may read it (mode 0600 or 0640)',
        );
      }
    }
    read = true;
    return secret;
  };
}
