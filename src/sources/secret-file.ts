import { StackbackError } from '../errors.ts';
import { modeText, readSecretFileChecked } from '../secret-file-read.ts';

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
  let text: string;
  try {
    text = readSecretFileChecked(file, {
      refuse: (mode) =>
        (mode & 0o007) === 0
          ? undefined
          : new StackbackError(
              'SECRET_FILE',
              `${key} ${file} of source ${sourceName} is accessible to others (mode ${modeText(mode)}): refusing to use it`,
              `chmod o-rwx ${file} (mode 0600, or 0640 with group stackback)`,
            ),
    }).toString('utf8');
  } catch (error) {
    if (error instanceof StackbackError) throw error;
    throw new StackbackError(
      'SECRET_FILE',
      `cannot read ${key} ${file} of source ${sourceName}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      'check the path and that the stackback user may read it (mode 0600 or 0640)',
    );
  }
  return text.split(/\r?\n/)[0];
}
