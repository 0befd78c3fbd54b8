// Roles and tablespaces travel in the globals artifact; --with-globals replays them so a
// database whose owner is gone can come back, and existing roles are no error.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { makeSandbox, postgresSourceYaml, type Sandbox } from './support/stackback.ts';

describe('restore with --with-globals', () => {
  let cluster: PgCluster;
  let sandbox: Sandbox;
  let backupName: string;

  before(async () => {
    cluster = await startPgCluster();
    await cluster.psql('postgres', "CREATE ROLE ledger_owner LOGIN PASSWORD 'ledger-secret' CONNECTION LIMIT 7; CREATE DATABASE ledger OWNER ledger_owner;");
    await cluster.psql('ledger', 'SET ROLE ledger_owner; CREATE TABLE entries (id serial PRIMARY KEY, amount numeric); INSERT INTO entries (amount) SELECT g * 1.5 FROM generate_series(1, 500) g;');
    sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['ledger'] }));
    const backup = await sandbox.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    backupName = backup.stdout.trim();
    // The server loses both the database and the role that owned it.
    await cluster.psql('postgres', 'DROP DATABASE ledger; DROP ROLE ledger_owner;');
  });

  after(async () => {
    await sandbox?.cleanup();
    await cluster?.stop();
  });

  test('without --with-globals the preflight names the missing role and creates nothing', async () => {
    const result = await sandbox.run(['restore', backupName, '--yes']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /role\(s\) "ledger_owner" needed by database "ledger" do not exist on the server \(restore them with --with-globals/);
    assert.equal(await cluster.psql('postgres', "SELECT count(*) FROM pg_database WHERE datname LIKE 'ledger%'"), '0');
  });

  test('with --with-globals the role comes back with its attributes, then the database', async () => {
    const result = await sandbox.run(['restore', backupName, '--with-globals', '--yes']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await cluster.psql('postgres', "SELECT rolcanlogin || ' ' || rolconnlimit FROM pg_roles WHERE rolname = 'ledger_owner'"), 'true 7');
    assert.equal(await cluster.psql('postgres', "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'ledger'"), 'ledger_owner');
    assert.equal(await cluster.psql('ledger', 'SELECT count(*) || \' \' || sum(amount) FROM entries'), '500 187875.0');
    assert.equal(await cluster.psql('ledger', "SELECT tableowner FROM pg_tables WHERE tablename = 'entries'"), 'ledger_owner');
  });

  test('replaying globals over existing roles is not an error, and leaves them as they are', async () => {
    await cluster.psql('postgres', 'ALTER ROLE ledger_owner CONNECTION LIMIT 3');
    const again = await sandbox.json<{ results: { artifact: string; skipped_existing?: string[] }[] }>(['restore', backupName, '--with-globals', '--yes']);
    assert.equal(again.code, 0, again.stderr);
    const globals = again.value.results.find((r) => r.artifact === 'main/globals')!;
    assert.ok(globals.skipped_existing!.includes('role ledger_owner'));
    assert.ok(globals.skipped_existing!.includes('role postgres'));
    assert.equal(await cluster.psql('postgres', "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'ledger_owner'"), '3', 'the existing role kept its attributes');
  });
});
