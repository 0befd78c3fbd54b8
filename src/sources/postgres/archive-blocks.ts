// Rewrites the framing of a pg_dump custom-format archive on its way into pg_restore, so that
// table data arrives in blocks of about 8 KiB instead of one block per row.
//
// Why: stackback dumps with --compress=0 (its own chunks are compressed), and pg_dump then
// writes every row of COPY data as a block of its own. pg_restore hands each block to the
// server as a separate CopyData message: 5 million messages for the 5 million rows of the
// bench's main table, which costs the server ~7% more CPU in COPY than the ~4 KiB pieces a
// gzip-compressed dump yields. COPY data may be split anywhere between messages, so merging
// neighbouring blocks changes nothing that is restored; the bytes of every row stay as they are.
//
// The archive layout (src/bin/pg_dump/pg_backup_archiver.c and pg_backup_custom.c): a header,
// the table of contents, then data blocks: a type byte, the entry's dump id, then
// (length, bytes) pieces ending with length 0; large objects (BLK_BLOBS) are a list of
// (oid, pieces…) ending with oid 0. Integers are a sign byte and `intSize` little-endian bytes.
// Anything this module does not recognise — another format, a compressed archive, a version
// it was not written for, a malformed stream — passes through byte for byte, so pg_restore
// sees exactly what was stored and reports on it itself.
import type { StreamTransform } from '../../repository/artifact-reader.ts';

/** Merged data blocks are flushed once they reach this size. */
const MERGE_BYTES = 8192;
/** A table of contents not parsed within this many bytes is taken for something else: it passes through. */
export const MAX_HEAD_BYTES = 64 * 1024 * 1024;
/** Archive versions (1.major.minor) whose header and table of contents this parser knows. */
const OLDEST_VERSION = 0x010c00; // 1.12: PostgreSQL 9.5
const NEWEST_VERSION = 0x011000; // 1.16: PostgreSQL 17
const FORMAT_CUSTOM = 1;
const BLK_DATA = 1;
const BLK_BLOBS = 3;

class NeedMore extends Error {}

export interface ArchiveHead {
  /** Where the data blocks start. */
  dataStart: number;
  intSize: number;
  /** Dump ids of the entries that have data: the only ids a data block may carry. */
  dataIds: Set<number>;
}

/** Reads the header and table of contents; null if this is not an archive it knows. */
export function parseArchiveHead(data: Buffer): ArchiveHead | null {
  let pos = 0;
  const take = (n: number) => {
    if (pos + n > data.length) throw new NeedMore();
    pos += n;
    return pos - n;
  };
  if (data.length >= 5 && data.toString('latin1', 0, 5) !== 'PGDMP') return null;
  take(5);
  const at = take(6);
  const version = (data[at]! << 16) | (data[at + 1]! << 8) | data[at + 2]!;
  const intSize = data[at + 3]!;
  const offSize = data[at + 4]!;
  if (version < OLDEST_VERSION || version > NEWEST_VERSION || data[at + 5] !== FORMAT_CUSTOM || intSize < 1 || intSize > 6) return null;
  const readInt = () => readArchiveInt(data, take(1 + intSize), intSize);
  const readString = () => {
    const length = readInt();
    if (length > 0) take(length);
    return length >= 0;
  };
  const compressed = version >= 0x010f00 ? data[take(1)] !== 0 : readInt() !== 0;
  if (compressed) return null;
  for (let i = 0; i < 7; i++) readInt(); // creation time
  for (let i = 0; i < 3; i++) readString(); // database name, server version, pg_dump version
  const entries = readInt();
  const dataIds = new Set<number>();
  for (let e = 0; e < entries; e++) {
    const dumpId = readInt();
    if (readInt() !== 0) dataIds.add(dumpId); // had a data dumper
    for (let i = 0; i < 4; i++) readString(); // table oid, oid, tag, desc
    readInt(); // section
    for (let i = 0; i < 5; i++) readString(); // defn, drop, copy statement, namespace, tablespace
    if (version >= 0x010e00) readString(); // table access method (1.14)
    if (version >= 0x011000) readInt(); // relkind (1.16)
    readString(); // owner
    readString(); // "with oids"
    while (readString()); // dependencies, ended by a null string
    take(1 + offSize); // data offset flag and offset
  }
  return { dataStart: pos, intSize, dataIds };
}

type State =
  | 'head' // buffering until the table of contents is read
  | 'blockType'
  | 'blockId'
  | 'dataLength'
  | 'dataBytes' // a piece that is not merged (large, or split across pushes): passed through
  | 'blobOid'
  | 'blobLength'
  | 'blobBytes'
  | 'pass'; // unrecognised: everything passes through

/**
 * Merges the per-row data blocks of an uncompressed custom-format archive (see the top of
 * this file). Works in place: merging only drops length prefixes, so each push's output is
 * written over its own input. A merged block never spans two pushes; a piece or integer
 * that does passes through as it is.
 */
export class CopyBlockMerger implements StreamTransform {
  private state: State = 'head';
  private head: Buffer[] = [];
  private headBytes = 0;
  private nextHeadAttempt = 0;
  private intSize = 4;
  private dataIds = new Set<number>();
  /** An integer split across pushes, gathered to learn its value (its bytes pass through). */
  private intScratch = Buffer.alloc(16);
  private intFilled = 0;
  private blockType = 0;
  private remaining = 0;

  /** Rewrites `data` in place and returns the part to write. */
  push(data: Buffer): Buffer {
    if (this.state === 'pass') return data;
    if (this.state === 'head') return this.pushHead(data);
    return this.reframe(data);
  }

  end(): Buffer {
    const held = Buffer.concat(this.head);
    this.head = [];
    this.state = 'pass';
    return held;
  }

  private pushHead(data: Buffer): Buffer {
    // A copy: the caller may reuse `data` once push() returns (the worker reads raw chunks into one buffer).
    this.head.push(Buffer.from(data));
    this.headBytes += data.length;
    // Re-parsing from the start each time would be quadratic for a huge table of contents: retry when the buffer has doubled.
    if (this.headBytes < this.nextHeadAttempt) return Buffer.alloc(0);
    const buffered = Buffer.concat(this.head);
    this.head = [buffered];
    let parsed: ReturnType<typeof parseArchiveHead>;
    try {
      parsed = parseArchiveHead(buffered);
    } catch (error) {
      if (!(error instanceof NeedMore)) throw error;
      if (buffered.length <= MAX_HEAD_BYTES) {
        this.nextHeadAttempt = Math.min(buffered.length * 2, MAX_HEAD_BYTES + 1);
        return Buffer.alloc(0);
      }
      parsed = null;
    }
    this.head = [];
    if (!parsed) {
      this.state = 'pass';
      return buffered;
    }
    this.intSize = parsed.intSize;
    this.dataIds = parsed.dataIds;
    this.state = 'blockType';
    const blocks = this.reframe(buffered.subarray(parsed.dataStart));
    return buffered.subarray(0, parsed.dataStart + blocks.length);
  }

  private reframe(data: Buffer): Buffer {
    const intBytes = 1 + this.intSize;
    const length = data.length;
    let read = 0;
    let write = 0; // never ahead of `read`: every merge drops a length prefix
    let mergeAt = -1; // where the open merged block's length prefix goes
    const closeMerge = () => {
      if (mergeAt < 0) return;
      writeArchiveInt(data, mergeAt, write - mergeAt - intBytes, this.intSize);
      mergeAt = -1;
    };
    const keep = (n: number) => {
      if (write !== read) data.copyWithin(write, read, read + n);
      write += n;
      read += n;
    };
    while (read < length && this.state !== 'pass') {
      if (this.state === 'blockType') {
        this.blockType = data[read]!;
        keep(1);
        this.state = this.blockType === BLK_DATA || this.blockType === BLK_BLOBS ? 'blockId' : 'pass';
      } else if (this.state === 'dataBytes' || this.state === 'blobBytes') {
        const n = Math.min(this.remaining, length - read);
        keep(n);
        this.remaining -= n;
        if (this.remaining === 0) this.state = this.state === 'blobBytes' ? 'blobLength' : 'dataLength';
      } else if (this.intFilled === 0 && read + intBytes <= length) {
        const value = readArchiveInt(data, read, this.intSize);
        if (this.state === 'dataLength' && value > 0 && value < MERGE_BYTES && read + intBytes + value <= length) {
          // The hot path, once per row: append the piece to the merged block, dropping its prefix.
          if (mergeAt < 0) {
            mergeAt = write;
            write += intBytes;
          }
          data.copyWithin(write, read + intBytes, read + intBytes + value);
          write += value;
          read += intBytes + value;
          if (write - mergeAt - intBytes >= MERGE_BYTES) closeMerge();
          continue;
        }
        closeMerge();
        keep(intBytes);
        this.onInt(value);
      } else {
        closeMerge();
        const n = Math.min(intBytes - this.intFilled, length - read);
        data.copy(this.intScratch, this.intFilled, read, read + n);
        keep(n);
        this.intFilled += n;
        if (this.intFilled === intBytes) {
          this.intFilled = 0;
          this.onInt(readArchiveInt(this.intScratch, 0, this.intSize));
        }
      }
    }
    closeMerge();
    if (read < length) keep(length - read);
    return data.subarray(0, write);
  }

  /** Moves on after a complete integer (already passed through) according to where in the block structure it was. */
  private onInt(value: number): void {
    switch (this.state) {
      case 'blockId':
        // An id the table of contents has no data for: this is not the layout we think it is.
        if (!this.dataIds.has(value)) this.state = 'pass';
        else this.state = this.blockType === BLK_DATA ? 'dataLength' : 'blobOid';
        return;
      case 'blobOid':
        this.state = value === 0 ? 'blockType' : 'blobLength';
        return;
      case 'blobLength':
      case 'dataLength':
        if (value < 0) this.state = 'pass';
        else if (value === 0) this.state = this.state === 'blobLength' ? 'blobOid' : 'blockType';
        else [this.state, this.remaining] = [this.state === 'blobLength' ? 'blobBytes' : 'dataBytes', value];
        return;
      default:
        throw new Error(`unexpected integer in state ${this.state}`);
    }
  }
}

/** An archive integer: a sign byte, then `intSize` bytes, least significant first. */
function readArchiveInt(data: Buffer, at: number, intSize: number): number {
  let value = 0;
  if (intSize === 4) value = data.readUInt32LE(at + 1);
  else for (let b = intSize; b >= 1; b--) value = value * 256 + data[at + b]!;
  return data[at] ? -value : value;
}

function writeArchiveInt(data: Buffer, at: number, value: number, intSize: number): void {
  data[at] = 0;
  for (let b = 1; b <= intSize; b++) {
    data[at + b] = value % 256;
    value = Math.floor(value / 256);
  }
}

export function createTransform(): StreamTransform {
  return new CopyBlockMerger();
}
