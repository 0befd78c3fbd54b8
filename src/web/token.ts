import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chownSync, closeSync, constants, existsSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { StackbackError } from '../errors.ts';
import { readPrivateText } from '../secret-file-read.ts';

/** Shorter tokens are refused: the token is all that stands between the network and the dashboard. */
const MIN_TOKEN_LENGTH = 24;

/**
 * Writes a new random token (32 random bytes, base64url) to `file`: mode 0600, or 0640 owned
 * by `group`. Without `replace` an existing file is kept (EEXIST). The file appears whole or
 * not at all; the token never reaches a log or an error.
 */
export function writeTokenFile(file: string, options: { replace: boolean; group?: number | undefined }): 'created' | 'exists' {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
  const temp = `${file}.${process.pid}.tmp`;
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, options.group === undefined ? 0o600 : 0o640);
  try {
    try {
      writeSync(fd, `${randomBytes(32).toString('base64url')}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (options.group !== undefined) chownSync(temp, process.getuid?.() ?? 0, options.group);
    if (options.replace) renameSync(temp, file);
    else {
      try {
        linkSync(temp, file); // never replaces a token someone made meanwhile
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') return 'exists';
        throw error;
      }
    }
    return 'created';
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // renamed into place
    }
  }
}

/**
 * The dashboard's token, held as its SHA-256 only: `matches` compares in constant time, and
 * `digest` tells a rotated token (on reload) from the same one.
 */
export class WebToken {
  readonly digest: Buffer;

  private constructor(digest: Buffer) {
    this.digest = digest;
  }

  /**
   * Reads web.token_file, creating it with a random token when it is missing (its folder must
   * be writable: under the systemd unit /etc/stackback is not, and `stackback web token` makes it).
   */
  static load(file: string): { token: WebToken; created: boolean } {
    let created = false;
    try {
      if (!existsSync(file)) created = writeTokenFile(file, { replace: false }) === 'created';
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new StackbackError('WEB_TOKEN', `web.token_file ${file} does not exist and cannot be created (${code ?? (error as Error).message})`, `create it as root: \`stackback web token\` (writes a random token, mode 0600), or point web.token_file at a writable place`);
    }
    const text = readPrivateText(file, `web.token_file ${file}`).trim();
    if (text.length < MIN_TOKEN_LENGTH || /\s/.test(text)) {
      throw new StackbackError('WEB_TOKEN', `web.token_file ${file} must hold one token of at least ${MIN_TOKEN_LENGTH} characters without spaces`, '`stackback web token --rotate` writes a random one');
    }
    return { token: new WebToken(sha256(text)), created };
  }

  matches(candidate: string): boolean {
    return timingSafeEqual(sha256(candidate), this.digest);
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
