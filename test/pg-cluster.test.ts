import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import { startPgCluster, type PgCluster } from './support/pg-cluster.ts';
import { createRichDatabase, databaseProperties, snapshotDatabase } from './support/pg-fixture.ts';

let cluster: PgCluster;

before(async () => {
  cluster = await startPgCluster();
  await createRichDatabase(cluster, 'rich');
});

after(async () => {
  await cluster?.stop();
});

test('snapshot of an unchanged database is stable and covers every kind of relation', async () => {
  const first = await snapshotDatabase(cluster, 'rich');
  const second = await snapshotDatabase(cluster, 'rich');
  assert.deepEqual(second, first);

  assert.doesNotMatch(first.schema, /^-- Dumped (from|by)/m);
  assert.doesNotMatch(first.schema, /^\\(un)?restrict/m);
  assert.match(first.schema, /CREATE EXTENSION IF NOT EXISTS citext/);
  assert.match(first.schema, /CREATE TRIGGER orders_status_audit/);

  assert.equal(first.tables['app.customers']?.rows, 500);
  assert.equal(first.tables['app.orders']?.rows, 2000);
  assert.equal(first.tables['app.measurements']?.rows, 2400);
  const partitions = ['app.measurements_2023', 'app.measurements_2024', 'app.measurements_rest'];
  assert.equal(partitions.reduce((sum, name) => sum + (first.tables[name]?.rows ?? 0), 0), 2400);
  for (const name of partitions) assert.ok((first.tables[name]?.rows ?? 0) > 0, `${name} has rows`);
  assert.equal(first.tables['app.order_stats']?.rows, 3);
  assert.equal(first.tables['café.commandes_été']?.rows, 201);
  assert.ok((first.tables['audit.order_events']?.rows ?? 0) > 0, 'trigger wrote audit rows');
  assert.ok(Object.values(first.tables).reduce((sum, t) => sum + t.rows, 0) > 5000);

  assert.equal(first.sequences['app.invoice_number'], 'last_value=1000 is_called=true');
  assert.equal(first.sequences['app.not_yet_used'], 'last_value=42 is_called=false');
  assert.equal(first.sequences['app.orders_id_seq'], 'last_value=2000 is_called=true');
  assert.equal(Object.keys(first.largeObjects).length, 2);
});

test('snapshot notices a changed row', async () => {
  const before = await snapshotDatabase(cluster, 'rich');
  await cluster.psql('rich', `UPDATE "café"."commandes_été" SET "größe" = 7 WHERE "clé" = 1`);
  const after = await snapshotDatabase(cluster, 'rich');

  assert.notDeepEqual(after, before);
  assert.equal(after.schema, before.schema);
  assert.notEqual(after.tables['café.commandes_été']?.digest, before.tables['café.commandes_été']?.digest);
  assert.deepEqual(after.tables['app.orders'], before.tables['app.orders']);
});

test('database properties include owner, ACL, settings and comment', async () => {
  const props = await databaseProperties(cluster, 'rich');
  assert.equal(props.owner, 'app_owner');
  assert.match(props.acl ?? '', /app_reader=Tc\/app_owner/);
  assert.equal(props.settings, '{"search_path=app, public",work_mem=8MB}');
  assert.equal(props.comment, 'stackback fixture — Grüße 🎉');
  assert.equal(props.encoding, 'UTF8');
  await assert.rejects(databaseProperties(cluster, 'missing'), /does not exist/);
});

test('TCP connections need the superuser password', async () => {
  const overTcp = (password: string) =>
    execa(
      join(cluster.binDir, 'psql'),
      ['-X', '-A', '-t', '-w', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', cluster.superuser, '-d', 'postgres', '-c', 'SELECT 1'],
      { env: { PGPASSWORD: password }, reject: false },
    );

  const wrong = await overTcp('not-the-password');
  assert.equal(wrong.failed, true);
  assert.match(wrong.stderr, /password authentication failed/);

  const right = await overTcp(cluster.password);
  assert.equal(right.failed, false, right.stderr);
  assert.equal(right.stdout.trim(), '1');
});

test('psql rejects with the server error', async () => {
  await assert.rejects(cluster.psql('rich', 'SELECT * FROM no_such_table'), /relation "no_such_table" does not exist/);
});

test('a second cluster starts alongside and stop() is idempotent', async () => {
  const other = await startPgCluster();
  try {
    assert.notEqual(other.port, cluster.port);
    assert.equal(await other.psql('postgres', 'SELECT current_user'), 'postgres');
  } finally {
    await other.stop();
    await other.stop();
  }
  assert.equal(existsSync(other.dataDir), false);
});
