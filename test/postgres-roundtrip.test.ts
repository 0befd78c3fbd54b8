// A full backup of a non-trivial database, verified and restored end to end through the
// real CLI: beside the original (--target-db) and by swap, compared with the original.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { createRichDatabase, databaseProperties, type DatabaseSnapshot, snapshotDatabase } from './support/pg-fixture.ts';
import { makeSandbox, postgresSourceYaml, type Sandbox } from './support/stackback.ts';

interface BackupJson {
  backup: string;
  status: string;
  stats: { bytes_read: number; bytes_stored: number };
}

async function databases(cluster: PgCluster): Promise<string[]> {
  return (await cluster.psql('postgres', 'SELECT datname FROM pg_database ORDER BY 1')).split('\n');
}

describe('PostgreSQL full backup → verify → restore', () => {
  let cluster: PgCluster;
  let sandbox: Sandbox;
  let original: DatabaseSnapshot;
  let backupName: string;

  before(async () => {
    cluster = await startPgCluster();
    await createRichDatabase(cluster, 'app');
    original = await snapshotDatabase(cluster, 'app');
    sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['app'] }));
  });

  after(async () => {
    await sandbox?.cleanup();
    await cluster?.stop();
  });

  test('backup --full stores every database and the globals, and prints the backup name', async () => {
    const plain = await sandbox.run(['backup', '--full']);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout.trim(), /^full-\d{8}T\d{6}Z(-\d+)?$/);
    backupName = plain.stdout.trim();

    const shown = await sandbox.json<{ artifacts: { id: string; kind: string; meta: { tables: { table: string; rows: number; exact: boolean }[]; server_version: string } }[] }>(['show', backupName]);
    assert.equal(shown.code, 0);
    assert.deepEqual(shown.value.artifacts.map((a) => a.id).sort(), ['main/db/app', 'main/globals', 'stackback/catalog']);
    const dump = shown.value.artifacts.find((a) => a.kind === 'pg_dump')!;
    assert.match(dump.meta.server_version, /^15\./);
    // Row counts are recorded from the dump's own snapshot and match the data.
    for (const [table, facts] of Object.entries(original.tables)) {
      const recorded = dump.meta.tables.find((t) => t.table === table);
      if (!recorded) continue; // partitioned parents hold no rows of their own
      assert.equal(recorded.exact, true, table);
      assert.equal(recorded.rows, facts.rows, `row count of ${table}`);
    }
  });

  test('a second full backup gets its own name and its own chain', async () => {
    const second = await sandbox.json<BackupJson & { chain: string }>(['backup', '--full']);
    assert.equal(second.code, 0, second.stderr);
    assert.notEqual(second.value.backup, backupName);
    const list = await sandbox.json<{ name: string; chain: string; kind: string }[]>(['list']);
    assert.equal(list.value.length, 2);
    assert.notEqual(list.value[0]!.chain, list.value[1]!.chain);
    assert.ok(list.value.every((b) => b.kind === 'full'));
  });

  test('verify reads every chunk, checks each sha256 and lists the dump with pg_restore', async () => {
    const result = await sandbox.json<{ backups: { backup: string; ok: boolean; artifacts: { artifact: string; ok: boolean; detail: string }[] }[] }>(['verify', backupName, '--deep']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.value.backups[0]!.ok, true);
    const dump = result.value.backups[0]!.artifacts.find((a) => a.artifact === 'main/db/app')!;
    assert.match(dump.detail, /pg_restore --list reads \d+ entries/);
  });

  test('restore --target-db makes an identical copy beside the untouched original', async () => {
    await cluster.psql('app', "UPDATE app.customers SET name = 'changed after backup' WHERE id = 1");
    const changed = await snapshotDatabase(cluster, 'app');
    const result = await sandbox.run(['restore', backupName, '--target-db', 'app_copy']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await snapshotDatabase(cluster, 'app_copy'), original);
    assert.deepEqual(await snapshotDatabase(cluster, 'app'), changed, 'the original is not touched');
    // ANALYZE ran: the planner has statistics for the restored tables.
    const analyzed = await cluster.psql('app_copy', "SELECT count(*) FROM pg_stats WHERE schemaname = 'app'");
    assert.ok(Number(analyzed) > 0, 'restored tables have planner statistics');
  });

  test('restore --target-db refuses a name that exists', async () => {
    const result = await sandbox.run(['restore', backupName, '--target-db', 'app_copy']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /target database "app_copy" already exists/);
  });

  test('a destructive restore without --yes and without a terminal refuses and changes nothing', async () => {
    const before = await databases(cluster);
    const result = await sandbox.run(['restore', backupName]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /pass --yes/);
    assert.deepEqual(await databases(cluster), before);
  });

  test('swap restore brings the backup back and keeps the replaced database as a safety copy', async () => {
    const propsBefore = await databaseProperties(cluster, 'app');
    const changed = await snapshotDatabase(cluster, 'app');
    const result = await sandbox.json<{ results: { restored_as: string; safety_copy: string }[] }>(['restore', backupName, '--yes']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await snapshotDatabase(cluster, 'app'), original);
    // Owner, privileges, per-database settings and comment of the database it replaced.
    assert.deepEqual(await databaseProperties(cluster, 'app'), propsBefore);

    const safety = result.value.results[0]!.safety_copy;
    assert.match(safety, /^app_pre_restore_\d{8}_\d{6}$/);
    assert.deepEqual(await snapshotDatabase(cluster, safety), changed, 'the safety copy holds the data it replaced');
    assert.ok(!(await databases(cluster)).some((d) => d.includes('_restoring_')), 'no scratch database is left');
  });

  test('a restore that fails half-way drops its half-made copy and leaves the original alone', async () => {
    // A table in a tablespace that is gone by restore time: pg_restore stops when it gets there
    // (roles and extensions would be caught by the preflight; a tablespace is not).
    const { dirname } = await import('node:path');
    const { mkdir } = await import('node:fs/promises');
    const { execa } = await import('execa');
    const location = `${dirname(cluster.dataDir)}/side_space`;
    await mkdir(location);
    if (process.getuid?.() === 0) await execa('chown', ['postgres:postgres', location]);
    await cluster.psql('postgres', `CREATE TABLESPACE side_space LOCATION '${location}'`);
    await cluster.psql('app', 'CREATE TABLE app.side_table (x int) TABLESPACE side_space; INSERT INTO app.side_table VALUES (1), (2);');
    const backup = await sandbox.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    await cluster.psql('app', 'DROP TABLE app.side_table');
    await cluster.psql('postgres', 'DROP TABLESPACE side_space');
    const before = await snapshotDatabase(cluster, 'app');
    const dbsBefore = await databases(cluster);
    const result = await sandbox.run(['restore', backup.stdout.trim(), '--yes']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /pg_restore of database "app" into "app_restoring_\d{8}_\d{6}" failed \(exit status 1\): .*side_space/s);
    assert.deepEqual(await databases(cluster), dbsBefore, 'the scratch copy was dropped');
    assert.deepEqual(await snapshotDatabase(cluster, 'app'), before, 'the original is untouched');
    const deleted = await sandbox.run(['delete', backup.stdout.trim()]);
    assert.equal(deleted.code, 0, deleted.stderr);
  });

  test('delete removes the backup and its chain; the other backup stays restorable', async () => {
    const list = await sandbox.json<{ name: string; chain: string }[]>(['list']);
    const [first, second] = list.value;
    const deleted = await sandbox.json<{ chainRemoved: boolean }>(['delete', first!.name]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.value.chainRemoved, true);
    const { existsSync } = await import('node:fs');
    const { join } = await import('node:path');
    assert.equal(existsSync(join(sandbox.repoPath, 'chains', first!.chain)), false);
    assert.deepEqual(await sandbox.manifests(), [`${second!.name}.json`]);
    const verify = await sandbox.run(['verify', second!.name]);
    assert.equal(verify.code, 0, verify.stderr);
    const gone = await sandbox.run(['show', first!.name]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /not found/);
  });
});
