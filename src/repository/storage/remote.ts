import { Readable } from 'node:stream';
import { StackbackError } from '../../errors.ts';
import type { ObjectCodec } from '../object-codec.ts';
import { CHAINS, chainPrefix, checkChainId, checkChunkId, keyName, manifestKey, MANIFESTS, type ObjectInfo, type ObjectStorage, REPO_INFO_KEY } from '../storage.ts';
import { Bucket, type BucketSpec } from './bucket.ts';
import { PACK_HEAD_GUESS, type PackBuilder, type PackEntry, packChainPrefix, packKey, type PackLocation, PACKS, parsePackKey, readPackIndex } from './packs.ts';

/**
 * What a reader of a remote knows of its packs: which packs each chain has (with their sizes)
 * and where each chunk is. The catalog keeps it between runs (so a copy never re-reads every
 * pack's index); a worker thread gets the part it needs in its spec. The bucket stays the
 * truth: RemoteStorage reconciles a chain with one LIST before it first reads it.
 */
export interface PackIndexStore {
  /** The packs of `chain` this store knows, by pack id, with their sizes. */
  packs(chain: string): Map<string, number>;
  /** The size of one pack, or undefined when the store does not know it. */
  packSize(chain: string, packId: string): number | undefined;
  addPack(chain: string, packId: string, size: number, entries: PackEntry[]): void;
  forgetPack(chain: string, packId: string): void;
  /** Where chunk `id` of `chain` is (`pack`: the pack id), or undefined. */
  locate(chain: string, id: string): PackLocation | undefined;
  /** The chunk ids of `chain` (iterated while nothing is added). */
  chunkIds(chain: string): Iterable<string>;
  /** The chunks of one pack, by offset (reads fetch whole chunks; garbage collection asks which are used). */
  packEntries(chain: string, packId: string): PackEntry[];
}

/** A PackIndexStore in memory: a worker thread's, and a remote read without a catalog. */
export class MemoryPackIndex implements PackIndexStore {
  private readonly packSizes = new Map<string, Map<string, number>>();
  private readonly locations = new Map<string, Map<string, PackLocation>>();

  packs(chain: string): Map<string, number> {
    return new Map(this.packSizes.get(chain));
  }
  packSize(chain: string, packId: string): number | undefined {
    return this.packSizes.get(chain)?.get(packId);
  }
  addPack(chain: string, packId: string, size: number, entries: PackEntry[]): void {
    let sizes = this.packSizes.get(chain);
    if (!sizes) this.packSizes.set(chain, (sizes = new Map()));
    sizes.set(packId, size);
    let chunks = this.locations.get(chain);
    if (!chunks) this.locations.set(chain, (chunks = new Map()));
    for (const entry of entries) if (!chunks.has(entry.id)) chunks.set(entry.id, { pack: packId, offset: entry.offset, length: entry.length });
  }
  forgetPack(chain: string, packId: string): void {
    this.packSizes.get(chain)?.delete(packId);
    const chunks = this.locations.get(chain);
    for (const [id, location] of chunks ?? []) if (location.pack === packId) chunks!.delete(id);
  }
  locate(chain: string, id: string): PackLocation | undefined {
    return this.locations.get(chain)?.get(id);
  }
  chunkIds(chain: string): Iterable<string> {
    return this.locations.get(chain)?.keys() ?? [];
  }
  packEntries(chain: string, packId: string): PackEntry[] {
    return [...(this.locations.get(chain) ?? [])]
      .filter(([, l]) => l.pack === packId)
      .map(([id, l]) => ({ id, offset: l.offset, length: l.length }))
      .sort((a, b) => a.offset - b.offset);
  }
}

/** A worker thread's view of a remote: the bucket, and where the chunks it will read are. */
export interface RemoteStorageSpec {
  kind: 's3';
  bucket: BucketSpec;
  chain: string;
  packs: [packId: string, size: number][];
  locations: [id: string, packId: string, offset: number, length: number][];
}

/** Bytes read ahead from a pack per ranged GET: restores read a pack's chunks in order, so one GET serves many. */
const READ_WINDOW = 4 * 1024 * 1024;
/** Windows kept (read or in flight) per storage: the current one and the ones ahead. */
const WINDOWS_KEPT = 3;
const HEADER_READS_AT_ONCE = 8;

interface Window {
  pack: string;
  start: number;
  end: number;
  data: Promise<Buffer>;
}

/**
 * A remote (an S3-compatible bucket under a prefix) seen through the ObjectStorage interface
 * with the local repository's keys, so the repository's readers work on it unchanged:
 *   repo.json, manifests/<backup>.json   the same objects as locally, same keys
 *   chains/<chain>/<chunk-id>            read from packs/<chain>/<pack>.pack (packs.ts)
 * Chunks are written only as whole packs (putPack); the copy job decides what goes in them.
 * Writes are durable once answered, so sync() has nothing to do.
 */
export class RemoteStorage implements ObjectStorage {
  readonly bucket: Bucket;
  readonly index: PackIndexStore;
  private codec: ObjectCodec | undefined;
  /** The chains reconciled with the bucket (or being so), once per RemoteStorage. */
  private readonly synced = new Map<string, Promise<void>>();
  private windows: Window[] = [];
  private readonly packEntries = new Map<string, PackEntry[]>();

  constructor(bucket: Bucket, index: PackIndexStore, options: { syncedChains?: string[] } = {}) {
    this.bucket = bucket;
    this.index = index;
    for (const chain of options.syncedChains ?? []) this.synced.set(chain, Promise.resolve());
  }

  /** A worker thread's RemoteStorage: everything it reads is in the spec, so it lists nothing. */
  static fromSpec(spec: RemoteStorageSpec): RemoteStorage {
    const index = new MemoryPackIndex();
    const sizes = new Map(spec.packs);
    const byPack = new Map<string, PackEntry[]>();
    for (const [id, pack, offset, length] of spec.locations) {
      let entries = byPack.get(pack);
      if (!entries) byPack.set(pack, (entries = []));
      entries.push({ id, offset, length });
    }
    for (const [pack, size] of sizes) index.addPack(spec.chain, pack, size, byPack.get(pack) ?? []);
    return new RemoteStorage(new Bucket(spec.bucket), index, { syncedChains: [spec.chain] });
  }

  /** What a worker thread needs to read chunks `ids` of `chain`. */
  async specFor(chain: string, ids: string[]): Promise<RemoteStorageSpec> {
    await this.ensureChain(chain);
    const locations: RemoteStorageSpec['locations'] = [];
    const packs = new Map<string, number>();
    for (const id of new Set(ids)) {
      const at = this.index.locate(chain, id);
      if (!at) continue;
      locations.push([id, at.pack, at.offset, at.length]);
      if (!packs.has(at.pack)) packs.set(at.pack, this.index.packSize(chain, at.pack) ?? 0);
    }
    return { kind: 's3', bucket: this.bucket.spec, chain, packs: [...packs], locations };
  }

  /** One: reads stream at the network's pace, which one thread hashes easily; more would hold more windows in memory. */
  readonly hashThreads = 1;

  get location(): string {
    return `remote ${this.bucket.spec.remote} (${this.bucket.location})`;
  }

  /** The repository's codec, once it is opened: reading a pack's index needs it (it may be sealed). */
  useCodec(codec: ObjectCodec): void {
    this.codec = codec;
  }

  /**
   * Brings the index of `chain` in line with the bucket: one LIST of its packs, then the index
   * of every pack the store does not know (one ranged GET each); packs gone from the bucket are
   * forgotten. Once per chain per RemoteStorage.
   */
  ensureChain(chain: string): Promise<void> {
    // Concurrent readers of one chain share one reconciliation.
    let synced = this.synced.get(chain);
    if (!synced) {
      synced = this.reconcile(chain);
      this.synced.set(chain, synced);
      synced.catch(() => this.synced.delete(chain));
    }
    return synced;
  }

  private async reconcile(chain: string): Promise<void> {
    const known = this.index.packs(chain);
    const unknown: { packId: string; size: number }[] = [];
    for await (const object of this.bucket.list(packChainPrefix(chain))) {
      const parsed = parsePackKey(object.key);
      if (!parsed || parsed.chain !== chain) continue;
      if (known.get(parsed.packId) === object.size) known.delete(parsed.packId);
      else unknown.push({ packId: parsed.packId, size: object.size });
    }
    // What is left was not listed with its size: gone (or replaced, then read again below).
    for (const packId of known.keys()) this.index.forgetPack(chain, packId);
    let next = 0;
    const reader = async () => {
      while (next < unknown.length) {
        const { packId, size } = unknown[next++]!;
        this.index.addPack(chain, packId, size, await this.readIndex(chain, packId, size));
      }
    };
    await Promise.all(Array.from({ length: HEADER_READS_AT_ONCE }, reader));
  }

  private async readIndex(chain: string, packId: string, size: number): Promise<PackEntry[]> {
    if (!this.codec) throw new StackbackError('INTERNAL', 'the remote repository is not open (no codec)');
    const key = packKey(chain, packId);
    const fetch = async (end: number) => {
      const bytes = await this.bucket.get(key, { start: 0, end: Math.min(end, size) });
      if (!bytes) throw new StackbackError('REPO_CORRUPT', `pack ${key} vanished from ${this.location} while it was read`);
      return bytes;
    };
    return readPackIndex(key, size, await fetch(PACK_HEAD_GUESS), this.codec, fetch);
  }

  /** Uploads a finished pack and records its chunks; they are on the remote once this returns. */
  async putPack(builder: PackBuilder): Promise<{ key: string; bytes: number }> {
    if (!this.codec) throw new StackbackError('INTERNAL', 'the remote repository is not open (no codec)');
    const { key, body, entries } = builder.finish(this.codec);
    await this.bucket.put(key, body);
    this.index.addPack(builder.chain, parsePackKey(key)!.packId, body.length, entries);
    return { key, bytes: body.length };
  }

  /** Deletes one pack (garbage collection) and forgets its chunks. */
  async removePack(chain: string, packId: string): Promise<void> {
    await this.bucket.delete(packKey(chain, packId));
    this.index.forgetPack(chain, packId);
  }

  /** Every pack of the remote, as the bucket lists them (with sizes and upload times). */
  async *listPacks(): AsyncIterable<{ chain: string; packId: string; size: number; mtimeMs: number }> {
    for await (const object of this.bucket.list(PACKS)) {
      const parsed = parsePackKey(object.key);
      if (parsed) yield { ...parsed, size: object.size, mtimeMs: object.mtimeMs };
    }
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    this.plainKey(key, 'put');
    await this.bucket.put(key, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }

  async sync(): Promise<void> {}

  async get(key: string): Promise<Buffer | undefined> {
    const chunk = chunkOf(key);
    if (!chunk) return this.bucket.get(this.plainKey(key, 'get'));
    await this.ensureChain(chunk.chain);
    const at = this.index.locate(chunk.chain, chunk.id);
    if (!at) return undefined;
    const window = this.windowFor(chunk.chain, at);
    const data = await window.data;
    return data.subarray(at.offset - window.start, at.offset - window.start + at.length);
  }

  /**
   * A window of a pack that holds `at`: one already read or on its way, or a new ranged GET;
   * then the next one is fetched ahead. Windows are runs of whole chunks (about READ_WINDOW
   * bytes) in the pack's order, so reading a pack front to back fetches each byte once.
   */
  private windowFor(chain: string, at: PackLocation): Window {
    const entries = this.entriesOf(chain, at.pack);
    const covering = this.windows.find((w) => w.pack === at.pack && w.start <= at.offset && at.offset + at.length <= w.end);
    const window = covering ?? this.fetchWindow(chain, at.pack, entries, entries.findIndex((e) => e.offset === at.offset));
    const next = entries.findIndex((e) => e.offset >= window.end);
    if (next >= 0 && !this.windows.some((w) => w.pack === at.pack && w.start === entries[next]!.offset)) this.fetchWindow(chain, at.pack, entries, next);
    return window;
  }

  /** Fetches whole chunks of `pack`, from entry `first` on while they follow each other, up to about READ_WINDOW bytes. */
  private fetchWindow(chain: string, pack: string, entries: PackEntry[], first: number): Window {
    const key = packKey(chain, pack);
    if (first < 0) throw new StackbackError('REPO_CORRUPT', `the index of pack ${key} does not list the chunk asked for`);
    const start = entries[first]!.offset;
    let end = start;
    for (let i = first; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.offset !== end || (end > start && end + entry.length - start > READ_WINDOW)) break;
      end = entry.offset + entry.length;
    }
    const data = this.bucket.get(key, { start, end }).then((bytes) => {
      if (!bytes || bytes.length !== end - start) {
        throw new StackbackError('CHUNK_MISSING', `pack ${key} on ${this.location} is missing or shorter than its index says`, 'a `stackback verify --remote` marks its backups, and the next `stackback copy` sends their chunks again');
      }
      return bytes;
    });
    // A failed read-ahead is reported by the get that needs it, if any.
    data.catch(() => undefined);
    const window = { pack, start, end, data };
    this.windows.push(window);
    if (this.windows.length > WINDOWS_KEPT) this.windows.shift();
    return window;
  }

  /** A pack's chunks by offset, remembered for the last few packs read. */
  private entriesOf(chain: string, pack: string): PackEntry[] {
    let entries = this.packEntries.get(pack);
    if (!entries) {
      entries = this.index.packEntries(chain, pack);
      this.packEntries.set(pack, entries);
      if (this.packEntries.size > WINDOWS_KEPT) this.packEntries.delete(this.packEntries.keys().next().value!);
    }
    return entries;
  }

  async getStream(key: string): Promise<Readable | undefined> {
    const data = await this.get(key);
    return data && Readable.from([data]);
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const chunk = chunkOf(key);
    if (!chunk) {
      const info = await this.bucket.head(this.plainKey(key, 'stat'));
      return info && { size: info.size, mtimeMs: info.mtimeMs };
    }
    await this.ensureChain(chunk.chain);
    const at = this.index.locate(chunk.chain, chunk.id);
    return at && { size: at.length, mtimeMs: 0 };
  }

  async *list(prefix: string): AsyncIterable<string> {
    if (prefix === MANIFESTS) {
      for await (const object of this.bucket.list(MANIFESTS)) if (/^manifests\/[^/]+\.json$/.test(object.key)) yield object.key;
    } else if (prefix === CHAINS) {
      const chains = new Set<string>();
      for await (const pack of this.listPacks()) chains.add(pack.chain);
      for (const chain of chains) yield chainPrefix(chain);
    } else {
      const chain = checkChainId(keyName(prefix));
      if (prefix !== chainPrefix(chain)) throw invalidKey(prefix);
      await this.ensureChain(chain);
      for (const id of [...this.index.chunkIds(chain)]) yield `${prefix}${id}`;
    }
  }

  async remove(key: string): Promise<void> {
    await this.bucket.delete(this.plainKey(key, 'remove'));
  }

  async removeUnfinished(): Promise<number> {
    return 0;
  }

  async freeBytes(): Promise<undefined> {
    return undefined;
  }

  /** repo.json or a manifest's key (checked); chunks are only read, or written in packs. */
  private plainKey(key: string, what: string): string {
    if (key === REPO_INFO_KEY || (key.startsWith(MANIFESTS) && key.endsWith('.json') && manifestKey(key.slice(MANIFESTS.length, -'.json'.length)) === key)) return key;
    throw new StackbackError('INTERNAL', `cannot ${what} ${JSON.stringify(key)} on a remote directly (chunks live in packs)`);
  }
}

function chunkOf(key: string): { chain: string; id: string } | undefined {
  const parts = key.split('/');
  if (parts.length !== 3 || `${parts[0]}/` !== CHAINS) return undefined;
  return { chain: checkChainId(parts[1]!), id: checkChunkId(parts[2]!) };
}

function invalidKey(key: string): StackbackError {
  return new StackbackError('REPO_CORRUPT', `invalid object key ${JSON.stringify(key)}`);
}
