import { randomBytes } from 'node:crypto';
import { StackbackError } from '../../errors.ts';
import type { ObjectCodec } from '../object-codec.ts';
import { checkChainId, checkChunkId } from '../storage.ts';

/**
 * Packs: how a remote holds chunks. A bucket bills and waits per request, and chunks average
 * ~0.4 MiB stored, so a remote stores them many to an object (restic packs to 16 MiB too):
 *
 *   packs/<chain>/<pack-id>.pack   = "SBPACK01" ‖ u32 index length ‖ index ‖ chunk objects
 *
 * A chunk object in a pack is byte for byte the object the local repository stores (sealed
 * under its own chunk key), so a remote holds no plaintext and reading one back is a ranged
 * GET. The index lists each chunk's id, offset (from the end of the index) and length; it is
 * sealed (type 'pack-index', bound to the pack's key) in an encrypted repository. A reader
 * that never saw a pack learns its contents from the first bytes alone (one ranged GET).
 * A pack is one PUT: it is there whole or not at all.
 */
export const PACKS = 'packs/';
const MAGIC = Buffer.from('SBPACK01', 'latin1');
const HEAD_BYTES = MAGIC.length + 4;
/** What a first ranged read of a pack asks for: enough for the index of any usual pack. */
export const PACK_HEAD_GUESS = 64 * 1024;
const PACK_ID = /^[0-9a-f]{32}$/;

export interface PackEntry {
  id: string;
  /** Absolute offset of the chunk object in the pack. */
  offset: number;
  length: number;
}

/** Where a chunk object is on a remote. */
export interface PackLocation {
  pack: string;
  offset: number;
  length: number;
}

export function newPackId(): string {
  return randomBytes(16).toString('hex');
}

export function packChainPrefix(chain: string): string {
  return `${PACKS}${checkChainId(chain)}/`;
}

export function packKey(chain: string, packId: string): string {
  if (!PACK_ID.test(packId)) throw new StackbackError('REPO_CORRUPT', `invalid pack id ${JSON.stringify(packId)}`);
  return `${packChainPrefix(chain)}${packId}.pack`;
}

/** The chain and pack id of a key listed under packs/, or undefined for anything else. */
export function parsePackKey(key: string): { chain: string; packId: string } | undefined {
  const match = /^packs\/([0-9a-z-]{1,64})\/([0-9a-f]{32})\.pack$/.exec(key);
  return match ? { chain: match[1]!, packId: match[2]! } : undefined;
}

/** Collects chunk objects into one pack's bytes. */
export class PackBuilder {
  readonly chain: string;
  private readonly parts: Buffer[] = [];
  private readonly entries: { id: string; offset: number; length: number }[] = [];
  private dataBytes = 0;
  private finished = false;

  constructor(chain: string) {
    this.chain = chain;
  }

  get bytes(): number {
    return this.dataBytes;
  }

  get count(): number {
    return this.entries.length;
  }

  add(id: string, stored: Buffer): void {
    if (this.finished) throw new StackbackError('INTERNAL', 'a pack takes no chunk once finished');
    this.entries.push({ id: checkChunkId(id), offset: this.dataBytes, length: stored.length });
    this.parts.push(stored);
    this.dataBytes += stored.length;
  }

  /** The pack's key and bytes, and where each chunk sits in them; once. */
  finish(codec: ObjectCodec): { key: string; body: Buffer; entries: PackEntry[] } {
    if (this.finished) throw new StackbackError('INTERNAL', 'a pack is finished once');
    this.finished = true;
    const key = packKey(this.chain, newPackId());
    const index = codec.seal('pack-index', key, Buffer.from(JSON.stringify({ chain: this.chain, chunks: this.entries.map((e) => [e.id, e.offset, e.length]) })));
    const head = Buffer.alloc(HEAD_BYTES);
    MAGIC.copy(head);
    head.writeUInt32BE(index.length, MAGIC.length);
    const start = HEAD_BYTES + index.length;
    const body = Buffer.concat([head, index, ...this.parts]);
    // The pack is its body from now on: the parts go (an upload in flight holds the body alone).
    this.parts.length = 0;
    return { key, body, entries: this.entries.map((e) => ({ id: e.id, offset: start + e.offset, length: e.length })) };
  }
}

/**
 * The entries of pack `key` of `size` bytes from its first bytes (`head`); `more(end)` fetches
 * the first `end` bytes when the index is longer than `head`. Anything inconsistent is REPO_CORRUPT.
 */
export async function readPackIndex(key: string, size: number, head: Buffer, codec: ObjectCodec, more: (end: number) => Promise<Buffer>): Promise<PackEntry[]> {
  const corrupt = (why: string) => new StackbackError('REPO_CORRUPT', `pack ${key} on the remote is damaged: ${why}`, '`stackback verify --remote R --deep` checks every pack; a new copy re-sends what is lost');
  if (head.length < HEAD_BYTES || !head.subarray(0, MAGIC.length).equals(MAGIC)) throw corrupt('no pack header');
  const indexLength = head.readUInt32BE(MAGIC.length);
  const start = HEAD_BYTES + indexLength;
  if (start > size) throw corrupt(`its index claims ${indexLength} bytes of a ${size}-byte object`);
  const bytes = head.length >= start ? head : await more(start);
  let parsed: { chain?: unknown; chunks?: unknown };
  try {
    parsed = JSON.parse(codec.unseal('pack-index', key, bytes.subarray(HEAD_BYTES, start)).toString('utf8')) as typeof parsed;
  } catch (error) {
    throw corrupt(`its index cannot be read (${(error as Error).message})`);
  }
  const chain = parsePackKey(key)?.chain;
  if (parsed.chain !== chain || !Array.isArray(parsed.chunks)) throw corrupt('its index belongs to another chain or lists no chunks');
  return parsed.chunks.map((item: unknown) => {
    const [id, offset, length] = Array.isArray(item) ? (item as unknown[]) : [];
    if (typeof id !== 'string' || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || (offset as number) < 0 || (length as number) <= 0) throw corrupt('an index entry is malformed');
    const entry = { id: checkChunkId(id), offset: start + (offset as number), length: length as number };
    if (entry.offset + entry.length > size) throw corrupt(`chunk ${id} runs past the end of the object`);
    return entry;
  });
}
