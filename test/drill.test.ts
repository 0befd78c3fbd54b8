// Restore drills prove backups restore, on scratch targets that are gone afterwards; the
// restore preflight names every problem with what to do about it.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { QdrantClient } from '@qdrant/js-client-rest';
import { execa } from 'execa';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { createRichDatabase } from './support/pg-fixture.ts';
import { startQdrantStandin, type QdrantStandin } from './support/qdrant-standin.ts';
import { filesSourceYaml, makeSandbox, postgresSourceYaml, qdrantSourceYaml, type Sandbox } from './support/stackback.ts';

interface VerifyJson {
  ok: boolean;
  level: string;
  backups: { backup: string; ok: boolean; artifacts: { artifact: string; ok: boolean; detail: string; seconds: number; differences?: string[] }[] }[];
}

interface CheckJson {
  ready: boolean;
  findings: { source: string; level: 'ok' | 'error'; message: string; hint?: string }[];
}

describe('restore drills and the restore preflight', () => {
  let cluster: PgCluster;
  let standin: QdrantStandin;
  let dir: string;
  let sandbox: Sandbox;
  let backupName: string;

  const scratchDatabases = async () => (await cluster.psql('postgres', "SELECT coalesce(string_agg(datname, ','), '') FROM pg_database WHERE datname LIKE 'stackback_drill_%'"));

  before(async () => {
    cluster = await startPgCluster();
    await createRichDatabase(cluster, 'app');
    standin = await startQdrantStandin();
    const client = new QdrantClient({ url: standin.url, checkCompatibility: false });
    await client.createCollection('docs', { vectors: { size: 3, distance: 'Dot' } });
    await client.upsert('docs', { wait: true, points: Array.from({ length: 30 }, (_, i) => ({ id: i + 1, vector: [i, 1, 2], payload: { n: i } })) });
    dir = await mkdtemp(join(tmpdir(), 'stackback-drill-'));
    await mkdir(join(dir, 'uploads', 'a'), { recursive: true });
    await writeFile(join(dir, 'uploads', 'a', 'one.txt'), 'one');
    await writeFile(join(dir, 'uploads', 'two.bin'), Buffer.alloc(70_000, 7));
    sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['app'] }), { qdrantYaml: qdrantSourceYaml(standin.url), filesYaml: filesSourceYaml([join(dir, 'uploads')]) });
    const backup = await sandbox.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    backupName = backup.stdout.trim();
  });

  after(async () => {
    await sandbox?.cleanup();
    await standin?.stop();
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('a drill of a good backup passes for all three sources, and leaves no scratch target', async () => {
    const result = await sandbox.json<VerifyJson>(['verify', backupName, '--drill']);
    assert.equal(result.code, 0, JSON.stringify(result.value, null, 1));
    const verdicts = new Map(result.value.backups[0]!.artifacts.map((a) => [a.artifact, a]));
    assert.match(verdicts.get('main/db/app')!.detail, /restored into stackback_drill_app_\d{8}_\d{6}: \d+ table row counts and 3 extension\(s\) compared/);
    assert.match(verdicts.get('vectors/collection/docs')!.detail, /scratch collection stackback_drill_docs_\d+_\d+: 30 points/);
    assert.match(verdicts.get('app-files/files')!.detail, /2 file\(s\) compared by size and sha256/);
    assert.ok([...verdicts.values()].every((v) => typeof v.seconds === 'number'));
    assert.equal(await scratchDatabases(), '', 'the scratch database is dropped');
    const collections = (await new QdrantClient({ url: standin.url, checkCompatibility: false }).getCollections()).collections.map((c) => c.name);
    assert.deepEqual(collections, ['docs'], 'the scratch collection is deleted');
    assert.deepEqual(await readdir(join(sandbox.dir, 'tmp')), [], 'the scratch folder is removed');
    // The verdict shows in list and show.
    const list = await sandbox.run(['list']);
    assert.match(list.stdout, new RegExp(`${backupName} .* drill ok \\d{4}-\\d{2}-\\d{2}`));
    const shown = await sandbox.run(['show', backupName]);
    assert.match(shown.stdout, /verified drill OK at /);
  });

  test('a backup whose recorded counts do not match fails the drill with the table named, and cleans up', async () => {
    const file = join(sandbox.repoPath, 'manifests', `${backupName}.json`);
    const original = await readFile(file);
    const manifest = await sandbox.readManifest<{ artifacts: { id: string; meta: { tables: { table: string; rows: number; exact: boolean }[] } }[] }>(backupName);
    const table = manifest.artifacts.find((a) => a.id === 'main/db/app')!.meta.tables.find((t) => t.exact && t.rows > 0)!;
    table.rows += 5;
    await sandbox.writeManifest(backupName, manifest);
    try {
      const result = await sandbox.json<VerifyJson>(['verify', backupName, '--drill']);
      assert.equal(result.code, 1);
      const app = result.value.backups[0]!.artifacts.find((a) => a.artifact === 'main/db/app')!;
      assert.equal(app.ok, false);
      assert.match(app.differences!.join('\n'), new RegExp(`table ${table.table.replace('.', '\\.')}: ${table.rows - 5} rows restored, ${table.rows} recorded at backup time`));
      assert.equal(await scratchDatabases(), '', 'the scratch database is dropped after a failed drill too');
      const status = await sandbox.json<{ last: { verify: { status: string; level: string } } }>(['status']);
      assert.deepEqual([status.value.last.verify.status, status.value.last.verify.level], ['failed', 'drill']);
    } finally {
      await writeFile(file, original);
    }
  });

  test('a drill refuses a scratch database that exists and was not made by stackback', async () => {
    // The scratch names of a drill started in any of the next few seconds: occupy them all with
    // databases of our own, so however long the CLI takes to get there (a loaded machine), it meets one.
    const stampAt = (ms: number) => new Date(ms).toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
    const first = Math.ceil(Date.now() / 1000) * 1000 + 1000;
    const stamps = Array.from({ length: 8 }, (_, i) => stampAt(first + i * 1000));
    for (const stamp of stamps) await cluster.psql('postgres', `CREATE DATABASE stackback_drill_app_${stamp}`);
    while (Date.now() < first) await new Promise((r) => setTimeout(r, 20));
    const result = await sandbox.json<VerifyJson>(['verify', backupName, '--drill']);
    const app = result.value.backups[0]!.artifacts.find((a) => a.artifact === 'main/db/app')!;
    if (Date.now() < first + stamps.length * 1000) {
      assert.equal(app.ok, false);
      assert.match(app.detail, /exists and was not made by a stackback drill: refusing to touch it/);
    }
    for (const stamp of stamps) {
      assert.equal(await cluster.psql('postgres', `SELECT count(*) FROM pg_database WHERE datname = 'stackback_drill_app_${stamp}'`), '1', 'the foreign databases are untouched');
      await cluster.psql('postgres', `DROP DATABASE stackback_drill_app_${stamp}`);
    }
  });

  test('restore --check names a missing role, a missing extension, too little disk, a busy database and an unusable work_dir, each with what to do', async () => {
    const file = join(sandbox.repoPath, 'manifests', `${backupName}.json`);
    const original = await readFile(file);
    const manifest = await sandbox.readManifest<{ artifacts: { id: string; meta: { extensions: { name: string; version: string }[]; roles?: string[] } }[] }>(backupName);
    const meta = manifest.artifacts.find((a) => a.id === 'main/db/app')!.meta;
    meta.extensions.push({ name: 'postgis_not_here', version: '3.4' });
    meta.roles = [...(meta.roles ?? []), 'ghost_role'];
    await sandbox.writeManifest(backupName, manifest);
    // A session on the database to replace.
    const session = execa(join(cluster.binDir, 'psql'), ['-X', '-h', cluster.socketDir, '-p', String(cluster.port), '-U', 'postgres', '-d', 'app'], { input: 'SELECT pg_sleep(30);', reject: false });
    const config = await readFile(sandbox.configPath, 'utf8');
    // A work_dir below a regular file: no folder, so no pipe into pg_restore, can be made there.
    const notAFolder = join(sandbox.dir, 'not-a-folder');
    await writeFile(notAFolder, '');
    await writeFile(sandbox.configPath, `${config.replace(/^work_dir: .*$/m, `work_dir: ${notAFolder}/work`)}\nrestore: { reserve_free: 900TB }\n`);
    try {
      await new Promise((r) => setTimeout(r, 500));
      const check = await sandbox.json<CheckJson>(['restore', backupName, '--source', 'main', '--check']);
      assert.equal(check.code, 1);
      assert.equal(check.value.ready, false);
      const problems = check.value.findings.filter((f) => f.level === 'error');
      const find = (pattern: RegExp) => problems.find((p) => pattern.test(p.message));
      assert.match(find(/role\(s\)/)!.message, /"ghost_role"/);
      assert.match(find(/role\(s\)/)!.hint!, /--with-globals|CREATE ROLE/);
      assert.match(find(/extension\(s\)/)!.message, /"postgis_not_here"/);
      assert.match(find(/extension\(s\)/)!.hint!, /install the package/);
      assert.match(find(/not enough free disk/)!.message, /bytes free, about \d+ needed/);
      assert.match(find(/other session/)!.message, /database "app" has 1 other session/);
      assert.match(find(/other session/)!.hint!, /--force-disconnect/);
      assert.match(find(/work_dir/)!.message, /not-a-folder\/work cannot hold the pipe that feeds pg_restore: .*ENOTDIR/);
      assert.ok(check.value.findings.some((f) => f.level === 'ok' && /pg_restore 15/.test(f.message)), 'the client tools check passes');
      const text = await sandbox.run(['restore', backupName, '--source', 'main', '--check']);
      assert.match(text.stdout, /NOT ready: fix the problems above first; nothing was touched/);
      // And a real restore refuses with the same problems.
      const refused = await sandbox.run(['restore', backupName, '--source', 'main', '--yes']);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /ghost_role/);
    } finally {
      await writeFile(file, original);
      await writeFile(sandbox.configPath, config);
      await cluster.psql('postgres', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()");
      await session;
    }
  });

  test('with drill.postgres_server the drill restores on that server, not on the source server', async () => {
    const other = await startPgCluster();
    try {
      await other.psql('postgres', 'CREATE ROLE app_owner; CREATE ROLE app_reader;');
      const config = await readFile(sandbox.configPath, 'utf8');
      await writeFile(sandbox.configPath, `${config}\ndrill: { postgres_server: { host: ${other.socketDir}, port: ${other.port} } }\n`);
      try {
        const result = await sandbox.json<VerifyJson>(['verify', backupName, '--drill']);
        assert.equal(result.code, 0, JSON.stringify(result.value, null, 1));
        const app = result.value.backups[0]!.artifacts.find((a) => a.artifact === 'main/db/app')!;
        assert.match(app.detail, new RegExp(`on postgres source drill-server \\(postgres@${other.socketDir.replaceAll('/', '\\/')}:${other.port}\\)`));
        assert.equal(await other.psql('postgres', "SELECT count(*) FROM pg_database WHERE datname LIKE 'stackback_drill_%'"), '0', 'and dropped there');
      } finally {
        await writeFile(sandbox.configPath, config);
      }
    } finally {
      await other.stop();
    }
  });

  test('restore --check of a good plan says ready', async () => {
    const check = await sandbox.json<CheckJson>(['restore', backupName, '--source', 'main', '--target-db', 'app_checked', '--check']);
    assert.equal(check.code, 0, JSON.stringify(check.value));
    assert.equal(check.value.ready, true);
    assert.ok(check.value.findings.some((f) => /target database name "app_checked" is free/.test(f.message)));
    assert.equal(await cluster.psql('postgres', "SELECT count(*) FROM pg_database WHERE datname = 'app_checked'"), '0', 'a check restores nothing');
  });
});
