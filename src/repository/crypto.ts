import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { releaseMemory } from './release-memory.ts';

/**
 * Encryption at rest (repository format 2; DESIGN.md §3), after kopia and borg rather than
 * restic's plain SHA-256 ids. One random master secret per repository (kept outside it, see
 * key-file.ts); every key actually used is derived from it with HKDF-SHA-256, salted with the
 * repository id, under a purpose label:
 *   - object key: AES-256-GCM of every stored object (chunks, manifests), a random 96-bit
 *     nonce per object, the object's type and key as associated data — an object copied to
 *     another name or used as another type fails to decrypt instead of being read as it;
 *   - id key: chunk ids are HMAC-SHA-256 of the plaintext, so nobody without the key can
 *     test whether a known file is in the repository;
 *   - chunker seed: the gear table, so cut points (and chunk sizes) reveal nothing either;
 *   - check value: stored in repo.json to recognise the right key, and no use for anything else.
 * Random nonces are safe here: GCM's limit of about 2^32 messages per key is 4 PiB of 1 MiB chunks.
 */
export const CIPHER = 'aes-256-gcm';
export const MASTER_SECRET_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** What sealing adds to an object: nonce and authentication tag. */
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

/** The derived keys a repository (or a thread reading it) works with; structured-clone safe. */
export interface ObjectKeys {
  objectKey: Uint8Array;
  idKey: Uint8Array;
}

export interface DerivedKeys extends ObjectKeys {
  /** Hex seed of the chunker's gear table. */
  chunkerSeed: string;
  /** Hex value repo.json keeps to recognise the key. */
  check: string;
}

function derive(master: Uint8Array, repositoryId: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.from(repositoryId, 'utf8'), `stackback repository v2 ${purpose}`, 32));
}

export function deriveKeys(master: Uint8Array, repositoryId: string): DerivedKeys {
  if (master.length !== MASTER_SECRET_BYTES) throw new Error(`a master secret has ${MASTER_SECRET_BYTES} bytes, got ${master.length}`);
  return {
    objectKey: derive(master, repositoryId, 'object encryption'),
    idKey: derive(master, repositoryId, 'chunk id'),
    chunkerSeed: derive(master, repositoryId, 'chunker seed').toString('hex'),
    check: derive(master, repositoryId, 'key check').toString('hex'),
  };
}

export function newMasterSecret(): Buffer {
  return randomBytes(MASTER_SECRET_BYTES);
}

/** Compares two hex check values in constant time. */
export function checkValuesMatch(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

/**
 * The kinds of sealed object (a key: a master secret wrapped under a passphrase; a pack index:
 * the table of contents of a remote's pack, storage/packs.ts); part of the associated data.
 */
export type ObjectType = 'chunk' | 'manifest' | 'key' | 'pack-index';

function associatedData(type: ObjectType, key: string): Buffer {
  return Buffer.from(`stackback/v2\0${type}\0${key}`, 'utf8');
}

/** nonce ‖ AES-256-GCM(data) ‖ tag, bound to the object's type and key; `data` may come in parts, sealed as one. */
export function seal(objectKey: Uint8Array, type: ObjectType, key: string, data: Uint8Array | readonly Uint8Array[]): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv(CIPHER, objectKey, nonce);
  cipher.setAAD(associatedData(type, key));
  const body = (data instanceof Uint8Array ? [data] : data).map((part) => cipher.update(part));
  const last = cipher.final();
  const sealed = Buffer.concat([nonce, ...body, last, cipher.getAuthTag()]);
  releaseMemory(...body);
  return sealed;
}

/**
 * The plaintext of a sealed object; throws when it was changed, is truncated, was made under
 * another key, or belongs to another name or type (GCM cannot tell these apart).
 */
export function unseal(objectKey: Uint8Array, type: ObjectType, key: string, stored: Uint8Array): Buffer {
  if (stored.length < SEAL_OVERHEAD) throw new Error(`it is ${stored.length} bytes, shorter than any encrypted object`);
  const decipher = createDecipheriv(CIPHER, objectKey, stored.subarray(0, NONCE_BYTES));
  decipher.setAAD(associatedData(type, key));
  decipher.setAuthTag(stored.subarray(stored.length - TAG_BYTES));
  const body = decipher.update(stored.subarray(NONCE_BYTES, stored.length - TAG_BYTES));
  try {
    const last = decipher.final();
    return last.length === 0 ? body : Buffer.concat([body, last]);
  } catch {
    throw new Error('it fails authentication (changed, cut short, written under another key, or moved from another name)');
  }
}

/** A chunk's id: SHA-256 of its plaintext (format 1), or HMAC-SHA-256 under the id key (format 2). */
export function chunkIdOf(plain: Uint8Array, idKey: Uint8Array | undefined): string {
  return (idKey ? createHmac('sha256', idKey) : createHash('sha256')).update(plain).digest('hex');
}
