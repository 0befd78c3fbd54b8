// The merger of pg_dump's per-row data blocks (src/sources/postgres/archive-blocks.ts), on real
// archives: pg_restore must make exactly the same of the merged stream as of the original,
// however the stream is cut into pushes, and whatever it does not recognise passes unchanged;
// with side streams, the rows of big tables are dealt out whole and every row arrives once;
// in the repository's feeding thread (restore-feed-sink.ts), pg_restore's input ends only
// after the side sessions have succeeded.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { type ArtifactData, openArtifact } from '../src/repository/artifact-reader.ts';
import { onePiece, storeData } from './support/store.ts';
import { Repository } from '../src/repository/repository.ts';
import { type ArchiveHead, CopyBlockMerger, type FeedReport, MAX_HEAD_BYTES, MIN_SPLIT_AFTER, parseArchiveHead } from '../src/sources/postgres/archive-blocks.ts';
import { startRestoreFeed } from '../src/sources/postgres/restore-feed.ts';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';

/**
 * Pushes `data` through `merger` in pieces of the given sizes (cycled), then ends it. As in
 * the restore's feeding thread, every piece arrives in one reused buffer (raw chunks are read
 * into the same memory), which is overwritten as soon as push() returns.
 */
function pushThrough(merger: CopyBlockMerger, data: Buffer, pieceSizes: number[]): Buffer {
  const out: Buffer[] = [];
  const reused = Buffer.alloc(Math.max(...pieceSizes));
  for (let offset = 0, i = 0; offset < data.length; i++) {
    const size = Math.min(pieceSizes[i % pieceSizes.length]!, data.length - offset);
    data.copy(reused, 0, offset, offset + size);
    out.push(Buffer.from(merger.push(reused.subarray(0, size))));
    reused.fill(0xee);
    offset += size;
  }
  out.push(Buffer.from(merger.end()));
  return Buffer.concat(out);
}

function merge(data: Buffer, pieceSizes: number[] = [data.length]): Buffer {
  return mergeWithReport(data, pieceSizes).out;
}

/** merge(), with what the merger says it did. */
function mergeWithReport(data: Buffer, pieceSizes: number[] = [data.length]): { out: Buffer; report: FeedReport } {
  const merger = new CopyBlockMerger();
  return { out: pushThrough(merger, data, pieceSizes), report: merger.report() };
}

/** Like merge(), with side streams (at the least split point): what pg_restore gets, and what each side stream gets. */
function split(data: Buffer, pieceSizes: number[], sideCount: number): { main: Buffer; sides: Buffer[]; report: FeedReport } {
  const written: Buffer[][] = Array.from({ length: sideCount }, () => []);
  const sides = { count: sideCount, write: (index: number, bytes: Buffer) => void written[index]!.push(Buffer.from(bytes)) };
  const merger = new CopyBlockMerger({ sides, options: { splitAfter: 0, serverMajor: 15 } });
  const main = pushThrough(merger, data, pieceSizes);
  return { main, sides: written.map((pieces) => Buffer.concat(pieces)), report: merger.report() };
}

/** The rows of `table` in a pg_restore or psql script, in order: the lines between its COPY line and the end-of-data line. */
function copyRows(script: string, table: string): string[] {
  const start = script.indexOf(`COPY ${table} `);
  if (start < 0) return [];
  const first = script.indexOf('\n', start) + 1;
  return script.slice(first, script.indexOf('\n\\.\n', first - 1) + 1).split('\n').slice(0, -1);
}

/** A minimal custom-format archive as pg_dump writes it (version 1.minor), one table with one row per data block. */
function handMadeArchive(minor: 13 | 14 | 15 | 16, rows: string[]): Buffer {
  const int = (value: number) => Buffer.concat([Buffer.of(value < 0 ? 1 : 0), Buffer.from(Uint32Array.of(Math.abs(value)).buffer)]);
  const str = (text: string | null) => (text === null ? int(-1) : Buffer.concat([int(Buffer.byteLength(text)), Buffer.from(text)]));
  const entry = [
    int(1), int(1), str('0'), str('0'), str('t'), str('TABLE DATA'), int(3),
    str(''), str(''), str('COPY public.t (a) FROM stdin;\n'), str('public'), str(''),
    ...(minor >= 14 ? [str('')] : []), // table access method, from 1.14
    ...(minor >= 16 ? [int(0x72)] : []), // relkind ('r'), from 1.16
    str('postgres'), str('false'), str(null), // owner, "with oids", end of dependencies
    Buffer.of(1), Buffer.alloc(8), // data offset not set (written to a pipe)
  ];
  // Compression: an int (the level) before 1.15, one byte (the algorithm, 0 = none) from 1.15 on.
  const compression = minor >= 15 ? Buffer.of(0) : int(0);
  const header = [Buffer.from('PGDMP'), Buffer.of(1, minor, 0, 4, 8, 1), compression, ...Array.from({ length: 7 }, () => int(0)), str('db'), str('15.0'), str('15.0'), int(1)];
  const data = [Buffer.of(1), int(1), ...rows.flatMap((row) => [int(Buffer.byteLength(row)), Buffer.from(row)]), int(0)];
  return Buffer.concat([...header, ...entry, ...data]);
}

/** The parsed head of an archive the merger must know. */
function headOf(archive: Buffer): ArchiveHead {
  const head = parseArchiveHead(archive);
  if (typeof head === 'string') assert.fail(`not recognised: ${head}`);
  return head;
}

/**
 * The data section of an uncompressed custom archive (after its table of contents), decoded
 * as pg_restore reads it: per dump id, its pieces in order. For archive versions the
 * machine's pg_restore cannot read.
 */
function dataPieces(archive: Buffer): Map<number, Buffer[]> {
  const head = headOf(archive);
  const readInt = (at: number) => (archive[at] ? -1 : 1) * archive.readUInt32LE(at + 1);
  const pieces = new Map<number, Buffer[]>();
  let at = head.dataStart;
  while (at < archive.length) {
    assert.equal(archive[at], 1, `a data block at ${at}`);
    const id = readInt(at + 1);
    at += 6;
    const list = pieces.get(id) ?? [];
    for (let length = readInt(at); length > 0; length = readInt(at)) {
      list.push(archive.subarray(at + 5, at + 5 + length));
      at += 5 + length;
    }
    at += 5;
    pieces.set(id, list);
  }
  return pieces;
}

/** Sizes from a seeded generator: 1 to 3000 bytes, with runs of single bytes, so that every field gets split somewhere. */
function randomPieces(seed: number, count = 400): number[] {
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31);
  return Array.from({ length: count }, (_, i) => (i % 7 === 0 ? 1 : 1 + (next() % 3000)));
}

describe('merging the data blocks of a pg_dump custom archive', () => {
  let cluster: PgCluster;
  let archive: Buffer;
  let script: string;

  const pgRestoreScript = async (input: Buffer): Promise<string> => {
    // From stdin, as in a restore (no seeking); the random \restrict key of newer versions differs per run.
    const { stdout } = await execa(`${cluster.binDir}/pg_restore`, ['-f', '-'], { input, stripFinalNewline: false, maxBuffer: 1 << 30 });
    return stdout.replace(/^\\(un)?restrict .*$/gm, '');
  };

  before(async () => {
    cluster = await startPgCluster();
    await cluster.psql('postgres', 'CREATE DATABASE blocks');
    await cluster.psql(
      'blocks',
      `CREATE SCHEMA "Grüße";
       CREATE TABLE small (id int PRIMARY KEY, label text, note text);
       INSERT INTO small SELECT g, 'row ' || g || E' tab\\there', CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('ü', g % 40) END FROM generate_series(1, 20000) g;
       CREATE TABLE "Grüße".wide (id int, body text, raw bytea);
       INSERT INTO "Grüße".wide SELECT g, repeat(md5(g::text), 300 + g * 37), decode(repeat('00ff', g * 1000), 'hex') FROM generate_series(1, 12) g;
       CREATE TABLE mixed (id int, body text);
       INSERT INTO mixed SELECT g, CASE WHEN g % 50 = 0 THEN repeat('x', 9000 + g) ELSE 'short ' || g END FROM generate_series(1, 3000) g;
       CREATE TABLE empty (id int);
       CREATE TABLE big (id int, body text, tags text[], doc jsonb);
       INSERT INTO big SELECT g, CASE g % 5 WHEN 0 THEN E'\\\\.' WHEN 1 THEN E'line\\nbreak, tab\\t, ü' WHEN 2 THEN NULL ELSE repeat('x', g % 300) END,
         ARRAY['a', g::text], jsonb_build_object('n', g, 's', repeat('é', g % 30)) FROM generate_series(1, 80000) g;
       SELECT lo_from_bytea(0, decode(repeat('ab', 30000), 'hex'));
       SELECT lo_from_bytea(0, 'tiny large object'::bytea);`,
    );
    // Through a pipe, as stackback's backups take it (so no data offsets in the table of contents).
    const { stdout } = await execa(`${cluster.binDir}/pg_dump`, ['--format=custom', '--compress=0', '--dbname=blocks'], {
      env: { PGHOST: cluster.socketDir, PGPORT: String(cluster.port), PGUSER: cluster.superuser },
      encoding: 'buffer',
      maxBuffer: 1 << 30,
    });
    archive = Buffer.from(stdout);
    script = await pgRestoreScript(archive);
    assert.match(script, /COPY public\.small/);
  });

  after(async () => {
    await cluster?.stop();
  });

  test('pg_restore reads the merged archive exactly as the original, in far fewer blocks', async () => {
    const merged = merge(archive);
    assert.equal(await pgRestoreScript(merged), script);
    // Each merged-away block drops a 5-byte length prefix; 20,000 + 3,000 rows go into a few hundred blocks.
    assert.ok(archive.length - merged.length > 5 * 20_000, `only ${archive.length - merged.length} bytes of prefixes dropped`);
  });

  test('however the stream is cut into pushes, down to single bytes', async () => {
    for (const seed of [1, 2, 3]) {
      assert.equal(await pgRestoreScript(merge(archive, randomPieces(seed))), script, `pieces from seed ${seed}`);
    }
    assert.equal(await pgRestoreScript(merge(archive, [1])), script, 'one byte at a time');
  });

  test('archive versions 1.13 and 1.14 (the table access method field came with 1.14) are both understood', async () => {
    const rows = Array.from({ length: 3000 }, (_, i) => `${i}\tvalue ${i}\n`);
    for (const minor of [13, 14] as const) {
      const original = handMadeArchive(minor, rows);
      const merged = merge(original, randomPieces(minor));
      assert.ok(merged.length < original.length - 5 * 2500, `1.${minor}: blocks merged`);
      const script = await pgRestoreScript(merged);
      assert.equal(script, await pgRestoreScript(original), `1.${minor}`);
      assert.match(script, /COPY public\.t \(a\) FROM stdin;\n0\tvalue 0\n1\tvalue 1\n/);
    }
  });

  test('archive versions 1.15 and 1.16 (pg_dump 16 to 18: a compression byte; relkind in the table of contents) are merged and split', () => {
    // Past MIN_SPLIT_AFTER (4 MiB), so that rows are dealt out to the side streams.
    const rows = Array.from({ length: 150_000 }, (_, i) => `${i}\tvalue ${i} ${'ü'.repeat(i % 50)}\n`);
    for (const minor of [15, 16] as const) {
      const original = handMadeArchive(minor, rows);
      const head = headOf(original);
      assert.deepEqual([...head.dataEntries.values()].map((copy) => copy?.toString()), ['COPY public.t (a) FROM stdin;\n'], `1.${minor}: the table of contents is read`);

      const merged = merge(original, randomPieces(minor));
      assert.ok(merged.subarray(0, head.dataStart).equals(original.subarray(0, head.dataStart)), `1.${minor}: header and table of contents unchanged`);
      const before = dataPieces(original).get(1)!;
      const after = dataPieces(merged).get(1)!;
      assert.equal(before.length, rows.length);
      // Pushes of up to 3000 bytes end a merged block each; in one push, ~8 KiB blocks.
      assert.ok(after.length < rows.length / 5, `1.${minor}: ${after.length} blocks for ${rows.length} rows`);
      assert.ok(dataPieces(merge(original)).get(1)!.length < rows.length / 50, `1.${minor}: merged in one push`);
      assert.ok(Buffer.concat(after).equals(Buffer.concat(before)), `1.${minor}: the same rows in the same order`);

      // Split over two side streams: every row arrives exactly once, whole.
      const { main, sides, report } = split(original, randomPieces(minor + 100), 2);
      assert.deepEqual(report, { blocks: 'merged', tables_split: [{ table: 'public.t', sessions: 3 }], summary: 'archive data blocks merged; public.t loaded through 3 COPY sessions' }, `1.${minor}: what the feed says it did`);
      const mainRows = Buffer.concat(dataPieces(main).get(1)!).toString().split(/(?<=\n)/).filter((r) => r !== '\\.\n');
      const sideRows = sides.flatMap((side) => copyRows(side.toString(), 'public.t').map((row) => `${row}\n`));
      assert.ok(sideRows.length > 0, `1.${minor}: rows were dealt out to the side streams`);
      assert.deepEqual([...mainRows, ...sideRows].sort(), [...rows].sort(), `1.${minor}: every row exactly once`);
    }
  });

  test('what it does not recognise passes through byte for byte', async () => {
    const { stdout: gzipped } = await execa(`${cluster.binDir}/pg_dump`, ['--format=custom', '--dbname=blocks'], {
      env: { PGHOST: cluster.socketDir, PGPORT: String(cluster.port), PGUSER: cluster.superuser },
      encoding: 'buffer',
      maxBuffer: 1 << 30,
    });
    const compressed = Buffer.from(gzipped);
    const sql = Buffer.from('-- PostgreSQL database dump\nCREATE TABLE t (id int);\n');
    const cut = archive.subarray(0, 200);
    const future = Buffer.from(archive);
    future[6] = 99; // archive version 1.99
    const cases: [string, Buffer, number[], string][] = [
      ['a compressed archive', compressed, randomPieces(4), 'a compressed archive (pg_dump without --compress=0): its data blocks are not merged'],
      ['a plain SQL script', sql, [sql.length], 'not a pg_dump custom-format archive (no PGDMP header)'],
      ['an archive cut off inside its table of contents', cut, [7], 'the stream ended inside its table of contents'],
      ['an archive version it does not know', future, [future.length], 'archive version 1.99 not known (this merger reads 1.12 to 1.16)'],
    ];
    for (const [what, input, pieces, reason] of cases) {
      const { out, report } = mergeWithReport(input, pieces);
      assert.deepEqual(out, input, what);
      assert.deepEqual(report, { blocks: 'passed through', reason, tables_split: [], summary: `archive data blocks passed through unchanged: ${reason}` }, what);
    }
    assert.deepEqual(mergeWithReport(archive).report, { blocks: 'merged', tables_split: [], summary: 'archive data blocks merged' }, 'a real archive, no side streams');
  });

  test('the table of contents is read as pg_restore reads it: the entries with data are the ones it lists', async () => {
    const { stdout } = await execa(`${cluster.binDir}/pg_restore`, ['-l'], { input: archive });
    const listed = [...stdout.matchAll(/^(\d+); \d+ \d+ (TABLE DATA|BLOBS|LARGE OBJECTS) /gm)].map((m) => Number(m[1]));
    assert.ok(listed.length >= 5, stdout);
    const head = headOf(archive);
    assert.deepEqual([...head.dataEntries.keys()].filter((id) => listed.includes(id)).sort(), [...listed].sort());
    // The first data block starts right after it, with a dump id of an entry that has data.
    assert.equal(archive[head.dataStart], 1);
    assert.ok(head.dataEntries.has(archive.readUInt32LE(head.dataStart + 2)));
    // Table data comes with its COPY statement (bytes as in the archive), large objects without.
    const statements = [...head.dataEntries.values()].map((statement) => statement?.toString('utf8') ?? null);
    assert.ok(statements.includes('COPY "Grüße".wide (id, body, raw) FROM stdin;\n'), statements.join(' | '));
    assert.ok(statements.includes(null), 'the large objects');
    assert.match(head.sessionSql.toString(), /^SET client_encoding = 'UTF8';\nSET standard_conforming_strings = 'on';\nSELECT pg_catalog.set_config\('search_path', '', false\);\n$/);
  });

  test('a table of contents that does not end within 64 MiB is not held back: everything passes', () => {
    const int = (value: number) => Buffer.concat([Buffer.of(0), Buffer.from(Uint32Array.of(value).buffer)]);
    // Version 1.14, 4-byte integers, uncompressed, a million entries promised, then only zero bytes.
    const header = Buffer.concat([Buffer.from('PGDMP'), Buffer.of(1, 14, 0, 4, 8, 1), int(0), ...Array.from({ length: 7 }, () => int(0)), int(0), int(0), int(0), int(1_000_000)]);
    const endless = Buffer.concat([header, Buffer.alloc(MAX_HEAD_BYTES + 5 * 1024 * 1024)]);
    assert.ok(merge(endless, [1024 * 1024]).equals(endless));
  });

  test('with side streams, a big table\'s rows are dealt out whole between pg_restore and psql scripts; the rest is as before', async () => {
    const originalRows = copyRows(script, 'public.big');
    assert.ok(Buffer.byteLength(originalRows.join('\n')) > MIN_SPLIT_AFTER + 1024 * 1024, `big is well past the least split point: ${originalRows.length} rows, ${originalRows.join('\n').length} bytes`);
    assert.ok(originalRows.some((row) => row.includes('\t\\\\.\t')), 'a value that is a backslash and a period');
    // Rows that come in one push with the table of contents are not dealt out: pg_restore has not been sent even that yet.
    assert.deepEqual(split(archive, [archive.length], 2).sides.map((side) => side.length), [0, 0], 'one push: nothing dealt out');
    for (const [seed, pieces] of [[0, [1024 * 1024]], [6, randomPieces(6)]] as const) {
      const { main, sides } = split(archive, [...pieces], 2);
      const mainScript = await pgRestoreScript(main);
      // Every other table (all below the split point) and the large objects are exactly as before.
      const others = (text: string) => text.replace(/COPY public\.big [^]*?\n\\\.\n/, '');
      assert.equal(others(mainScript), others(script), `seed ${seed}: all but big`);
      const mainRows = copyRows(mainScript, 'public.big');
      assert.deepEqual(mainRows.slice(0, 1000), originalRows.slice(0, 1000), `seed ${seed}: pg_restore gets the first rows`);
      const shares = sides.map((side) => side.toString('utf8'));
      for (const share of shares) {
        assert.match(share.slice(0, 1000), /^SET statement_timeout = 0;\n[^]*SET row_security = off;\nSET client_encoding = 'UTF8';\n[^]*COPY public\.big \(id, body, tags, doc\) FROM stdin;\n/, `seed ${seed}: a side script's start: ${JSON.stringify(share.slice(0, 700))}`);
        assert.ok(share.endsWith('\n\\.\n') && !share.includes('\n\\.\n\n'), `seed ${seed}: one end-of-data line, its own`);
      }
      const sideRows = shares.map((share) => copyRows(share, 'public.big'));
      assert.ok(sideRows.every((rows) => rows.length > 1000), `seed ${seed}: each side got a share: ${sideRows.map((r) => r.length).join(', ')}`);
      // Dealt out whole: together, every row once.
      assert.deepEqual([...mainRows, ...sideRows.flat()].sort(), [...originalRows].sort(), `seed ${seed}: every row exactly once`);
    }
  });

  test('pieces that are not one row each (a pg_dump that buffers its output) are not dealt out, or no further: rows stay whole', async () => {
    const rows = Array.from({ length: 80_000 }, (_, i) => `${i}\tvalue ${i} ${'x'.repeat(60)}\n`);
    const text = rows.join('') + '\\.\n\n\n';
    const cut = (from: number, size: number) => Array.from({ length: Math.ceil((text.length - from) / size) }, (_, i) => text.slice(from + i * size, from + (i + 1) * size));
    const check = async (name: string, pieces: string[], pushes: number[]) => {
      const { main, sides } = split(handMadeArchive(14, pieces), pushes, 2);
      const mainRows = copyRows(await pgRestoreScript(main), 'public.t');
      const sideRows = sides.map((side) => copyRows(side.toString(), 'public.t'));
      for (const side of sides) assert.ok(side.length === 0 || (side.toString().endsWith('\n\\.\n') && !side.includes('\\.\n\n')), `${name}: a side ends with its own end-of-data line only`);
      assert.deepEqual([...mainRows, ...sideRows.flat()].sort(), rows.map((row) => row.slice(0, -1)).sort(), `${name}: every row once, whole`);
      return sides;
    };
    const sides = await check('cut from the start', cut(0, 5000), randomPieces(8));
    assert.deepEqual(sides.map((side) => side.length), [0, 0], 'nothing dealt out');
    // One row per piece past the least split point, then 3000-byte cuts; at every stage of the turns (80 KiB steps over
    // two full rounds), with the length of the first cut piece split across two pushes (its start unseen).
    for (let aligned = 54_000; aligned < 75_000; aligned += 1000) {
      const alignedBytes = rows.slice(0, aligned).join('').length;
      const lengthAt = headOf(handMadeArchive(14, [])).dataStart + 1 + 5 + 5 * aligned + alignedBytes;
      const sides = await check(`${aligned} rows before the cuts`, [...rows.slice(0, aligned), ...cut(alignedBytes, 3000)], [lengthAt + 2, 3000]);
      assert.ok(sides.some((side) => side.length > 0), 'dealing had begun');
    }
  });

  test('the side scripts load into the table what they hold, as psql runs them', async () => {
    const { main, sides } = split(archive, randomPieces(7), 2);
    await cluster.psql('postgres', 'CREATE DATABASE split_target');
    const env = { PGHOST: cluster.socketDir, PGPORT: String(cluster.port), PGUSER: cluster.superuser, PGDATABASE: 'split_target' };
    await execa(`${cluster.binDir}/pg_restore`, ['--exit-on-error', '-d', 'split_target'], { input: main, env });
    for (const side of sides) await execa(`${cluster.binDir}/psql`, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '-'], { input: side, env });
    const digest = "SELECT count(*) || ' ' || md5(string_agg(b::text, '|' ORDER BY id)) FROM big b";
    assert.equal(await cluster.psql('split_target', digest), await cluster.psql('blocks', digest));
  });

  test('an archive cut off inside its data stays cut off: pg_restore reports it', async () => {
    const cut = archive.subarray(0, archive.length - 1000);
    await assert.rejects(execa(`${cluster.binDir}/pg_restore`, ['-f', '/dev/null'], { input: merge(cut, randomPieces(5)) }), /pg_restore: error/);
  });
});

describe('the restore feed: pg_restore and two COPY sessions fed from the repository\'s thread', () => {
  let dir: string;
  let repo: Repository;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stackback-restore-feed-'));
    repo = await Repository.create(join(dir, 'repo'), { key: { keyFile: join(dir, 'repo.key'), passphraseFile: undefined }, encrypt: true });
  });
  after(() => rm(dir, { recursive: true, force: true }));
  const workDir = () => join(dir, 'work');
  const out = (name: string) => join(dir, `out-${name}`);

  // About 7 MiB of rows in one table: past the least split point (4 MiB), so they are shared out.
  const rows = Array.from({ length: 120_000 }, (_, i) => `${i}\trow ${i} ${'x'.repeat(i % 80)}\n`);
  const archive = handMadeArchive(16, rows);
  const feedOptions = { sessions: 3, split: { splitAfter: 0, serverMajor: 16 } };
  const toolOptions = { env: {}, errorCode: 'PG_RESTORE_FAILED' as const };

  async function storedArchive(chain: string): Promise<ArtifactData> {
    const { stored } = await storeData(repo, chain, onePiece(archive), { compressionLevel: 1 });
    return openArtifact(repo, chain, { id: `${chain}/dump`, source: 's', kind: 'pg_dump' as const, target: 't', meta: {}, ...stored }, 'stored');
  }

  test('each session gets its share of the rows, and pg_restore the archive\'s last byte only once both side sessions have finished', { timeout: 30_000 }, async () => {
    const feed = await startRestoreFeed(await storedArchive('feed-a'), workDir(), feedOptions);
    // Like pg_restore, the main tool reads as far as the archive goes (its last byte ends the
    // final block: the only run of five zero bytes past the header), not waiting for the end
    // of its input, and notes which side sessions had finished by then.
    const main = `const fs = require('node:fs'); const parts = []; let size = 0; let tail = Buffer.alloc(0); const buffer = Buffer.alloc(65536);
      for (;;) { const n = fs.readSync(0, buffer); if (n === 0) break; const piece = Buffer.from(buffer.subarray(0, n)); parts.push(piece); size += n;
        tail = Buffer.concat([tail, piece]).subarray(-5); if (size > 4096 && tail.equals(Buffer.alloc(5))) break; }
      fs.writeFileSync(process.argv[1] + '.seen', ['one', 'two'].filter((name) => fs.existsSync(process.argv[2] + name + '.done')).join(' '));
      fs.writeFileSync(process.argv[1], Buffer.concat(parts));`;
    const side = (name: string, ms: number) => ({
      file: process.execPath,
      args: ['-e', `const fs = require('node:fs'); const data = fs.readFileSync(0); setTimeout(() => { fs.writeFileSync(process.argv[1], data); fs.writeFileSync(process.argv[1] + '.done', ''); }, ${ms});`, out(name)],
      what: `COPY session ${name}`,
    });
    const report = await feed.run([{ file: process.execPath, args: ['-e', main, out('main'), out('')], what: 'pg_restore' }, side('one', 300), side('two', 600)], toolOptions);
    assert.deepEqual(report, { blocks: 'merged', tables_split: [{ table: 'public.t', sessions: 3 }], summary: 'archive data blocks merged; public.t loaded through 3 COPY sessions' });
    assert.equal(await readFile(`${out('main')}.seen`, 'utf8'), 'one two', 'both side sessions had finished before pg_restore\'s input was complete');
    const mainRows = Buffer.concat(dataPieces(await readFile(out('main'))).get(1)!).toString().split('\n').slice(0, -1);
    const sideRows = await Promise.all(['one', 'two'].map(async (name) => copyRows(await readFile(out(name), 'utf8'), 'public.t')));
    for (const share of [mainRows, ...sideRows]) assert.ok(share.length > 10_000, `a fair share: ${share.length} rows`);
    assert.deepEqual([...mainRows, ...sideRows.flat()].sort(), rows.map((row) => row.slice(0, -1)).sort(), 'every row once, whole');
    assert.deepEqual(await readdir(workDir()), []);
  });

  test('a side session that fails ends the run with its own message; pg_restore is stopped and nothing hangs', { timeout: 30_000 }, async () => {
    const feed = await startRestoreFeed(await storedArchive('feed-b'), workDir(), feedOptions);
    await assert.rejects(
      feed.run(
        [
          { file: '/bin/sh', args: ['-c', 'cat > /dev/null'], what: 'pg_restore' },
          { file: '/bin/sh', args: ['-c', 'cat > /dev/null'], what: 'the patient session' },
          { file: '/bin/sh', args: ['-c', 'head -c 1000 > /dev/null; echo "session gave up" >&2; exit 4'], what: 'the failing session' },
        ],
        toolOptions,
      ),
      /the failing session failed \(exit status 4\): session gave up/,
    );
    assert.deepEqual(await readdir(workDir()), []);
  });

  test('a feed cancelled before its tools run (the target could not be prepared) ends promptly and removes its pipes', { timeout: 20_000 }, async () => {
    const feed = await startRestoreFeed(await storedArchive('feed-c'), workDir(), feedOptions);
    assert.equal((await readdir(workDir())).length, 3);
    await feed.cancel();
    assert.deepEqual(await readdir(workDir()), []);
  });
});
