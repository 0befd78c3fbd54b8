import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';

/**
 * Reads a file that holds a secret (a repository key, a passphrase, a password, S3
 * credentials). `refuse` sees the mode of the very file that was opened (fstat of the
 * descriptor, not a second look at the path, which may name another file a moment later)
 * before anything is read, and returns the error to throw when the mode grants too much.
 * The system's own errors (ENOENT, EACCES, EISDIR, ELOOP with noFollow …) are thrown as they
 * come, for the caller to word; none of them carries the file's content.
 */
export function readSecretFileChecked(file: string, options: { noFollow?: boolean; refuse: (mode: number) => Error | undefined }): Buffer {
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_RDONLY | (options.noFollow ? constants.O_NOFOLLOW : 0));
    const refused = options.refuse(fstatSync(fd).mode & 0o7777);
    if (refused) throw refused;
    return readFileSync(fd);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A mode as people write it: 0644. */
export function modeText(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}
