import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { StackbackError } from './errors.ts';

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

/**
 * The text of a secret the daemon's user (and its group) may read but nobody else: a file
 * granting any access to others is refused (whoever can read it has the database, the vector
 * store or the bucket). `what` names it in errors ("password_file /etc/… of source main");
 * errors are SECRET_FILE and never quote the content.
 */
export function readPrivateText(file: string, what: string): string {
  try {
    return readSecretFileChecked(file, {
      refuse: (mode) =>
        (mode & 0o007) === 0
          ? undefined
          : new StackbackError('SECRET_FILE', `${what} is accessible to others (mode ${modeText(mode)}): refusing to use it`, `chmod o-rwx ${file} (mode 0600, or 0640 with group stackback)`),
    }).toString('utf8');
  } catch (error) {
    if (error instanceof StackbackError) throw error;
    throw new StackbackError('SECRET_FILE', `cannot read ${what}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 'check the path and that the stackback user may read it (mode 0600 or 0640)');
  }
}
