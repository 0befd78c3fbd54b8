// The merger of pg_dump's per-row data blocks (src/sources/postgres/archive-blocks.ts), on real
// archives: pg_restore must make exactly the same of the merged stream as of the original,
// however the stream is cut into pushes, and whatever it does not recognise passes unchanged.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { CopyBlockMerger, MAX_HEAD_BYTES, parseArchiveHead } from '../src/sources/postgres/archive-blocks.ts';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';

/** Pushes `data` through a new merger in pieces of the given sizes (cycled), then ends it. */
function merge(data: Buffer, pieceSizes: number[] = [data.length]): Buffer {
  const merger = new CopyBlockMerger();
  const out: Buffer[] = [];
  // The merger rewrites its input in place: give it a copy, as the restore path gives it fresh plaintext.
  const input = Buffer.from(data);
  for (let offset = 0, i = 0; offset < input.length; i++) {
    const size = pieceSizes[i % pieceSizes.length]!;
    out.push(Buffer.from(merger.push(input.subarray(offset, offset + size))));
    offset += size;
  }
  out.push(Buffer.from(merger.end()));
  return Buffer.concat(out);
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

  test('what it does not recognise passes through byte for byte', async () => {
    const { stdout: gzipped } = await execa(`${cluster.binDir}/pg_dump`, ['--format=custom', '--dbname=blocks'], {
      env: { PGHOST: cluster.socketDir, PGPORT: String(cluster.port), PGUSER: cluster.superuser },
      encoding: 'buffer',
      maxBuffer: 1 << 30,
    });
    const compressed = Buffer.from(gzipped);
    assert.deepEqual(merge(compressed, randomPieces(4)), compressed, 'a compressed archive');
    const sql = Buffer.from('-- PostgreSQL database dump\nCREATE TABLE t (id int);\n');
    assert.deepEqual(merge(sql), sql, 'a plain SQL script');
    const cut = archive.subarray(0, 200);
    assert.deepEqual(merge(cut, [7]), cut, 'an archive cut off inside its table of contents');
    const future = Buffer.from(archive);
    future[6] = 99; // archive version 1.99
    assert.deepEqual(merge(future), future, 'an archive version it does not know');
  });

  test('the table of contents is read as pg_restore reads it: the entries with data are the ones it lists', async () => {
    const { stdout } = await execa(`${cluster.binDir}/pg_restore`, ['-l'], { input: archive });
    const listed = [...stdout.matchAll(/^(\d+); \d+ \d+ (TABLE DATA|BLOBS|LARGE OBJECTS) /gm)].map((m) => Number(m[1]));
    assert.ok(listed.length >= 5, stdout);
    const head = parseArchiveHead(archive)!;
    assert.deepEqual([...head.dataIds].filter((id) => listed.includes(id)).sort(), [...listed].sort());
    // The first data block starts right after it, with a dump id of an entry that has data.
    assert.equal(archive[head.dataStart], 1);
    assert.ok(head.dataIds.has(archive.readUInt32LE(head.dataStart + 2)));
  });

  test('a table of contents that does not end within 64 MiB is not held back: everything passes', () => {
    const int = (value: number) => Buffer.concat([Buffer.of(0), Buffer.from(Uint32Array.of(value).buffer)]);
    // Version 1.14, 4-byte integers, uncompressed, a million entries promised, then only zero bytes.
    const header = Buffer.concat([Buffer.from('PGDMP'), Buffer.of(1, 14, 0, 4, 8, 1), int(0), ...Array.from({ length: 7 }, () => int(0)), int(0), int(0), int(0), int(1_000_000)]);
    const endless = Buffer.concat([header, Buffer.alloc(MAX_HEAD_BYTES + 5 * 1024 * 1024)]);
    assert.ok(merge(endless, [1024 * 1024]).equals(endless));
  });

  test('an archive cut off inside its data stays cut off: pg_restore reports it', async () => {
    const cut = archive.subarray(0, archive.length - 1000);
    await assert.rejects(execa(`${cluster.binDir}/pg_restore`, ['-f', '/dev/null'], { input: merge(cut, randomPieces(5)) }), /pg_restore: error/);
  });
});
