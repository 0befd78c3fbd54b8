import type { Readable } from 'node:stream';
import type { RemoteStorageSpec } from './storage/remote.ts';
import { StackbackError } from '../errors.ts';
import { validateBackupName } from './manifest.ts';

/**
 * Where the repository's objects live (DESIGN.md §3). Everything above this interface —
 * the repository, jobs, GC, verify, the restore threads — names objects by key and never
 * by path; one implementation per kind of storage (storage/local.ts: a folder).
 *
 * Keys are '/'-separated and fixed by the repository format:
 *   repo.json                  the repository's parameters
 *   manifests/<backup>.json    one per completed backup
 *   chains/<chain>/<chunk-id>  chunk objects
 * A prefix is a key's leading part up to and including a '/' ('chains/', 'chains/<chain>/').
 *
 * Crash safety, the whole argument: a put is atomic (a reader sees the whole object or
 * none) and its bytes are durable when it returns, but its *name* may still be lost in a
 * crash until `sync()` returns (locally: the folder fsyncs, batched because one per chunk
 * would cost more than the writes). So a backup puts its chunks, calls sync() — the
 * barrier — and only then puts the manifest that names them, and syncs again: a manifest
 * never names a chunk that a crash can take away, and a backup without a manifest never
 * happened (its chunks are garbage, collected later). Storage whose writes are durable
 * when acknowledged (S3) implements sync() as a no-op.
 */
export interface ObjectStorage {
  /**
   * Serialisable description from which a worker thread opens its own storage (openStorage),
   * able to read at least chunks `ids` of `chain` (a remote's spec carries where they are).
   */
  specFor(chain: string, ids: string[]): Promise<StorageSpec>;
  /** For people: where the objects are (a folder, a bucket URL). */
  readonly location: string;
  /** How many threads reading and hashing its objects at once pay off (a deep verify, a restore's checks). */
  readonly hashThreads: number;

  /**
   * Stores `data` under `key`, atomically. Objects are write-once in meaning: a key is only
   * ever put again with the same content (a chunk re-stored over a damaged object or one an
   * unfinished run left), and the new object then replaces the old whole — readers see the
   * old or the new, never a mix. Durable as described above: bytes on return, name after
   * sync(). On failure nothing is visible under `key` that was not there before; a full
   * disk is DISK_SPACE. May be called concurrently for different keys.
   */
  put(key: string, data: Uint8Array): Promise<void>;

  /**
   * Makes every put and remove that returned before this call durable. Idempotent and
   * cheap when there is nothing to do; a no-op for storage that is durable on acknowledge.
   */
  sync(): Promise<void>;

  /**
   * The whole object, or undefined when there is none (never a partial one). With
   * `scratch`, the bytes go into its buffer (grown when too small) and the result is a view
   * of it, valid until the next get with that scratch: for a thread's hot loop, which then
   * reads with no extra copy. A local read with scratch blocks the caller's thread.
   */
  get(key: string, scratch?: ReadScratch): Promise<Buffer | undefined>;

  /** The object as a stream (for objects too big for one buffer), or undefined when there is none. */
  getStream(key: string): Promise<Readable | undefined>;

  /** Size and modification time of an object, or undefined when there is none. */
  stat(key: string): Promise<ObjectInfo | undefined>;

  /**
   * The keys directly below `prefix` and the prefixes ('…/') below it that hold objects,
   * each once, in no particular order. Memory stays bounded however many keys there are
   * (GC walks millions of chunks). Removing keys already listed while listing goes on is
   * allowed. An object whose put has not returned is never listed; an absent prefix lists
   * nothing.
   */
  list(prefix: string): AsyncIterable<string>;

  /**
   * Removes the object `key`, or with a prefix every object below it. An absent key is not
   * an error, so removing twice is fine. Readers stop seeing it at once; durable after sync().
   */
  remove(key: string): Promise<void>;

  /** Removes what unfinished puts left behind (temp files); call under the writer lock. Returns how many. */
  removeUnfinished(): Promise<number>;

  /** Bytes that can still be stored, or undefined where that is unknown (a bucket). */
  freeBytes(): Promise<number | undefined>;
}

export interface ObjectInfo {
  size: number;
  mtimeMs: number;
}

export type StorageSpec = { kind: 'local'; root: string } | RemoteStorageSpec;

/** The reusable buffer of get(key, scratch). */
export class ReadScratch {
  buffer = Buffer.alloc(0);
}

// Keys. Every id and name is checked before it becomes part of a key, and again by the
// storage before a key becomes a path or a request.

export const REPO_INFO_KEY = 'repo.json';
export const MANIFESTS = 'manifests/';
export const CHAINS = 'chains/';

const CHUNK_ID = /^[0-9a-f]{64}$/;
const CHAIN_ID = /^[0-9a-z-]{1,64}$/;

export function checkChainId(chain: string): string {
  if (!CHAIN_ID.test(chain)) throw new StackbackError('REPO_CORRUPT', `invalid chain id ${JSON.stringify(chain)}`);
  return chain;
}

export function checkChunkId(id: string): string {
  if (!CHUNK_ID.test(id)) throw new StackbackError('REPO_CORRUPT', `invalid chunk id ${JSON.stringify(id)}`);
  return id;
}

export function chainPrefix(chain: string): string {
  return `${CHAINS}${checkChainId(chain)}/`;
}

export function chunkKey(chain: string, id: string): string {
  return `${chainPrefix(chain)}${checkChunkId(id)}`;
}

export function manifestKey(name: string): string {
  return `${MANIFESTS}${validateBackupName(name)}.json`;
}

/** The last part of a key or prefix: a chunk id, a manifest's file name, a chain id. */
export function keyName(key: string): string {
  const trimmed = key.endsWith('/') ? key.slice(0, -1) : key;
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}
