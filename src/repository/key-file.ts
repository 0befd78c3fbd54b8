import { randomBytes, scryptSync } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { StackbackError } from '../errors.ts';
import { modeText, readSecretFileChecked } from '../secret-file-read.ts';
import { MASTER_SECRET_BYTES, newMasterSecret, seal, unseal } from './crypto.ts';

/**
 * The repository key file (repository.key_file): the master secret of an encrypted
 * repository, kept outside it. Either the secret itself, or — with repository.passphrase_file —
 * one or more wrappings of it, each sealed under a key made from a passphrase by scrypt
 * (key add / key remove change the wrappings, never the secret, so no chunk is rewritten).
 *
 *   { "stackback_key": 1, "key_id": "<16 hex>", "created_at": "…", "secret": "<base64>" }
 *   { "stackback_key": 1, "key_id": "<16 hex>", "created_at": "…", "passphrases": [Wrapping, …] }
 *
 * The key id names the key (repo.json records it, so a wrong file is named as such); it
 * reveals nothing of the secret. Key files and passphrase files must be readable by their
 * owner alone (mode 0600 or stricter): anyone who can read them can read every backup.
 */
export interface KeySource {
  /** repository.key_file */
  keyFile: string;
  /** repository.passphrase_file, or undefined for a key file that holds the secret itself */
  passphraseFile: string | undefined;
}

interface Wrapping {
  id: string;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  sealed: string;
}

export interface KeyFileContent {
  stackback_key: 1;
  key_id: string;
  created_at: string;
  secret?: string;
  passphrases?: Wrapping[];
}

export interface UnlockedKey {
  keyId: string;
  master: Buffer;
}

// scrypt at 2^16 × 8 × 128 bytes = 64 MiB of memory per guess (and about 0.2 s here).
const SCRYPT = { N: 2 ** 16, r: 8, p: 1 };
const KEY_ID = /^[0-9a-f]{16}$/;

function keyError(code: 'KEY_MISSING' | 'KEY_INVALID' | 'KEY_WRONG', message: string, hint: string): StackbackError {
  return new StackbackError(code, message, hint);
}

/** Reads a file that must be private (mode 0600 or stricter); `what` names it in errors. */
function readPrivateFile(file: string, what: string): Buffer {
  try {
    return readSecretFileChecked(file, {
      noFollow: true,
      refuse: (mode) =>
        (mode & 0o077) === 0 ? undefined : keyError('KEY_INVALID', `${what} ${file} is readable by others than its owner (mode ${modeText(mode)}): refusing to use it`, `chmod 600 ${file}`),
    });
  } catch (error) {
    if (error instanceof StackbackError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw keyError('KEY_MISSING', `${what} ${file} does not exist`, 'restore it from where you keep it (`stackback key import`), or fix the config');
    throw keyError('KEY_INVALID', `cannot read ${what} ${file}: ${code ?? (error as Error).message}`, 'check the path and that the stackback user owns it');
  }
}

function readPassphrase(file: string): Buffer {
  const text = readPrivateFile(file, 'passphrase file').toString('utf8').split(/\r?\n/)[0] ?? '';
  if (text.length === 0) throw keyError('KEY_INVALID', `passphrase file ${file} is empty`, 'put the passphrase on its first line');
  return Buffer.from(text, 'utf8');
}

/** Checks the shape of a key file's content; `origin` names it in errors. */
export function parseKeyFile(text: string, origin: string): KeyFileContent {
  const invalid = (why: string) => keyError('KEY_INVALID', `${origin} is not a valid stackback key: ${why}`, 'restore the key file from your exported copy (`stackback key import`)');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Not the parser's message: it quotes the text, which is the secret.
    throw invalid('not JSON — truncated or damaged?');
  }
  const content = value as Partial<KeyFileContent>;
  if (typeof value !== 'object' || value === null || content.stackback_key !== 1) throw invalid('no "stackback_key": 1');
  if (typeof content.key_id !== 'string' || !KEY_ID.test(content.key_id)) throw invalid('bad key_id');
  if (content.secret !== undefined) {
    if (typeof content.secret !== 'string' || Buffer.from(content.secret, 'base64').length !== MASTER_SECRET_BYTES) throw invalid(`the secret is not ${MASTER_SECRET_BYTES} bytes`);
  } else if (!Array.isArray(content.passphrases) || content.passphrases.length === 0 || !content.passphrases.every(isWrapping)) {
    throw invalid('neither a secret nor passphrase wrappings');
  }
  return content as KeyFileContent;
}

function isWrapping(w: unknown): w is Wrapping {
  const x = w as Wrapping;
  return (
    typeof x === 'object' && x !== null && typeof x.id === 'string' && typeof x.sealed === 'string' && x.kdf?.name === 'scrypt' &&
    Number.isInteger(x.kdf.N) && x.kdf.N >= SCRYPT.N && Number.isInteger(x.kdf.r) && x.kdf.r >= 1 && Number.isInteger(x.kdf.p) && x.kdf.p >= 1 && typeof x.kdf.salt === 'string'
  );
}

function passphraseKey(passphrase: Buffer, kdf: Wrapping['kdf']): Buffer {
  return scryptSync(passphrase, Buffer.from(kdf.salt, 'base64'), 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r + 1024 * 1024 });
}

function wrap(master: Buffer, keyId: string, passphrase: Buffer): Wrapping {
  const kdf = { name: 'scrypt' as const, ...SCRYPT, salt: randomBytes(16).toString('base64') };
  const id = randomBytes(4).toString('hex');
  return { id, kdf, sealed: seal(passphraseKey(passphrase, kdf), 'key', `key ${keyId}`, master).toString('base64') };
}

/** The index of the wrapping `passphrase` opens and the secret in it, or undefined. */
function unwrap(content: KeyFileContent, passphrase: Buffer): { index: number; master: Buffer } | undefined {
  for (const [index, w] of (content.passphrases ?? []).entries()) {
    try {
      return { index, master: unseal(passphraseKey(passphrase, w.kdf), 'key', `key ${content.key_id}`, Buffer.from(w.sealed, 'base64')) };
    } catch {
      // another passphrase's wrapping
    }
  }
  return undefined;
}

export function readKeyFile(file: string): KeyFileContent {
  return parseKeyFile(readPrivateFile(file, 'key file').toString('utf8'), `key file ${file}`);
}

/** The master secret in `content`, opened with the passphrase of `source` where it is wrapped. */
export function unlockContent(content: KeyFileContent, source: KeySource): UnlockedKey {
  if (content.secret !== undefined) return { keyId: content.key_id, master: Buffer.from(content.secret, 'base64') };
  if (source.passphraseFile === undefined) {
    throw keyError('KEY_INVALID', `key file ${source.keyFile} is protected by a passphrase, and repository.passphrase_file is not set`, 'set repository.passphrase_file to the file holding the passphrase');
  }
  const opened = unwrap(content, readPassphrase(source.passphraseFile));
  if (!opened) throw keyError('KEY_WRONG', `the passphrase in ${source.passphraseFile} opens none of the wrappings in key file ${source.keyFile}`, 'check repository.passphrase_file');
  return { keyId: content.key_id, master: opened.master };
}

export function unlockKey(source: KeySource): UnlockedKey {
  return unlockContent(readKeyFile(source.keyFile), source);
}

/**
 * A new key file with a new master secret — wrapped under the passphrase when the source
 * names one. Never replaces a file: EEXIST is KEY_EXISTS for the caller to handle.
 */
export async function createKeyFile(source: KeySource): Promise<UnlockedKey> {
  const master = newMasterSecret();
  const keyId = randomBytes(8).toString('hex');
  const base = { stackback_key: 1 as const, key_id: keyId, created_at: new Date().toISOString() };
  const content: KeyFileContent = source.passphraseFile === undefined ? { ...base, secret: master.toString('base64') } : { ...base, passphrases: [wrap(master, keyId, readPassphrase(source.passphraseFile))] };
  await writeKeyFile(source.keyFile, content, 'new');
  return { keyId, master };
}

/** Adds a wrapping under the passphrase in `newPassphraseFile` (key add). */
export async function addPassphrase(source: KeySource, newPassphraseFile: string): Promise<{ id: string; count: number }> {
  const content = readKeyFile(source.keyFile);
  if (content.secret !== undefined) throw notWrapped(source.keyFile);
  const { master } = unlockContent(content, source);
  const passphrase = readPassphrase(newPassphraseFile);
  if (unwrap(content, passphrase)) throw new StackbackError('USAGE', `the passphrase in ${newPassphraseFile} already opens key file ${source.keyFile}`);
  const added = wrap(master, content.key_id, passphrase);
  content.passphrases!.push(added);
  await writeKeyFile(source.keyFile, content, 'replace');
  return { id: added.id, count: content.passphrases!.length };
}

/** Removes the wrapping the passphrase in `oldPassphraseFile` opens (key remove); never the last one. */
export async function removePassphrase(source: KeySource, oldPassphraseFile: string): Promise<{ id: string; count: number }> {
  const content = readKeyFile(source.keyFile);
  if (content.secret !== undefined) throw notWrapped(source.keyFile);
  const opened = unwrap(content, readPassphrase(oldPassphraseFile));
  if (!opened) throw keyError('KEY_WRONG', `the passphrase in ${oldPassphraseFile} opens none of the wrappings in key file ${source.keyFile}`, 'name the file of a passphrase that opens it');
  if (content.passphrases!.length === 1) throw new StackbackError('USAGE', `that is the only passphrase of key file ${source.keyFile}: removing it would lose the key`, 'add another one first (`stackback key add`)');
  const [removed] = content.passphrases!.splice(opened.index, 1);
  await writeKeyFile(source.keyFile, content, 'replace');
  return { id: removed!.id, count: content.passphrases!.length };
}

function notWrapped(file: string): StackbackError {
  return new StackbackError('USAGE', `key file ${file} holds the key itself, not passphrase wrappings`, 'passphrases apply to a repository made with repository.passphrase_file set');
}

/**
 * Writes a key file durably and privately: temp file (0600) → fsync → link or rename → fsync
 * of the folder, so a crash leaves the old file or the new, never a cut one. 'new' refuses
 * to replace an existing file (KEY_EXISTS).
 */
export async function writeKeyFile(file: string, content: KeyFileContent, mode: 'new' | 'replace'): Promise<void> {
  const folder = path.dirname(file);
  const temp = path.join(folder, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await fs.open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(content, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (mode === 'new') await fs.link(temp, file);
    else await fs.rename(temp, file);
    const dir = await fs.open(folder, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && mode === 'new') throw new StackbackError('KEY_EXISTS', `key file ${file} already exists: it is never overwritten`, 'move it away first if you really mean to replace it');
    throw new StackbackError('KEY_INVALID', `cannot write key file ${file}: ${code ?? (error as Error).message}`, code === 'EROFS' || code === 'EACCES' ? 'run `stackback init` (or `key import`) as the stackback user, where the key file\'s folder is writable' : undefined);
  } finally {
    await fs.rm(temp, { force: true });
  }
}
