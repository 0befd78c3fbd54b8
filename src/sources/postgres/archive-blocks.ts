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

/** What the restore feed did to an archive (logged and recorded with the restore). */
export interface FeedReport {
  blocks: 'merged' | 'passed through' | 'merged, then passed through';
  /** Why (part of) the archive passed through unchanged. */
  reason?: string;
  tables_split: { table: string; sessions: number }[];
  /** The above in one sentence, for the log. */
  summary: string;
}

export interface ArchiveHead {
  /** Where the data blocks start. */
  dataStart: number;
  intSize: number;
  /** Dump ids of the entries that have data (the only ids a data block may carry), with their COPY statement when they are table data. */
  dataEntries: Map<number, Buffer | null>;
  /** The archive's own session settings, as pg_restore applies them: its ENCODING, STDSTRINGS and SEARCHPATH entries. */
  sessionSql: Buffer;
}

/** Table of contents entries whose SQL pg_restore runs in every session it opens. */
const SESSION_ENTRIES = new Set(['ENCODING', 'STDSTRINGS', 'SEARCHPATH']);

const versionName = (version: number) => `${version >> 16}.${(version >> 8) & 0xff}${version & 0xff ? `.${version & 0xff}` : ''}`;

/** Reads the header and table of contents; when this is not an archive it knows, says why (it then passes through). */
export function parseArchiveHead(data: Buffer): ArchiveHead | string {
  let pos = 0;
  const take = (n: number) => {
    if (pos + n > data.length) throw new NeedMore();
    pos += n;
    return pos - n;
  };
  if (data.length >= 5 && data.toString('latin1', 0, 5) !== 'PGDMP') return 'not a pg_dump custom-format archive (no PGDMP header)';
  take(5);
  const at = take(6);
  const version = (data[at]! << 16) | (data[at + 1]! << 8) | data[at + 2]!;
  const intSize = data[at + 3]!;
  const offSize = data[at + 4]!;
  if (version < OLDEST_VERSION || version > NEWEST_VERSION) return `archive version ${versionName(version)} not known (this merger reads ${versionName(OLDEST_VERSION)} to ${versionName(NEWEST_VERSION)})`;
  if (data[at + 5] !== FORMAT_CUSTOM) return `archive format ${data[at + 5]} is not the custom format`;
  if (intSize < 1 || intSize > 6) return `integer size ${intSize} not known`;
  const readInt = () => readArchiveInt(data, take(1 + intSize), intSize);
  /** A string's bytes (kept in the archive's encoding), or null for an absent one. */
  const readString = (): Buffer | null => {
    const length = readInt();
    if (length < 0) return null;
    return data.subarray(take(length), pos);
  };
  const compressed = version >= 0x010f00 ? data[take(1)] !== 0 : readInt() !== 0;
  if (compressed) return 'a compressed archive (pg_dump without --compress=0): its data blocks are not merged';
  for (let i = 0; i < 7; i++) readInt(); // creation time
  for (let i = 0; i < 3; i++) readString(); // database name, server version, pg_dump version
  const entries = readInt();
  const dataEntries = new Map<number, Buffer | null>();
  const session: Buffer[] = [];
  for (let e = 0; e < entries; e++) {
    const dumpId = readInt();
    const hasData = readInt() !== 0; // had a data dumper
    readString(); // table oid
    readString(); // oid
    readString(); // tag
    const desc = readString()?.toString('latin1');
    readInt(); // section
    const defn = readString();
    readString(); // drop statement
    const copyStatement = readString();
    readString(); // namespace
    readString(); // tablespace
    if (version >= 0x010e00) readString(); // table access method (1.14)
    if (version >= 0x011000) readInt(); // relkind (1.16)
    readString(); // owner
    readString(); // "with oids"
    while (readString() !== null); // dependencies, ended by a null string
    take(1 + offSize); // data offset flag and offset
    if (hasData) dataEntries.set(dumpId, desc === 'TABLE DATA' && copyStatement?.length ? Buffer.from(copyStatement) : null);
    if (desc && SESSION_ENTRIES.has(desc) && defn) session.push(Buffer.from(defn));
  }
  return { dataStart: pos, intSize, dataEntries, sessionSql: Buffer.concat(session) };
}

type State =
  | 'head' // buffering until the table of contents is read
  | 'blockType'
  | 'blockId'
  | 'dataLength'
  | 'dataBytes' // a piece that is not merged (large, or split across pushes): passed through, or routed to a side stream
  | 'blobOid'
  | 'blobLength'
  | 'blobBytes'
  | 'pass'; // unrecognised: everything passes through

/** Extra output streams the merger shares rows out to (restore-feed-sink.ts: one pipe per further COPY session). */
export interface SideStreams {
  readonly count: number;
  /** Writes to side stream `index`, blocking until it is taken; `data` is the caller's again afterwards. */
  write(index: number, data: Buffer): void;
}

export interface SplitOptions {
  /** Once this many bytes of one table's rows went to pg_restore (at least MIN_SPLIT_AFTER), the rest is shared out between it and the side streams. */
  splitAfter: number;
  /** Major version of the server restored into (which session settings exist). */
  serverMajor: number;
}

/** Rows go to one stream for this many bytes before the next one gets its turn. */
const TURN_BYTES = 256 * 1024;
/**
 * splitAfter is at least this: a side stream's COPY must not reach the server before
 * pg_restore has created the table (and done everything else before the data). pg_restore
 * creates all tables before it reads any data, and the feed runs ahead of it by at most its
 * pipe (1 MiB at most) plus one slice of input (restore-feed-sink.ts) plus pg_restore's own read
 * buffer; so once pg_restore has been sent this much of a table's rows, it has begun that table.
 */
export const MIN_SPLIT_AFTER = 4 * 1024 * 1024;
/** Rows for a side stream are gathered up to this size per write. */
const SIDE_BUFFER_BYTES = 64 * 1024;
const TO_PG_RESTORE = -1;
const NEWLINE = 0x0a;
const END_OF_COPY = Buffer.from('\\.\n');

/**
 * The fixed part of pg_restore's session state (_doSetFixedOutputState in
 * pg_backup_archiver.c) that matters to COPY, for the server's version: no timeouts, XML
 * accepted as content, row security off (COPY fails rather than loading rows a policy would hide).
 */
function fixedSessionSql(serverMajor: number): string {
  return [
    'SET statement_timeout = 0;',
    'SET lock_timeout = 0;',
    ...(serverMajor >= 10 ? ['SET idle_in_transaction_session_timeout = 0;'] : []),
    // Not in pg_restore's list (its session is never idle for long); a side session waits between its tables.
    ...(serverMajor >= 14 ? ['SET idle_session_timeout = 0;'] : []),
    ...(serverMajor >= 17 ? ['SET transaction_timeout = 0;'] : []),
    'SET check_function_bodies = false;',
    'SET xmloption = content;',
    'SET client_min_messages = warning;',
    'SET row_security = off;',
    '',
  ].join('\n');
}

/**
 * Merges the per-row data blocks of an uncompressed custom-format archive (see the top of
 * this file), and with side streams, shares the rows of big tables out between pg_restore
 * and them.
 *
 * Works in place: merging only drops length prefixes and sharing out only drops bytes, so
 * each push's output is written over its own input. A merged block never spans two pushes;
 * a piece or integer that does passes through as it is.
 *
 * Sharing out: COPY text data ends every row with a newline byte (a newline inside a value
 * is written as backslash-n), so rows can be dealt out whole. A table's first `splitAfter`
 * bytes of rows (at least MIN_SPLIT_AFTER) go to pg_restore; then turns of TURN_BYTES rotate
 * between pg_restore and the side streams, each of which gets the archive's session
 * settings, the table's COPY statement, its rows and the end-of-data line, as a psql
 * script. pg_restore still gets
 * a well-formed archive (its own share of every table's rows); the caller must keep
 * pg_restore from going on to indexes, constraints and triggers before the side sessions
 * have committed (restore-feed-sink.ts holds back the archive's last byte until they have).
 */
export class CopyBlockMerger {
  private state: State = 'head';
  private head: Buffer[] = [];
  private headBytes = 0;
  private nextHeadAttempt = 0;
  private intSize = 4;
  private dataEntries = new Map<number, Buffer | null>();
  /** An integer split across pushes, gathered to learn its value (its bytes pass through, except a held length: see reframe). */
  private intScratch = Buffer.alloc(16);
  private intFilled = 0;
  private blockType = 0;
  private remaining = 0;

  private readonly sides: SideStreams | undefined;
  private readonly splitAfter: number;
  private readonly fixedSql: Buffer;
  private sessionSql = Buffer.alloc(0);
  /** The COPY statement of the table whose rows are being read, when they may be shared out. */
  private copyStatement: Buffer | null = null;
  /** Whose turn it is: TO_PG_RESTORE or a side stream's index. */
  private destination = TO_PG_RESTORE;
  /** Where the piece being read goes, and where the row being read started (see routePiece). */
  private pieceTo = TO_PG_RESTORE;
  private rowTo = TO_PG_RESTORE;
  /** A piece of this table ended inside a row: it is not dealt out any further (see takeTurns). */
  private unevenPieces = false;
  /** The data read with the table of contents is being processed. */
  private inHead = false;
  private tableBytes = 0;
  private turnBytes = 0;
  /** The last row byte read ended a row: the next piece may go elsewhere. */
  private atRowEnd = true;
  private readonly sideBuffers: Buffer[];
  private readonly sideFill: number[];
  private readonly sideInTable: boolean[];
  private readonly sideStarted: boolean[];
  /** Tables whose rows were shared out: their COPY statement, and how many sessions loaded them (pg_restore's included). */
  private readonly sessionsPerTable = new Map<string, number>();
  private passedThrough: { reason: string; fromStart: boolean } | undefined;

  constructor(split?: { sides: SideStreams; options: SplitOptions }) {
    this.sides = split && split.sides.count > 0 ? split.sides : undefined;
    this.splitAfter = split ? Math.max(MIN_SPLIT_AFTER, split.options.splitAfter) : Infinity;
    this.fixedSql = Buffer.from(fixedSessionSql(split?.options.serverMajor ?? 0));
    const count = this.sides?.count ?? 0;
    this.sideBuffers = Array.from({ length: count }, () => Buffer.allocUnsafe(SIDE_BUFFER_BYTES));
    this.sideFill = new Array<number>(count).fill(0);
    this.sideInTable = new Array<boolean>(count).fill(false);
    this.sideStarted = new Array<boolean>(count).fill(false);
  }

  /**
   * Rewrites `data` in place and returns the part to write, valid until the next call. `data`
   * is the caller's again once push() returns: anything held back is copied.
   */
  push(data: Buffer): Buffer {
    if (this.state === 'pass') return data;
    if (this.state === 'head') return this.pushHead(data);
    return this.reframe(data);
  }

  /** What is still held back at the end of the stream. */
  end(): Buffer {
    if (this.state === 'head') this.passThrough('the stream ended inside its table of contents');
    const held = Buffer.concat(this.head);
    this.head = [];
    this.state = 'pass';
    for (let side = 0; side < this.sideFill.length; side++) this.flushSide(side);
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
      parsed = `no table of contents within ${MAX_HEAD_BYTES / 1024 / 1024} MiB`;
    }
    this.head = [];
    if (typeof parsed === 'string') {
      this.passThrough(parsed);
      return buffered;
    }
    this.intSize = parsed.intSize;
    this.dataEntries = parsed.dataEntries;
    this.sessionSql = Buffer.concat([this.fixedSql, parsed.sessionSql]);
    this.state = 'blockType';
    this.inHead = true;
    const blocks = this.reframe(buffered.subarray(parsed.dataStart));
    this.inHead = false;
    return buffered.subarray(0, parsed.dataStart + blocks.length);
  }

  private reframe(data: Buffer): Buffer {
    const intBytes = 1 + this.intSize;
    const length = data.length;
    let read = 0;
    let write = 0; // never ahead of `read`: every merge drops a length prefix, every row sent elsewhere its bytes
    let mergeAt = -1; // where the open merged block's length prefix goes
    // A held length (below) whose piece goes to pg_restore after all: its bytes were held back and go into
    // pg_restore's stream here (at most once per push: a split integer completes at the push's start).
    let insertAt = -1;
    let inserted: Buffer | undefined;
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
        if (this.blockType === BLK_DATA || this.blockType === BLK_BLOBS) this.state = 'blockId';
        else this.passThrough(`a data block of unknown type ${this.blockType}`);
      } else if (this.state === 'dataBytes' || this.state === 'blobBytes') {
        const n = Math.min(this.remaining, length - read);
        if (this.state === 'dataBytes') {
          this.countRows(data[read + n - 1]!, n, n === this.remaining);
          if (this.pieceTo === TO_PG_RESTORE) keep(n);
          else {
            this.toSide(this.pieceTo, data, read, read + n);
            read += n;
          }
        } else keep(n);
        this.remaining -= n;
        if (this.remaining === 0) this.state = this.state === 'blobBytes' ? 'blobLength' : 'dataLength';
      } else if (this.intFilled === 0 && read + intBytes <= length) {
        const value = readArchiveInt(data, read, this.intSize);
        if (this.state === 'dataLength' && value > 0) {
          if (this.copyStatement) this.routePiece(sideMayTake(data, read + intBytes, length));
          if (this.pieceTo !== TO_PG_RESTORE) {
            closeMerge();
            read += intBytes;
            const n = Math.min(value, length - read);
            if (n > 0) {
              this.countRows(data[read + n - 1]!, n, n === value);
              this.toSide(this.pieceTo, data, read, read + n);
              read += n;
            }
            if (n < value) [this.state, this.remaining] = ['dataBytes', value - n];
            continue;
          }
          if (value < MERGE_BYTES && read + intBytes + value <= length) {
            // The hot path, once per row: append the piece to the merged block, dropping its prefix.
            if (mergeAt < 0) {
              mergeAt = write;
              write += intBytes;
            }
            this.countRows(data[read + intBytes + value - 1]!, value, true);
            data.copyWithin(write, read + intBytes, read + intBytes + value);
            write += value;
            read += intBytes + value;
            if (write - mergeAt - intBytes >= MERGE_BYTES) closeMerge();
            continue;
          }
        }
        closeMerge();
        keep(intBytes);
        this.onInt(value);
      } else {
        closeMerge();
        // In a table that may be dealt out, a piece's length is held back until it is known where the piece goes.
        const held = this.state === 'dataLength' && this.copyStatement !== null;
        const n = Math.min(intBytes - this.intFilled, length - read);
        data.copy(this.intScratch, this.intFilled, read, read + n);
        if (held) read += n;
        else keep(n);
        this.intFilled += n;
        if (this.intFilled === intBytes) {
          this.intFilled = 0;
          const value = readArchiveInt(this.intScratch, 0, this.intSize);
          if (held && value > 0) {
            // The piece's start is in this push, but whether it fits is not known: see routePiece.
            this.routePiece(false);
            if (this.pieceTo !== TO_PG_RESTORE) {
              [this.state, this.remaining] = ['dataBytes', value];
              continue;
            }
          }
          if (held) [insertAt, inserted] = [write, Buffer.from(this.intScratch.subarray(0, intBytes))];
          this.onInt(value);
        }
      }
    }
    closeMerge();
    if (read < length) keep(length - read);
    const out = data.subarray(0, write);
    return inserted ? Buffer.concat([out.subarray(0, insertAt), inserted, out.subarray(insertAt)]) : out;
  }

  /** Moves on after a complete integer (already passed through) according to where in the block structure it was. */
  private onInt(value: number): void {
    switch (this.state) {
      case 'blockId':
        // An id the table of contents has no data for: this is not the layout we think it is.
        if (!this.dataEntries.has(value)) this.passThrough(`a data block for dump id ${value}, which the table of contents lists without data`);
        else if (this.blockType === BLK_DATA) {
          this.state = 'dataLength';
          this.startTable(this.sides ? (this.dataEntries.get(value) ?? null) : null);
        } else this.state = 'blobOid';
        return;
      case 'blobOid':
        this.state = value === 0 ? 'blockType' : 'blobLength';
        return;
      case 'dataLength':
      case 'blobLength':
        if (value === 0 && this.state === 'dataLength') this.endTable();
        if (value < 0) this.passThrough('a negative block length');
        else if (value === 0) this.state = this.state === 'blobLength' ? 'blobOid' : 'blockType';
        else [this.state, this.remaining] = [this.state === 'blobLength' ? 'blobBytes' : 'dataBytes', value];
        return;
      default:
        throw new Error(`unexpected integer in state ${this.state}`);
    }
  }

  private startTable(copyStatement: Buffer | null): void {
    this.copyStatement = copyStatement;
    this.destination = this.pieceTo = this.rowTo = TO_PG_RESTORE;
    this.tableBytes = 0;
    this.turnBytes = 0;
    this.atRowEnd = true;
    this.unevenPieces = false;
  }

  private countRows(lastByte: number, n: number, pieceEnds: boolean): void {
    this.tableBytes += n;
    this.turnBytes += n;
    this.atRowEnd = lastByte === NEWLINE;
    if (pieceEnds && !this.atRowEnd) this.unevenPieces = true;
  }

  /**
   * Chooses where the piece about to be read goes: the rest of a row where the row's start
   * went; a new row to the stream whose turn it is, except that a row whose start cannot be
   * seen yet goes to pg_restore (it may be pg_dump's end-of-data line, see sideMayTake).
   */
  private routePiece(startVisible: boolean): void {
    if (!this.atRowEnd) {
      this.pieceTo = this.rowTo;
      return;
    }
    this.takeTurns();
    this.pieceTo = this.rowTo = startVisible ? this.destination : TO_PG_RESTORE;
  }

  /**
   * At a row's end, past the first splitAfter bytes, hands the rows on to the next stream once
   * this one has had its turn. Not while the head is processed (pg_restore has not been sent
   * the table of contents yet), and no longer once a piece ended inside a row: pg_dump then
   * does not write one row per piece, and its end-of-data line may come inside a piece.
   */
  private takeTurns(): void {
    if (this.unevenPieces || this.inHead) {
      if (this.destination !== TO_PG_RESTORE) this.flushSide(this.destination);
      this.destination = TO_PG_RESTORE;
      return;
    }
    if (this.tableBytes < this.splitAfter || this.turnBytes < TURN_BYTES) return;
    const sides = this.sides!;
    if (this.destination !== TO_PG_RESTORE) this.flushSide(this.destination);
    this.destination = this.destination + 1 < sides.count ? this.destination + 1 : TO_PG_RESTORE;
    this.turnBytes = 0;
    const side = this.destination;
    if (side === TO_PG_RESTORE || this.sideInTable[side]) return;
    if (!this.sideStarted[side]) this.toSide(side, this.sessionSql, 0, this.sessionSql.length);
    this.sideStarted[side] = true;
    this.toSide(side, this.copyStatement!, 0, this.copyStatement!.length);
    this.sideInTable[side] = true;
    const statement = this.copyStatement!.toString();
    this.sessionsPerTable.set(statement, (this.sessionsPerTable.get(statement) ?? 1) + 1);
  }

  /** Everything from here on passes through unchanged; the first reason is kept for the report. */
  private passThrough(reason: string): void {
    this.passedThrough ??= { reason, fromStart: this.state === 'head' };
    this.state = 'pass';
  }

  /** What the feed did to the archive: merged or passed through (and why), which tables were split over how many sessions (structured-clonable: it leaves the thread). */
  report(): FeedReport {
    const tables_split = [...this.sessionsPerTable].map(([statement, sessions]) => ({ table: /^COPY (.+?) (?:\(|FROM )/.exec(statement)?.[1] ?? statement.trim(), sessions }));
    const blocks = !this.passedThrough ? 'merged' : this.passedThrough.fromStart ? 'passed through' : 'merged, then passed through';
    const summary = [
      `archive data blocks ${blocks === 'passed through' ? 'passed through unchanged' : blocks}${this.passedThrough ? `: ${this.passedThrough.reason}` : ''}`,
      ...tables_split.map((t) => `${t.table} loaded through ${t.sessions} COPY sessions`),
    ].join('; ');
    return { blocks, ...(this.passedThrough ? { reason: this.passedThrough.reason } : {}), tables_split, summary };
  }

  /** The table's data ended: each side stream that got rows of it ends its COPY. */
  private endTable(): void {
    for (let side = 0; side < this.sideInTable.length; side++) {
      if (!this.sideInTable[side]) continue;
      this.toSide(side, END_OF_COPY, 0, END_OF_COPY.length);
      this.flushSide(side);
      this.sideInTable[side] = false;
    }
    this.startTable(null);
  }

  private toSide(side: number, data: Buffer, start: number, end: number): void {
    const n = end - start;
    if (this.sideFill[side]! + n > SIDE_BUFFER_BYTES) this.flushSide(side);
    if (n >= SIDE_BUFFER_BYTES) {
      this.sides!.write(side, data.subarray(start, end));
      return;
    }
    data.copy(this.sideBuffers[side]!, this.sideFill[side], start, end);
    this.sideFill[side]! += n;
  }

  private flushSide(side: number): void {
    if (this.sideFill[side] === 0) return;
    this.sides!.write(side, this.sideBuffers[side]!.subarray(0, this.sideFill[side]));
    this.sideFill[side] = 0;
  }
}

/**
 * Whether the piece starting at `at` may go to a side stream: its first two bytes are in this
 * push and are not a backslash and a period, the end-of-data line pg_dump writes after a
 * table's rows (no row starts so: COPY text doubles backslashes). A side stream's COPY is
 * ended by its own end-of-data line; pg_dump's would end it early, and the second would then
 * be a bad psql command.
 */
function sideMayTake(data: Buffer, at: number, length: number): boolean {
  return at + 2 <= length && !(data[at] === 0x5c && data[at + 1] === 0x2e);
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
