import { randomBytes, randomUUID } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { StackbackError } from '../errors.ts';
import { missingChunk } from './artifact-reader.ts';
import { type ChunkerParams, DEFAULT_CHUNKER } from './chunker.ts';
import { checkValuesMatch, CIPHER, deriveKeys, type DerivedKeys } from './crypto.ts';
import { createKeyFile, type KeySource, unlockKey, type UnlockedKey } from './key-file.ts';
import { acquireDaemonLock, acquireReaderLock, acquireWriterLock, type Lock, type WriterLockOptions } from './lock.ts';
import { type Manifest, parseManifest } from './manifest.ts';
import { ObjectCodec } from './object-codec.ts';
import { CHAINS, chainPrefix, chunkKey, keyName, manifestKey, MANIFESTS, type ObjectStorage, REPO_INFO_KEY } from './storage.ts';
import { LocalStorage } from './storage/local.ts';
import type { RemoteStorage } from './storage/remote.ts';

/**
 * The repository (DESIGN.md §3): repo.json, manifests and chunk objects, kept in an
 * ObjectStorage (storage.ts says how keys and crash safety work), plus locks/ beside them,
 * which are local files. The repository is the source of truth; the catalog is an index of it.
 *
 * Format 1: plain objects, chunk ids SHA-256 of the plaintext, the chunker's seed in repo.json.
 * Format 2: encrypted (crypto.ts) — keyed ids, sealed objects, the chunker seeded from the key;
 * repo.json holds the key's id and a check value, never the key.
 */
export const PLAIN_FORMAT = 1;
export const ENCRYPTED_FORMAT = 2;

export interface RepoEncryption {
  cipher: typeof CIPHER;
  key_derivation: 'hkdf-sha256';
  chunk_ids: 'hmac-sha256';
  key_id: string;
  check: string;
}

export interface RepoInfo {
  format: typeof PLAIN_FORMAT | typeof ENCRYPTED_FORMAT;
  id: string;
  created_at: string;
  /** Format 2 keeps no seed here: it comes from the key. */
  chunker: Omit<ChunkerParams, 'seed'> & { seed?: string };
  codec: 'zstd';
  encryption: RepoEncryption | null;
}

/** How a repository is opened or made: where its key is, and whether a new one is encrypted. */
export interface RepositoryKeyOptions {
  key: KeySource;
  /** For a new repository: encrypt it (format 2), or not (format 1). */
  encrypt: boolean;
}

function parseRepoInfo(text: string, origin: string): RepoInfo {
  try {
    return JSON.parse(text) as RepoInfo;
  } catch (error) {
    throw new StackbackError('REPO_CORRUPT', `cannot read ${origin}: ${(error as Error).message}`);
  }
}

/** repo.json of the local repository at `root` (which must exist). */
export function readRepoInfo(root: string): RepoInfo {
  const infoFile = new LocalStorage(root).fileOf(REPO_INFO_KEY);
  let text: string;
  try {
    text = readFileSync(infoFile, 'utf8');
  } catch (error) {
    throw new StackbackError('REPO_CORRUPT', `cannot read ${infoFile}: ${(error as Error).message}`);
  }
  return parseRepoInfo(text, infoFile);
}

/**
 * The derived keys of the encrypted repository `info`, once `unlocked` (from `origin`: "key
 * file X", "the imported key") is proven to be its key: KEY_WRONG otherwise.
 */
export function provenKeys(info: RepoInfo, location: string, unlocked: UnlockedKey, origin: string, hint: string): DerivedKeys {
  const expected = info.encryption!;
  checkKeyId(info, location, unlocked.keyId, origin, hint);
  const keys = deriveKeys(unlocked.master, info.id);
  if (!checkValuesMatch(keys.check, expected.check)) {
    throw new StackbackError('KEY_WRONG', `${origin} has the id of repository ${location}'s key (${expected.key_id}) but not its secret (check value differs)`, hint);
  }
  return keys;
}

/** KEY_WRONG unless `keyId` names the key the encrypted repository `info` was made with. */
export function checkKeyId(info: RepoInfo, location: string, keyId: string, origin: string, hint: string): void {
  const expected = info.encryption!.key_id;
  if (keyId !== expected) throw new StackbackError('KEY_WRONG', `${origin} holds key ${keyId}, but repository ${location} is encrypted with key ${expected}`, hint);
}

/** `info` if this stackback reads its format (REPO_FORMAT otherwise). */
function checkedInfo(info: RepoInfo, location: string): RepoInfo {
  const encrypted = info.format === ENCRYPTED_FORMAT && info.encryption?.cipher === CIPHER;
  if (!encrypted && !(info.format === PLAIN_FORMAT && info.encryption === null)) {
    throw new StackbackError('REPO_FORMAT', `repository ${location} has format ${String(info.format)} (encryption ${JSON.stringify(info.encryption?.cipher ?? null)}); this stackback reads formats ${PLAIN_FORMAT} and ${ENCRYPTED_FORMAT}`, 'use a stackback version that matches the repository');
  }
  return info;
}

function keysFor(info: RepoInfo, location: string, source: KeySource): DerivedKeys {
  const hint = 'point repository.key_file at this repository\'s key (restore it with `stackback key import` from your exported copy)';
  return provenKeys(info, location, unlockKey(source), `key file ${source.keyFile}`, hint);
}

export class Repository {
  readonly info: RepoInfo;
  readonly storage: ObjectStorage;
  /** The chunker this repository cuts with (its sizes, and its seed: repo.json's or the key's). */
  readonly chunker: ChunkerParams;
  readonly codec: ObjectCodec;
  /** locks/ of a local repository; a remote has none (one machine writes to it, under the local writer lock). */
  private readonly locksDir: string | undefined;

  private constructor(storage: ObjectStorage, info: RepoInfo, keys: DerivedKeys | undefined, locksDir: string | undefined) {
    this.storage = storage;
    this.info = info;
    const seed = keys?.chunkerSeed ?? info.chunker.seed;
    if (seed === undefined) throw new StackbackError('REPO_CORRUPT', `repo.json of ${storage.location} has no chunker seed`);
    this.chunker = { minSize: info.chunker.minSize, avgSize: info.chunker.avgSize, maxSize: info.chunker.maxSize, seed };
    this.codec = new ObjectCodec({ keys: keys && { objectKey: keys.objectKey, idKey: keys.idKey }, maxChunkSize: this.chunker.maxSize });
    this.locksDir = locksDir;
  }

  /**
   * Opens the repository at `root`. Never creates one: a missing repo.json is an error (a
   * disk that is not mounted must not turn into a new, empty repository).
   */
  static async open(root: string, key: KeySource): Promise<Repository> {
    const storage = new LocalStorage(root);
    const text = await storage.get(REPO_INFO_KEY);
    if (!text) {
      throw new StackbackError('REPO_NOT_INITIALIZED', `no repository at ${root} (repo.json missing)`, 'run `stackback init`, or fix repository.path');
    }
    const info = checkedInfo(parseRepoInfo(text.toString('utf8'), storage.fileOf(REPO_INFO_KEY)), root);
    const repo = new Repository(storage, info, info.encryption ? keysFor(info, root, key) : undefined, path.join(root, 'locks'));
    await storage.ensureFolders();
    await fs.mkdir(repo.locksDir!, { recursive: true, mode: 0o750 });
    return repo;
  }

  /**
   * Opens the copy of a repository on a remote (the repo.json the first copy uploaded) with the
   * key of the local repository it copies; `check` sees repo.json first (before any key is
   * tried). Only the copy and prune jobs write through `storage`.
   */
  static async openRemote(storage: RemoteStorage, key: KeySource, check?: (info: RepoInfo) => void): Promise<Repository> {
    const text = await storage.get(REPO_INFO_KEY);
    if (!text) {
      throw new StackbackError('REPO_NOT_INITIALIZED', `no repository on ${storage.location} (repo.json missing): nothing was copied there yet`, 'run `stackback copy`, or check remotes[].bucket and remotes[].prefix');
    }
    const info = checkedInfo(parseRepoInfo(text.toString('utf8'), `${storage.location}/${REPO_INFO_KEY}`), storage.location);
    check?.(info);
    const repo = new Repository(storage, info, info.encryption ? keysFor(info, storage.location, key) : undefined, undefined);
    storage.useCodec(repo.codec);
    return repo;
  }

  /**
   * Makes a new repository at `root` (`stackback init`, or a first backup); refuses if one is
   * there. Encrypted, it uses the key file if there is one and otherwise makes it — durable
   * before repo.json names its id.
   */
  static async create(root: string, options: RepositoryKeyOptions): Promise<Repository> {
    const storage = new LocalStorage(root);
    if (await storage.stat(REPO_INFO_KEY)) {
      throw new StackbackError('REPO_EXISTS', `a repository already exists at ${root} (id ${readRepoInfo(root).id})`, 'use it as it is, or choose another repository.path');
    }
    const id = randomUUID();
    let keys: DerivedKeys | undefined;
    let encryption: RepoEncryption | null = null;
    if (options.encrypt) {
      const unlocked = await existingOrNewKey(options.key);
      keys = deriveKeys(unlocked.master, id);
      encryption = { cipher: CIPHER, key_derivation: 'hkdf-sha256', chunk_ids: 'hmac-sha256', key_id: unlocked.keyId, check: keys.check };
    }
    const info: RepoInfo = {
      format: options.encrypt ? ENCRYPTED_FORMAT : PLAIN_FORMAT,
      id,
      created_at: new Date().toISOString(),
      chunker: options.encrypt ? { ...DEFAULT_CHUNKER } : { ...DEFAULT_CHUNKER, seed: randomBytes(16).toString('hex') },
      codec: 'zstd',
      encryption,
    };
    const repo = new Repository(storage, info, keys, path.join(root, 'locks'));
    await storage.ensureFolders();
    await fs.mkdir(repo.locksDir!, { recursive: true, mode: 0o750 });
    // repo.json last: a folder without it is not a repository yet.
    await storage.put(REPO_INFO_KEY, Buffer.from(`${JSON.stringify(info, null, 2)}\n`));
    await storage.sync();
    return repo;
  }

  /** For people: where the repository is. */
  get location(): string {
    return this.storage.location;
  }

  /** A new chain id: time-ordered, so `ls chains/` reads oldest first. */
  static newChainId(at: Date): string {
    return `${at.getTime().toString(36)}-${randomBytes(4).toString('hex')}`;
  }

  async lockWriter(options: WriterLockOptions): Promise<Lock> {
    return acquireWriterLock(this.locks(), options);
  }

  async lockReader(command: string, timeoutMs: number): Promise<Lock> {
    return acquireReaderLock(this.locks(), command, timeoutMs);
  }

  async lockDaemon(): Promise<Lock> {
    return acquireDaemonLock(this.locks());
  }

  private locks(): string {
    if (this.locksDir === undefined) throw new StackbackError('INTERNAL', `${this.location} has no locks: take them on the local repository`);
    return this.locksDir;
  }

  /**
   * Encodes (compresses, and seals when encrypted) and stores one chunk; returns the stored
   * bytes. The object may vanish in a crash until sync(), which must come before the
   * manifest naming it.
   */
  async writeChunk(chain: string, id: string, plain: Buffer, compressionLevel: number): Promise<Buffer> {
    const key = chunkKey(chain, id);
    const stored = this.codec.encodeChunk(key, plain, compressionLevel);
    await this.storage.put(key, stored);
    return stored;
  }

  /** The durability barrier: every chunk written (and object removed) before it survives a crash. */
  async sync(): Promise<void> {
    await this.storage.sync();
  }

  /** The stored bytes of a chunk; CHUNK_MISSING if the object is gone. */
  async readChunk(chain: string, id: string): Promise<Buffer> {
    const stored = await this.storage.get(chunkKey(chain, id));
    if (!stored) throw missingChunk(chain, id);
    return stored;
  }

  async chunkSize(chain: string, id: string): Promise<number | undefined> {
    return (await this.storage.stat(chunkKey(chain, id)))?.size;
  }

  async removeChunk(chain: string, id: string): Promise<void> {
    await this.storage.remove(chunkKey(chain, id));
  }

  /** The commit point of a backup. */
  async writeManifest(manifest: Manifest): Promise<void> {
    const key = manifestKey(manifest.name);
    await this.storage.put(key, this.codec.seal('manifest', key, Buffer.from(`${JSON.stringify(manifest)}\n`)));
    await this.storage.sync();
  }

  async hasManifest(name: string): Promise<boolean> {
    return (await this.storage.stat(manifestKey(name))) !== undefined;
  }

  async readManifest(name: string): Promise<Manifest> {
    const key = manifestKey(name);
    const stored = await this.storage.get(key);
    if (!stored) throw new StackbackError('BACKUP_NOT_FOUND', `backup ${name} not found in the repository`, '`stackback list` shows the backups');
    let text: Buffer;
    try {
      text = this.codec.unseal('manifest', key, stored);
    } catch (error) {
      throw new StackbackError('REPO_CORRUPT', `manifest of backup ${name} (${this.location}/${key}) cannot be decrypted: ${(error as Error).message}`);
    }
    return parseManifest(text.toString('utf8'), `${this.location}/${key}`);
  }

  async listManifestNames(): Promise<string[]> {
    const names: string[] = [];
    for await (const key of this.storage.list(MANIFESTS)) names.push(keyName(key).slice(0, -'.json'.length));
    return names.sort();
  }

  /** The commit point of a deletion: after this the backups no longer exist (one sync for all). */
  async deleteManifests(...names: string[]): Promise<void> {
    for (const name of names) await this.storage.remove(manifestKey(name));
    await this.storage.sync();
  }

  async removeChain(chain: string): Promise<void> {
    await this.storage.remove(chainPrefix(chain));
  }

  /**
   * Deletes the chunk objects of `chain` for which `remove(id, mtimeMs)` says so, as the
   * storage lists them (memory stays bounded whatever the chain's size); removes the chain
   * when nothing is left. Returns what was freed and what remains.
   */
  async removeChunksWhere(chain: string, remove: (id: string, mtimeMs: number) => boolean): Promise<{ chunks: number; bytes: number; remaining: number }> {
    const result = { chunks: 0, bytes: 0, remaining: 0 };
    const prefix = chainPrefix(chain);
    for await (const key of this.storage.list(prefix)) {
      const info = await this.storage.stat(key);
      if (!info) continue;
      if (!remove(keyName(key), info.mtimeMs)) {
        result.remaining += 1;
        continue;
      }
      await this.storage.remove(key);
      result.chunks += 1;
      result.bytes += info.size;
    }
    if (result.remaining === 0) await this.storage.remove(prefix);
    return result;
  }

  async listChains(): Promise<string[]> {
    const chains: string[] = [];
    for await (const prefix of this.storage.list(CHAINS)) chains.push(keyName(prefix));
    return chains.sort();
  }

  /** Removes what writes that never finished left behind (call under the writer lock). */
  async cleanTemp(): Promise<number> {
    return this.storage.removeUnfinished();
  }

  /** Bytes the repository can still take, or undefined where its storage cannot tell. */
  async freeBytes(): Promise<number | undefined> {
    return this.storage.freeBytes();
  }
}

/** The key in the key file, or a new key file when there is none (a key file is never replaced). */
async function existingOrNewKey(source: KeySource): Promise<UnlockedKey> {
  try {
    return unlockKey(source);
  } catch (error) {
    if ((error as StackbackError).code !== 'KEY_MISSING' || !(await isAbsent(source.keyFile))) throw error;
    return createKeyFile(source);
  }
}

async function isAbsent(file: string): Promise<boolean> {
  return fs.lstat(file).then(
    () => false,
    (error: NodeJS.ErrnoException) => error.code === 'ENOENT',
  );
}
