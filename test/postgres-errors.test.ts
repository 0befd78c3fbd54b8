// Bad input and broken surroundings: each gets a clear error naming what is wrong, and
// nothing is written (no manifest, no catalog entry, no database touched).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { createRichDatabase } from './support/pg-fixture.ts';
import { makeSandbox, postgresSourceYaml, type Sandbox } from './support/stackback.ts';

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function tcpSourceYaml(cluster: PgCluster, opts: { port?: number; passwordFile: string; user?: string; databases: string[]; name?: string }): string {
  return [
    `    - name: ${opts.name ?? 'main'}`,
    '      host: 127.0.0.1',
    `      port: ${opts.port ?? cluster.port}`,
    `      user: ${opts.user ?? 'postgres'}`,
    `      password_file: ${opts.passwordFile}`,
    `      databases: [${opts.databases.join(', ')}]`,
    '      globals: false',
  ].join('\n');
}

async function assertNothingWritten(sandbox: Sandbox): Promise<void> {
  assert.deepEqual(await sandbox.manifests(), [], 'no manifest was written');
  const list = await sandbox.json<unknown[]>(['list']);
  assert.deepEqual(list.value, [], 'the catalog lists no backup');
}

describe('errors that name what is wrong, and write nothing', () => {
  let cluster: PgCluster;
  let secrets: string;
  const sandboxes: Sandbox[] = [];
  const sandbox = async (sources: string, options: { logLevel?: string } = {}) => {
    const s = await makeSandbox(sources, options);
    sandboxes.push(s);
    return s;
  };

  before(async () => {
    cluster = await startPgCluster();
    await createRichDatabase(cluster, 'app');
    secrets = await mkdtemp(join(tmpdir(), 'stackback-secrets-'));
  });

  after(async () => {
    for (const s of sandboxes) await s.cleanup();
    await rm(secrets, { recursive: true, force: true });
    await cluster?.stop();
  });

  test('a wrong password fails with an authentication error that does not reveal the password', async () => {
    const wrong = 'not-the-password-' + Math.random().toString(36).slice(2);
    const file = join(secrets, 'wrong');
    await writeFile(file, `${wrong}\n`, { mode: 0o600 });
    const s = await sandbox(tcpSourceYaml(cluster, { passwordFile: file, databases: ['app'] }));
    const result = await s.run(['backup', '--full']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /authentication failed for postgres source main \(postgres@127\.0\.0\.1:\d+\)/);
    assert.ok(!result.stderr.includes(wrong) && !result.stdout.includes(wrong), 'the password is not printed');
    await assertNothingWritten(s);
  });

  test('the right password over TCP works, and never reaches output, the catalog or the repository', async () => {
    const file = join(secrets, 'right');
    await writeFile(file, `${cluster.password}\n`, { mode: 0o600 });
    const s = await sandbox(tcpSourceYaml(cluster, { passwordFile: file, databases: ['app'] }), { logLevel: 'trace' });
    const result = await s.run(['backup', '--full']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /"level":/, 'trace logging is on, so a leak would show');
    assert.ok(!`${result.stdout}${result.stderr}`.includes(cluster.password));
    assert.ok(!(await readFile(s.catalogPath)).includes(cluster.password), 'catalog');
    for (const name of await s.manifests()) {
      assert.ok(!JSON.stringify(await s.readManifest(name.replace(/\.json$/, ''))).includes(cluster.password), 'manifest');
    }
  });

  test('an unreadable password_file is named', async () => {
    const s = await sandbox(tcpSourceYaml(cluster, { passwordFile: join(secrets, 'does-not-exist'), databases: ['app'] }));
    const result = await s.run(['backup', '--full']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot read password_file .*does-not-exist of source main: ENOENT/);
    await assertNothingWritten(s);
  });

  test('an unreachable server is named with its address', async () => {
    const file = join(secrets, 'right');
    const port = await closedPort();
    const s = await sandbox(tcpSourceYaml(cluster, { port, passwordFile: file, databases: ['app'] }));
    const result = await s.run(['backup', '--full']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`cannot reach postgres source main \\(postgres@127\\.0\\.0\\.1:${port}\\): ECONNREFUSED`));
    await assertNothingWritten(s);
  });

  test('a database that does not exist is named', async () => {
    const s = await sandbox(postgresSourceYaml(cluster, { databases: ['app', 'no_such_db'] }));
    const result = await s.run(['backup', '--full']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /database\(s\) "no_such_db" of postgres source main .* do not exist/);
    await assertNothingWritten(s);
  });

  test('client tools older than the server are refused with the versions named', async () => {
    const fakeBin = await mkdtemp(join(tmpdir(), 'stackback-oldbin-'));
    await writeFile(join(fakeBin, 'pg_dump'), '#!/bin/sh\necho "pg_dump (PostgreSQL) 14.11"\n');
    await chmod(join(fakeBin, 'pg_dump'), 0o755);
    try {
      const s = await sandbox(postgresSourceYaml(cluster, { databases: ['app'], extra: `      bin_dir: ${fakeBin}` }));
      const result = await s.run(['backup', '--full']);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /PostgreSQL 14 client tools in .* cannot dump server 15/);
      await assertNothingWritten(s);
    } finally {
      await rm(fakeBin, { recursive: true, force: true });
    }
  });

  test('a pg_dump that fails is never recorded as good: the other database is kept, the backup is partial', async () => {
    // A table whose schema is gone from the catalog: pg_dump stops with an error half-way.
    await cluster.psql('postgres', 'CREATE DATABASE broken');
    await cluster.psql('broken', "CREATE TABLE ok_table AS SELECT g FROM generate_series(1, 1000) g; CREATE SCHEMA doomed; CREATE TABLE doomed.t (x int); DELETE FROM pg_namespace WHERE nspname = 'doomed';");
    const s = await sandbox(postgresSourceYaml(cluster, { databases: ['app', 'broken'], globals: false }));
    const result = await s.run(['backup', '--full']);
    assert.equal(result.code, 1, 'a partial backup exits 1');
    assert.match(result.stderr, /main\/db\/broken FAILED: pg_dump of database "broken" \(source main\) failed \(exit status 1\): .*schema with OID \d+ does not exist/);
    const name = result.stdout.trim();
    const shown = await s.json<{ status: string; artifacts: { id: string; kind: string }[]; sources: { failed_artifacts: { id: string; error: string }[] }[] }>(['show', name]);
    assert.equal(shown.value.status, 'partial');
    assert.deepEqual(shown.value.artifacts.filter((a) => a.kind !== 'catalog').map((a) => a.id), ['main/db/app'], 'only the good dump is recorded');
    assert.equal(shown.value.sources[0]!.failed_artifacts[0]!.id, 'main/db/broken');
    const restore = await s.run(['restore', name, '--database', 'app', '--target-db', 'app_from_partial']);
    assert.equal(restore.code, 0, restore.stderr);
    assert.equal(await cluster.psql('app_from_partial', 'SELECT count(*) FROM app.customers'), await cluster.psql('app', 'SELECT count(*) FROM app.customers'));
  });

  test('a bad config names every wrong key and exits 2; a backup with it writes nothing', async () => {
    const s = await sandbox(['    - name: main', '      port: abc', '      databases: []', '      colour: blue'].join('\n'));
    const check = await s.run(['config', 'check']);
    assert.equal(check.code, 2);
    assert.match(check.stderr, /sources\.postgres\[0\]\.port: must be a port number, got "abc"/);
    assert.match(check.stderr, /sources\.postgres\[0\]\.databases: must be "all" or a non-empty list/);
    assert.match(check.stderr, /sources\.postgres\[0\]\.colour: unknown key/);
    const json = await s.json<{ error: { code: string; problems: string[] } }>(['config', 'check']);
    assert.equal(json.code, 2);
    assert.equal(json.value.error.code, 'CONFIG_INVALID');
    assert.equal(json.value.error.problems.length, 3);
    const backup = await s.run(['backup', '--full']);
    assert.equal(backup.code, 2);
    assert.deepEqual(await readdir(s.dir), ['stackback.yaml'], 'no repository, catalog or work folder was created');
  });

  test('a missing config file is named', async () => {
    const s = await sandbox(postgresSourceYaml(cluster));
    await rm(s.configPath);
    const result = await s.run(['list']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /config file .*stackback\.yaml does not exist/);
  });

  test('backup names that could escape the repository are refused with exit 2', async () => {
    const s = await sandbox(postgresSourceYaml(cluster, { databases: ['app'] }));
    for (const args of [['show', '../etc/passwd'], ['restore', '../x', '--yes'], ['delete', 'a/b'], ['verify', '..'], ['show', '']]) {
      const result = await s.run(args);
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, /invalid backup name/, args.join(' '));
    }
    const unknown = await s.run(['show', 'full-20200101T000000Z']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /backup full-20200101T000000Z not found/);
  });

  test('a damaged chunk fails verify --deep, and restore refuses before touching any database', async () => {
    const s = await sandbox(postgresSourceYaml(cluster, { databases: ['app'] }));
    const backup = await s.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    const name = backup.stdout.trim();
    const manifest = await s.readManifest<{
      chain: string;
      artifacts: { id: string; chunks: { id: string }[] }[];
    }>(name);
    const chunk = manifest.artifacts.find((a) => a.id === 'main/db/app')!.chunks[0]!;
    const file = join(s.repoPath, 'chains', manifest.chain, chunk.id.slice(0, 2), chunk.id);
    const bytes = await readFile(file);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = bytes[middle]! ^ 0x01;
    await writeFile(file, bytes);

    const quick = await s.run(['verify', name]);
    assert.equal(quick.code, 0, 'a same-size flip is invisible to the quick level');
    const verify = await s.run(['verify', name, '--deep']);
    assert.equal(verify.code, 1);
    assert.match(verify.stdout, /FAILED main\/db\/app: .*damaged|FAILED main\/db\/app: .*cannot be decoded/);
    assert.match(verify.stdout, /ok +main\/globals/);

    const databasesBefore = await cluster.psql('postgres', 'SELECT string_agg(datname, \',\' ORDER BY datname) FROM pg_database');
    const appBefore = await cluster.psql('app', "SELECT md5(string_agg(c::text, ',' ORDER BY c::text)) FROM app.customers c");
    for (const args of [['restore', name, '--yes'], ['restore', name, '--target-db', 'app_from_damaged']]) {
      const restore = await s.run(args);
      assert.equal(restore.code, 1);
      assert.match(restore.stderr, /nothing was touched/);
      assert.match(restore.stderr, /cannot be restored: 1 chunk\(s\) missing or damaged .* affecting main\/db\/app/);
    }
    assert.equal(await cluster.psql('postgres', 'SELECT string_agg(datname, \',\' ORDER BY datname) FROM pg_database'), databasesBefore);
    assert.equal(await cluster.psql('app', "SELECT md5(string_agg(c::text, ',' ORDER BY c::text)) FROM app.customers c"), appBefore);
    // The sha of the damaged bytes differs from the recorded one: that is what refused it.
    assert.notEqual(createHash('sha256').update(bytes).digest('hex'), chunk.id);
  });
});
