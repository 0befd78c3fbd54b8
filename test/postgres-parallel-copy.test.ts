// Restores that load big tables through several COPY sessions (restore_copy_sessions): the
// restored database must be the original, whatever went through which session; indexes,
// constraints and triggers come only after every session has committed its rows; a failing
// session fails the restore cleanly.
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { type DatabaseSnapshot, snapshotDatabase } from './support/pg-fixture.ts';
import { makeSandbox, postgresSourceYaml, type Sandbox } from './support/stackback.ts';

// Two tables of ~8 MB each, past the 4 MiB split point, with the values COPY text must escape.
const SCHEMA_AND_DATA = `
BEGIN;
CREATE TYPE kind AS ENUM ('click', 'view', 'buy');
CREATE TABLE kinds (id int PRIMARY KEY, label text NOT NULL);
INSERT INTO kinds VALUES (1, 'one'), (2, 'two'), (3, 'three');
CREATE TABLE events (
  id bigint PRIMARY KEY,
  kind_id int NOT NULL REFERENCES kinds (id),
  kind kind NOT NULL,
  body text,
  tags text[],
  doc jsonb,
  raw bytea,
  at timestamptz NOT NULL
);
INSERT INTO events
SELECT g, 1 + g % 3, (ARRAY['click', 'view', 'buy']::kind[])[1 + g % 3],
       CASE g % 6 WHEN 0 THEN E'\\\\.' WHEN 1 THEN E'line\\nbreak\\ttab \\\\ backslash' WHEN 2 THEN NULL WHEN 3 THEN 'Grüße 日本語 🎉' ELSE repeat('x', g % 120) END,
       ARRAY['t' || g % 7, 'quote"d', NULL], jsonb_build_object('n', g, 's', repeat('é', g % 20)),
       decode(md5(g::text), 'hex'), timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, 50000) g;
CREATE INDEX events_kind ON events (kind, at);
-- Would change every row loaded after it exists: the restore must create it only after all rows are in.
CREATE FUNCTION mark_late_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.body := 'loaded after the trigger'; RETURN NEW; END $$;
CREATE TRIGGER events_mark BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION mark_late_rows();
CREATE TABLE "Größen" (id int PRIMARY KEY, "wert €" numeric, notiz text);
INSERT INTO "Größen" SELECT g, g / 7.0, repeat('ß', g % 50) || E'\\r\\n' FROM generate_series(1, 80000) g;
COMMIT;
`;

/** How many transactions loaded the table's rows: each COPY session commits its own. */
async function loadingTransactions(cluster: PgCluster, database: string, table: string): Promise<number> {
  return Number(await cluster.psql(database, `SELECT count(DISTINCT xmin::text) FROM ${table}`));
}

describe('restores through several COPY sessions', () => {
  let cluster: PgCluster;
  let sandbox: Sandbox;
  let original: DatabaseSnapshot;
  let backupName: string;
  let configText: string;

  const useConfig = (sessions: number, extra = '') =>
    writeFile(sandbox.configPath, configText.replace('restore_copy_sessions: 3', `restore_copy_sessions: ${sessions}${extra}`));

  before(async () => {
    cluster = await startPgCluster();
    await cluster.psql('postgres', 'CREATE DATABASE shop');
    await cluster.psql('shop', SCHEMA_AND_DATA);
    original = await snapshotDatabase(cluster, 'shop');
    sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['shop'], globals: false, extra: '      restore_copy_sessions: 3\n      restore_copy_split_after: 4MiB' }), { logLevel: 'info' });
    configText = await readFile(sandbox.configPath, 'utf8');
    const backup = await sandbox.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    backupName = backup.stdout.trim();
  });

  after(async () => {
    await sandbox?.cleanup();
    await cluster?.stop();
  });

  test('three sessions: the copy is identical to the original, and its big tables were loaded by all three', async () => {
    const result = await sandbox.run(['restore', backupName, '--target-db', 'shop_three', '--json']);
    assert.equal(result.code, 0, result.stderr);
    // The restore says what its feed did, in its result and its log.
    const feed = (JSON.parse(result.stdout) as { results: { feed: { blocks: string; tables_split: { table: string; sessions: number }[] } }[] }).results[0]!.feed;
    assert.equal(feed.blocks, 'merged');
    assert.deepEqual(feed.tables_split.map((t) => `${t.table}:${t.sessions}`).sort(), ['public."Größen":3', 'public.events:3']);
    assert.match(result.stderr, /archive data blocks merged; .*loaded through 3 COPY sessions/);
    assert.deepEqual(await snapshotDatabase(cluster, 'shop_three'), original);
    assert.equal(await cluster.psql('shop_three', "SELECT count(*) FROM events WHERE body = 'loaded after the trigger'"), '0');
    assert.equal(await loadingTransactions(cluster, 'shop_three', 'events'), 3, 'events was loaded by three sessions');
    assert.equal(await loadingTransactions(cluster, 'shop_three', '"Größen"'), 3, '"Größen" was loaded by three sessions');
    assert.equal(await loadingTransactions(cluster, 'shop_three', 'kinds'), 1, 'a small table by one');
    // The trigger, index and foreign key are there and work.
    await cluster.psql('shop_three', "INSERT INTO events (id, kind_id, kind, at) VALUES (0, 1, 'buy', now())");
    assert.equal(await cluster.psql('shop_three', 'SELECT body FROM events WHERE id = 0'), 'loaded after the trigger');
    await assert.rejects(cluster.psql('shop_three', "INSERT INTO events (id, kind_id, kind, at) VALUES (-1, 9, 'buy', now())"), /foreign key/);
  });

  test('one session: the same copy, loaded by one', async () => {
    await useConfig(1);
    const result = await sandbox.run(['restore', backupName, '--target-db', 'shop_one', '--json']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual((JSON.parse(result.stdout) as { results: { feed: unknown }[] }).results[0]!.feed, { blocks: 'merged', tables_split: [], summary: 'archive data blocks merged' });
    assert.deepEqual(await snapshotDatabase(cluster, 'shop_one'), original);
    assert.equal(await loadingTransactions(cluster, 'shop_one', 'events'), 1);
  });

  test('with fewer connections free than sessions, the preflight says so and the restore uses what is free', async () => {
    // A role limited to 3 connections: the restore's own, pg_restore's, and room for one more session.
    await cluster.psql('postgres', 'CREATE ROLE restorer LOGIN CREATEDB CONNECTION LIMIT 3; CREATE DATABASE slots OWNER restorer');
    await cluster.psql('slots', 'SET ROLE restorer; CREATE TABLE big (id int PRIMARY KEY, body text); INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 60000) g');
    const limited = await makeSandbox(postgresSourceYaml(cluster, { databases: ['slots'], globals: false, extra: '      user: restorer\n      restore_copy_sessions: 3\n      restore_copy_split_after: 4MiB' }));
    try {
      const backup = await limited.run(['backup', '--full']);
      assert.equal(backup.code, 0, backup.stderr);
      const check = await limited.run(['restore', backup.stdout.trim(), '--target-db', 'slots_copy', '--check']);
      assert.equal(check.code, 0, check.stderr);
      assert.match(check.stdout, /only 2 connection\(s\) free for this restore .*: big tables load through 2 COPY session\(s\) instead of 3/);
      const restore = await limited.run(['restore', backup.stdout.trim(), '--target-db', 'slots_copy']);
      assert.equal(restore.code, 0, restore.stderr);
      const digest = "SELECT count(*) || ' ' || md5(string_agg(b::text, '|' ORDER BY id)) FROM big b";
      assert.equal(await cluster.psql('slots_copy', digest), await cluster.psql('slots', digest));
      assert.equal(await loadingTransactions(cluster, 'slots_copy', 'big'), 2);
      // No connection left beside the preflight's own: refused before anything is made, with what to do.
      await cluster.psql('postgres', 'ALTER ROLE restorer CONNECTION LIMIT 1');
      const refused = await limited.run(['restore', backup.stdout.trim(), '--target-db', 'slots_none']);
      assert.equal(refused.code, 1);
      assert.match(refused.stdout + refused.stderr, /no connection is free on the server for pg_restore \(max_connections, or the connection limit of role "restorer"\)/);
      assert.equal(await cluster.psql('postgres', "SELECT count(*) FROM pg_database WHERE datname = 'slots_none'"), '0');
    } finally {
      await limited.cleanup();
    }
  });

  test('a session that fails fails the swap restore with its message; the original stays and no copy is left', async () => {
    // Real client tools, except a psql that gives up after reading part of its script (only the COPY sessions run psql here).
    const bin = join(sandbox.dir, 'bin');
    await mkdir(bin);
    for (const tool of ['pg_dump', 'pg_dumpall', 'pg_restore']) await symlink(join(cluster.binDir, tool), join(bin, tool));
    await writeFile(join(bin, 'psql'), '#!/bin/sh\nhead -c 100000 > /dev/null\necho "psql: error: lost the connection (simulated)" >&2\nexit 2\n');
    await chmod(join(bin, 'psql'), 0o755);
    await useConfig(2, `\n      bin_dir: ${bin}`);
    await cluster.psql('shop', "UPDATE kinds SET label = 'changed after the backup' WHERE id = 1");
    const before = await snapshotDatabase(cluster, 'shop');
    const databases = () => cluster.psql('postgres', 'SELECT string_agg(datname, \' \' ORDER BY datname) FROM pg_database');
    const databasesBefore = await databases();
    const result = await sandbox.run(['restore', backupName, '--yes']);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /COPY session 2 of the restore of database "shop" into "shop_restoring_\d{8}_\d{6}" failed \(exit status 2\): psql: error: lost the connection \(simulated\)/);
    assert.equal(await databases(), databasesBefore, 'the half-made copy was dropped');
    assert.deepEqual(await snapshotDatabase(cluster, 'shop'), before, 'the original is untouched');
  });
});
