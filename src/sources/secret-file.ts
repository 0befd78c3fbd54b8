import { readPrivateText } from '../secret-file-read.ts';

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
  const text = readPrivateText(file, `${key} ${file} of source ${sourceName}`);
  return text.split(/\r?\n/)[0];
}
