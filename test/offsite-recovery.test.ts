// Disaster recovery from the bucket alone: PostgreSQL, Qdrant (stand-in) and files backed up
// and copied to an S3-compatible remote (s3rver on loopback); then the server loses its
// repository, its catalog and the data itself. With only the config and the key, the catalog
// comes back from the remote and every source is restored from it — and compared with the
// originals. A second suite runs the same copy against a real provider when one is configured.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { QdrantClient } from '@qdrant/js-client-rest';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { createRichDatabase, type DatabaseSnapshot, snapshotDatabase } from './support/pg-fixture.ts';
import { allPoints, type Points } from './support/qdrant-points.ts';
import { startQdrantStandin, type QdrantStandin } from './support/qdrant-standin.ts';
import { S3Client } from '@aws-sdk/client-s3';
import { deleteObject, listObjects, type S3Handle, s3ClientConfig, startS3, writeCredentialsFile } from './support/s3.ts';
import { filesSourceYaml, makeSandbox, postgresSourceYaml, qdrantSourceYaml, type Sandbox } from './support/stackback.ts';

/** Every file under `root`: relative path → bytes (base64) and mode. */
async function treeOf(root: string): Promise<Record<string, { mode: number; data: string }>> {
  const tree: Record<string, { mode: number; data: string }> = {};
  const walk = async (dir: string, rel: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      const key = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        tree[`${key}/`] = { mode: (await stat(full)).mode & 0o7777, data: '' };
        await walk(full, key);
      } else tree[key] = { mode: (await stat(full)).mode & 0o7777, data: (await readFile(full)).toString('base64') };
    }
  };
  await walk(root, '');
  return tree;
}

function remoteYaml(s3: Pick<S3Handle, 'endpoint' | 'bucket'>, credentials: string, extra = ''): string {
  return [
    'remotes:',
    '  - name: offsite',
    '    type: s3',
    `    endpoint: ${s3.endpoint}`,
    '    region: us-east-1',
    `    bucket: ${s3.bucket}`,
    '    prefix: server-1/',
    '    force_path_style: true',
    `    credentials_file: ${credentials}`,
    '    pack_size: 1MiB',
    extra,
  ].join('\n');
}

describe('disaster recovery from the remote alone', () => {
  let cluster: PgCluster;
  let standin: QdrantStandin;
  let qdrant: QdrantClient;
  let s3: S3Handle;
  let sandbox: Sandbox;
  let filesRoot: string;

  before(async () => {
    cluster = await startPgCluster();
    await createRichDatabase(cluster, 'app');
    await cluster.psql('app', "CREATE TABLE app.bulk AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 40000) g;");
    standin = await startQdrantStandin({ version: '1.19.0' });
    qdrant = new QdrantClient({ url: standin.url, checkCompatibility: false });
    await qdrant.createCollection('docs', { vectors: { size: 4, distance: 'Cosine' } });
    await qdrant.upsert('docs', {
      wait: true,
      points: Array.from({ length: 150 }, (_, i) => ({ id: i + 1, vector: [Math.sin(i), Math.cos(i), i / 150, 1], payload: { title: `Grüße ${i} — 日本語`, tags: [`t${i % 5}`] } })),
    });
    filesRoot = await mkdtemp(join(tmpdir(), 'stackback-dr-files-'));
    await mkdir(join(filesRoot, 'uploads', 'deep'), { recursive: true });
    await writeFile(join(filesRoot, 'uploads', 'photo.bin'), Buffer.from(Array.from({ length: 3 * 1024 * 1024 }, (_, i) => (i * 7919) % 251)));
    await writeFile(join(filesRoot, 'uploads', 'deep', 'notes.txt'), 'non-ASCII: Ærøskøbing ✓\n');
    await writeFile(join(filesRoot, 'run.sh'), '#!/bin/sh\necho hi\n');
    await chmod(join(filesRoot, 'run.sh'), 0o750);
    await chmod(join(filesRoot, 'uploads', 'deep', 'notes.txt'), 0o600);
    s3 = await startS3();
    sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['app'], globals: false }), {
      qdrantYaml: qdrantSourceYaml(standin.url),
      filesYaml: filesSourceYaml([filesRoot]),
    });
    const credentials = join(sandbox.dir, 's3.credentials');
    await writeCredentialsFile(credentials, s3);
    await writeFile(sandbox.configPath, `${await readFile(sandbox.configPath, 'utf8')}${remoteYaml(s3, credentials)}\n`);
  });

  after(async () => {
    await sandbox?.cleanup();
    await s3?.stop();
    await standin?.stop();
    await cluster?.stop();
    if (filesRoot) await rm(filesRoot, { recursive: true, force: true });
  });

  test('backups copied off-site come back on a machine that has only the config and the key', async () => {
    const full = await sandbox.json<{ backup: string; status: string }>(['backup', '--full']);
    assert.equal(full.code, 0, full.stderr);
    await cluster.psql('app', "UPDATE app.bulk SET body = 'changed' WHERE id % 1000 = 0; INSERT INTO app.bulk VALUES (40001, 'new row');");
    await qdrant.upsert('docs', { wait: true, points: [{ id: 500, vector: [1, 2, 3, 4], payload: { title: 'added after the full' } }] });
    await writeFile(join(filesRoot, 'uploads', 'deep', 'notes.txt'), 'changed after the full ✓\n');
    const incremental = await sandbox.json<{ backup: string; status: string; kind: string }>(['backup', '--incremental']);
    assert.equal(incremental.code, 0, incremental.stderr);
    assert.equal(incremental.value.kind, 'incremental');
    const originals: { db: DatabaseSnapshot; points: Points; files: Record<string, { mode: number; data: string }> } = {
      db: await snapshotDatabase(cluster, 'app'),
      points: await allPoints(qdrant, 'docs'),
      files: await treeOf(filesRoot),
    };

    const copy = await sandbox.run(['copy']);
    assert.equal(copy.code, 0, copy.stderr);
    assert.match(copy.stdout, /copied 2 backup\(s\)/);
    const keys = (await s3.list('server-1/')).map((o) => o.key);
    assert.ok(keys.includes('server-1/repo.json'));
    assert.ok(keys.some((k) => /^server-1\/packs\/[0-9a-z-]+\/[0-9a-f]{32}\.pack$/.test(k)), keys.join('\n'));
    assert.equal(keys.filter((k) => k.startsWith('server-1/manifests/')).length, 2);
    // The bucket holds no plaintext: the data's own bytes are nowhere in it.
    for (const key of keys.filter((k) => k.includes('/packs/'))) {
      const body = (await s3.read(key))!;
      assert.equal(body.includes(Buffer.from('Ærøskøbing')), false, `${key} holds plaintext`);
      assert.equal(body.includes(Buffer.from('added after the full')), false, `${key} holds plaintext`);
    }

    // The disaster: the data, the repository and the catalog are gone; the config and the key file stay.
    await cluster.psql('postgres', 'DROP DATABASE app');
    await qdrant.deleteCollection('docs');
    await rm(filesRoot, { recursive: true, force: true });
    await rm(sandbox.repoPath, { recursive: true, force: true });
    for (const suffix of ['', '-wal', '-shm']) await rm(`${sandbox.catalogPath}${suffix}`, { force: true });

    const catalog = await sandbox.json<{ backup: string; backups: number }>(['catalog', 'restore', '--from', 'offsite']);
    assert.equal(catalog.code, 0, catalog.stderr);
    assert.equal(catalog.value.backup, incremental.value.backup, 'the newest backup with a catalog copy');
    const listed = await sandbox.json<{ name: string }[]>(['list', '--remote', 'offsite']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(listed.value.map((b) => b.name).sort(), [full.value.backup, incremental.value.backup].sort());

    for (const source of ['main', 'vectors', 'app-files']) {
      const restored = await sandbox.run(['restore', incremental.value.backup, '--from', 'offsite', '--source', source, '--yes']);
      assert.equal(restored.code, 0, `${source}: ${restored.stderr}`);
    }
    assert.deepEqual(await snapshotDatabase(cluster, 'app'), originals.db);
    assert.deepEqual(await allPoints(qdrant, 'docs'), originals.points);
    assert.deepEqual(await treeOf(filesRoot), originals.files);

    // The older backup is whole on its own, straight from the bucket too.
    const older = await sandbox.run(['verify', full.value.backup, '--remote', 'offsite', '--deep']);
    assert.equal(older.code, 0, older.stdout + older.stderr);
  });
});

// A real S3-compatible provider, when the environment names one (never in CI by default).
const real = {
  endpoint: process.env.S3_TEST_ENDPOINT,
  bucket: process.env.S3_TEST_BUCKET,
  region: process.env.S3_TEST_REGION ?? 'us-east-1',
  accessKeyId: process.env.S3_TEST_ACCESS_KEY_ID,
  secretAccessKey: process.env.S3_TEST_SECRET_ACCESS_KEY,
  pathStyle: process.env.S3_TEST_FORCE_PATH_STYLE === 'true',
};
const realMissing = real.endpoint && real.bucket && real.accessKeyId && real.secretAccessKey ? undefined : 'set S3_TEST_ENDPOINT, S3_TEST_BUCKET, S3_TEST_ACCESS_KEY_ID and S3_TEST_SECRET_ACCESS_KEY (optional S3_TEST_REGION, S3_TEST_FORCE_PATH_STYLE=true) to run against a real provider';

describe('a real S3-compatible provider', { skip: realMissing }, () => {
  test('copy, verify --deep and restore --from round-trip files byte for byte, then prune removes the older backup there', async () => {
    const data = await mkdtemp(join(tmpdir(), 'stackback-real-s3-'));
    const prefix = `stackback-test-${Date.now().toString(36)}/`;
    await writeFile(join(data, 'a.bin'), Buffer.from(Array.from({ length: 2 * 1024 * 1024 }, (_, i) => (i * 31) % 256)));
    await writeFile(join(data, 'b.txt'), 'real provider ✓\n');
    const sandbox = await makeSandbox('', { filesYaml: filesSourceYaml([data]), extraYaml: 'retention: { keep_last: 1, keep_hourly: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0, keep_within: 0s, keep_full: 1, gc_grace: 0s }' });
    try {
      const credentials = join(sandbox.dir, 's3.credentials');
      await writeCredentialsFile(credentials, { accessKeyId: real.accessKeyId!, secretAccessKey: real.secretAccessKey! });
      const yaml = remoteYaml({ endpoint: real.endpoint!, bucket: real.bucket! }, credentials).replace('prefix: server-1/', `prefix: ${prefix}`).replace('region: us-east-1', `region: ${real.region}`).replace('force_path_style: true', `force_path_style: ${real.pathStyle}`);
      await writeFile(sandbox.configPath, `${await readFile(sandbox.configPath, 'utf8')}${yaml}\n`);
      const backup = await sandbox.json<{ backup: string }>(['backup', '--full']);
      assert.equal(backup.code, 0, backup.stderr);
      const copy = await sandbox.run(['copy']);
      assert.equal(copy.code, 0, copy.stderr);
      const verify = await sandbox.run(['verify', backup.value.backup, '--remote', 'offsite', '--deep']);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      const target = join(sandbox.dir, 'restored');
      const restore = await sandbox.run(['restore', backup.value.backup, '--from', 'offsite', '--target-dir', target, '--yes']);
      assert.equal(restore.code, 0, restore.stderr);
      assert.deepEqual(await readFile(join(target, data, 'a.bin')), await readFile(join(data, 'a.bin')));
      // A second full makes the first one prunable everywhere; the prefix is left with one backup.
      await writeFile(join(data, 'b.txt'), 'second ✓\n');
      assert.equal((await sandbox.run(['backup', '--full'])).code, 0);
      assert.equal((await sandbox.run(['copy'])).code, 0);
      const prune = await sandbox.json<{ remotes: { ok: boolean; removed: string[] }[] }>(['prune']);
      assert.equal(prune.code, 0, prune.stderr);
      assert.deepEqual(prune.value.remotes[0]!.removed, [backup.value.backup]);
    } finally {
      // Leave the provider's bucket as it was: everything under this run's prefix goes.
      const client = new S3Client(s3ClientConfig({ endpoint: real.endpoint!, region: real.region as 'us-east-1', accessKeyId: real.accessKeyId!, secretAccessKey: real.secretAccessKey! }, { forcePathStyle: real.pathStyle }));
      for (const object of await listObjects(client, real.bucket!, prefix)) await deleteObject(client, real.bucket!, object.key);
      client.destroy();
      await sandbox.cleanup();
      await rm(data, { recursive: true, force: true });
    }
  });
});
