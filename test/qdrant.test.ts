// Qdrant collections backed up by snapshot and restored by upload, end to end through the
// CLI, against the stand-in server (test/support/qdrant-standin.ts), or a real Qdrant when
// QDRANT_URL is set. Points are compared id by id: vector and payload.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { QdrantClient } from '@qdrant/js-client-rest';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { allPoints, type Points } from './support/qdrant-points.ts';
import { startQdrantStandin, type QdrantStandin } from './support/qdrant-standin.ts';
import { makeSandbox, postgresSourceYaml, qdrantSourceYaml, type Sandbox } from './support/stackback.ts';

/** Collections of different shapes: sizes, distances, named vectors, nested non-ASCII payloads. */
async function fillCollections(client: QdrantClient, prefix = ''): Promise<void> {
  await client.createCollection(`${prefix}docs`, { vectors: { size: 4, distance: 'Cosine' } });
  await client.upsert(`${prefix}docs`, {
    wait: true,
    points: Array.from({ length: 120 }, (_, i) => ({
      id: i + 1,
      vector: [Math.sin(i), Math.cos(i), i / 120, 1 - i / 240],
      payload: { title: `Grüße ${i} — 日本語 🎉`, tags: ['a', `t${i % 7}`], meta: { nested: { depth: i % 3, ok: i % 2 === 0 } }, score: i * 0.5 },
    })),
  });
  await client.createCollection(`${prefix}images`, { vectors: { text: { size: 3, distance: 'Dot' }, image: { size: 5, distance: 'Euclid' } } });
  await client.upsert(`${prefix}images`, {
    wait: true,
    points: Array.from({ length: 40 }, (_, i) => ({
      id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      vector: { text: [i, i + 1, i + 2], image: [i / 2, 0, 1, -i, 3.5] },
      payload: { file: `photo-${i}.jpg`, size: { w: 640 + i, h: 480 } },
    })),
  });
}

async function serverSnapshotFiles(standin: QdrantStandin): Promise<string[]> {
  if (!existsSync(standin.snapshotsDir)) return [];
  const files: string[] = [];
  for (const collection of await readdir(standin.snapshotsDir)) files.push(...(await readdir(join(standin.snapshotsDir, collection))).map((f) => `${collection}/${f}`));
  return files;
}

interface BackupJson {
  backup: string;
  status: string;
  stats: { bytes_read: number; bytes_stored: number };
  sources: { name: string; status: string; error?: string; failed_artifacts?: { id: string; error: string }[] }[];
}

describe('Qdrant snapshot backup and restore (stand-in server)', () => {
  let standin: QdrantStandin;
  let client: QdrantClient;
  let sandbox: Sandbox;
  let originals: Record<string, Points>;
  let backupName: string;
  let keyDir: string;
  const apiKey = `key-${Math.random().toString(36).slice(2)}`;

  before(async () => {
    standin = await startQdrantStandin({ apiKey, version: '1.19.0' });
    client = new QdrantClient({ url: standin.url, apiKey, checkCompatibility: false });
    await fillCollections(client);
    originals = { docs: await allPoints(client, 'docs'), images: await allPoints(client, 'images') };
    keyDir = await mkdtemp(join(tmpdir(), 'stackback-key-'));
    await writeFile(join(keyDir, 'key'), `${apiKey}\n`, { mode: 0o600 });
    sandbox = await makeSandbox('', { qdrantYaml: qdrantSourceYaml(standin.url, { apiKeyFile: join(keyDir, 'key') }), logLevel: 'trace' });
  });

  after(async () => {
    await sandbox?.cleanup();
    await standin?.stop();
    await rm(keyDir, { recursive: true, force: true });
  });

  test('backup stores one snapshot per collection, checked, and deletes it from the server', async () => {
    const result = await sandbox.json<BackupJson>(['backup', '--full']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.value.status, 'ok');
    backupName = result.value.backup;
    assert.ok(!`${result.stderr}`.includes(apiKey), 'the API key is not logged');
    assert.deepEqual(await serverSnapshotFiles(standin), [], 'no snapshot is left on the server');
    const shown = await sandbox.json<{ artifacts: { id: string; kind: string; meta: { points_count: number; qdrant_version: string; vectors: unknown } }[] }>(['show', backupName]);
    const docs = shown.value.artifacts.find((a) => a.id === 'vectors/collection/docs')!;
    assert.equal(docs.kind, 'qdrant_snapshot');
    assert.equal(docs.meta.points_count, 120);
    assert.equal(docs.meta.qdrant_version, '1.19.0');
    assert.deepEqual(docs.meta.vectors, { size: 4, distance: 'Cosine' });
    assert.equal(shown.value.artifacts.find((a) => a.id === 'vectors/collection/images')!.meta.points_count, 40);
    const verify = await sandbox.run(['verify', backupName, '--deep']);
    assert.equal(verify.code, 0, verify.stdout);
    assert.match(verify.stdout, /vectors\/collection\/docs: .*snapshot tar reads/);
  });

  test('a deleted collection comes back under its own name, point for point', async () => {
    await client.deleteCollection('docs');
    const result = await sandbox.run(['restore', backupName, '--source', 'vectors', '--collection', 'docs', '--yes']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await allPoints(client, 'docs'), originals.docs);
    assert.deepEqual(await serverSnapshotFiles(standin), [], 'the uploaded snapshot file was removed from the server');
    const upload = standin.requests.find((r) => r.path.endsWith('/snapshots/upload'))!;
    assert.equal(upload.query.priority, 'snapshot');
  });

  test('a collection restores under a new name, leaving the original alone', async () => {
    await client.upsert('images', { wait: true, points: [{ id: '00000000-0000-4000-8000-000000000001', vector: { text: [9, 9, 9], image: [9, 9, 9, 9, 9] }, payload: { changed: true } }] });
    const changed = await allPoints(client, 'images');
    const result = await sandbox.run(['restore', backupName, '--collection', 'images', '--target-collection', 'images_restored']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await allPoints(client, 'images_restored'), originals.images);
    assert.deepEqual(await allPoints(client, 'images'), changed);
  });

  test('restoring over an existing collection first stores a safety snapshot of it, unless --no-safety', async () => {
    await client.upsert('images', { wait: true, points: [{ id: '00000000-0000-4000-8000-000000000002', vector: { text: [1, 1, 1], image: [1, 1, 1, 1, 1] }, payload: { changed: 2 } }] });
    const current = await allPoints(client, 'images');
    const result = await sandbox.json<{ results: { safety_backup?: string }[] }>(['restore', backupName, '--collection', 'images', '--yes']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await allPoints(client, 'images'), originals.images);
    const safety = result.value.results.find((r) => r.safety_backup)!.safety_backup!;
    assert.match(safety, /^prerestore-\d{8}T\d{6}Z/);
    // The safety copy is a backup like any other: restore it beside, and it holds what was replaced.
    const back = await sandbox.run(['restore', safety, '--collection', 'images', '--target-collection', 'images_before_restore']);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(await allPoints(client, 'images_before_restore'), current);

    const list = (await sandbox.json<{ name: string }[]>(['list'])).value.length;
    const bare = await sandbox.run(['restore', backupName, '--collection', 'docs', '--no-safety', '--yes']);
    assert.equal(bare.code, 0, bare.stderr);
    assert.equal((await sandbox.json<{ name: string }[]>(['list'])).value.length, list, 'no safety backup with --no-safety');
  });

  test('an incremental of unchanged collections reports what it re-stored', async () => {
    const incr = await sandbox.json<BackupJson & { stats: { chunks: number; chunks_new: number } }>(['backup', '--incremental']);
    assert.equal(incr.code, 0, incr.stderr);
    assert.ok(incr.value.stats.bytes_read > 0);
    assert.ok(incr.value.stats.bytes_stored <= incr.value.stats.bytes_read);
  });

  test('a snapshot whose bytes do not match its checksum is not stored, and is deleted from the server', async () => {
    standin.faults.corruptNextDownload = true;
    const result = await sandbox.json<BackupJson>(['backup', '--full']);
    assert.equal(result.code, 1);
    assert.equal(result.value.status, 'partial');
    const failed = result.value.sources[0]!.failed_artifacts!;
    assert.equal(failed.length, 1);
    assert.match(failed[0]!.error, /does not match its checksum: downloaded sha256 [0-9a-f]{64}, the server says [0-9a-f]{64}/);
    assert.deepEqual(await serverSnapshotFiles(standin), []);
  });

  test('a download cut off half-way fails that collection and still cleans the server', async () => {
    standin.faults.failNextDownloadAfterBytes = 1000;
    const result = await sandbox.json<BackupJson>(['backup', '--full']);
    assert.equal(result.code, 1);
    assert.equal(result.value.sources[0]!.failed_artifacts!.length, 1);
    assert.deepEqual(await serverSnapshotFiles(standin), []);
  });

  test('a collection deleted mid-run makes the backup partial; the others are kept', async () => {
    const collections = (await client.getCollections()).collections.length;
    standin.faults.deleteCollectionOnNextCreate = true;
    const result = await sandbox.json<BackupJson>(['backup', '--full']);
    assert.equal(result.code, 1);
    assert.equal(result.value.status, 'partial');
    assert.match(result.value.sources[0]!.failed_artifacts![0]!.error, /doesn't exist/);
    const shown = await sandbox.json<{ artifacts: { id: string; kind: string }[] }>(['show', result.value.backup]);
    assert.equal(shown.value.artifacts.filter((a) => a.kind === 'qdrant_snapshot').length, collections - 1, 'the other collections are in the backup');
  });

  test('a server that cannot load the recorded version is refused before anything is uploaded', async () => {
    const newer = await startQdrantStandin({ version: '1.21.0' });
    const next = await startQdrantStandin({ version: '1.20.3' });
    try {
      const refuse = await makeSandbox('', { qdrantYaml: qdrantSourceYaml(newer.url), repoPath: sandbox.repoPath });
      const result = await refuse.run(['restore', backupName, '--collection', 'docs', '--yes']);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /runs Qdrant 1\.21\.0, which cannot load the snapshot of "docs" made by Qdrant 1\.19\.0/);
      assert.ok(!newer.requests.some((r) => r.path.includes('/snapshots/upload')));
      await refuse.cleanup();

      const accept = await makeSandbox('', { qdrantYaml: qdrantSourceYaml(next.url), repoPath: sandbox.repoPath });
      const ok = await accept.run(['restore', backupName, '--collection', 'docs', '--yes']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual(await allPoints(new QdrantClient({ url: next.url, checkCompatibility: false }), 'docs'), originals.docs);
      await accept.cleanup();
    } finally {
      await newer.stop();
      await next.stop();
    }
  });
});

describe('a backup set where one source fails', () => {
  let cluster: PgCluster;
  let standin: QdrantStandin;
  let keyDir: string;

  before(async () => {
    cluster = await startPgCluster();
    await cluster.psql('postgres', 'CREATE DATABASE shop');
    await cluster.psql('shop', "CREATE TABLE orders AS SELECT g AS id, 'order ' || g AS label FROM generate_series(1, 2000) g");
    standin = await startQdrantStandin({ apiKey: 'right-key' });
    const client = new QdrantClient({ url: standin.url, apiKey: 'right-key', checkCompatibility: false });
    await fillCollections(client);
    keyDir = await mkdtemp(join(tmpdir(), 'stackback-key-'));
    await writeFile(join(keyDir, 'wrong'), 'wrong-key\n', { mode: 0o600 });
  });

  after(async () => {
    await standin?.stop();
    await cluster?.stop();
    await rm(keyDir, { recursive: true, force: true });
  });

  for (const [label, qdrant] of [
    ['Qdrant down', () => qdrantSourceYaml('http://127.0.0.1:9')],
    ['a wrong API key (401)', () => qdrantSourceYaml(standin.url, { apiKeyFile: join(keyDir, 'wrong') })],
  ] as const) {
    test(`${label}: the backup is partial, PostgreSQL is kept and restorable, the failure is named`, async () => {
      const s = await makeSandbox(postgresSourceYaml(cluster, { databases: ['shop'], globals: false }), { qdrantYaml: qdrant() });
      try {
        const result = await s.run(['backup', '--full']);
        assert.equal(result.code, 1, 'a partial backup exits 1');
        assert.match(result.stderr, /full backup partial/);
        assert.match(result.stderr, /source vectors FAILED: /);
        const name = result.stdout.trim();
        const shown = await s.run(['show', name]);
        assert.match(shown.stdout, /\(full, partial\)/);
        assert.match(shown.stdout, /FAILED +source vectors: /);
        const history = await s.json<{ status: string; error: string }[]>(['history']);
        assert.equal(history.value[0]!.status, 'partial');
        assert.match(history.value[0]!.error, /^vectors: /);
        const restore = await s.run(['restore', name, '--source', 'main', '--target-db', 'shop_copy']);
        assert.equal(restore.code, 0, restore.stderr);
        assert.equal(await cluster.psql('shop_copy', 'SELECT count(*) FROM orders'), '2000');
        await cluster.psql('postgres', 'DROP DATABASE shop_copy');
      } finally {
        await s.cleanup();
      }
    });
  }
});

describe('Qdrant storage_dir mode', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stackback-qstorage-'));
    await mkdir(join(dir, 'storage/collections/docs/0/segments'), { recursive: true });
    await writeFile(join(dir, 'storage/collections/docs/config.json'), '{"params":{"vectors":{"size":4}}}');
    await writeFile(join(dir, 'storage/collections/docs/0/segments/seg.bin'), Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251)));
    await writeFile(join(dir, 'storage/raft_state.json'), '{}');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const yaml = (extra: string) => qdrantSourceYaml('http://127.0.0.1:6333', { name: 'qstore', extra: `      mode: storage_dir\n      storage_path: ${join(dir, 'storage')}\n${extra}` });

  test('the folder is archived between pre_command and post_command, and restored with the old one moved aside', async () => {
    const log = join(dir, 'hooks.log');
    const s = await makeSandbox('', { qdrantYaml: yaml(`      pre_command: "echo stop >> ${log}"\n      post_command: "echo start >> ${log}"`) });
    try {
      const backup = await s.run(['backup', '--full']);
      assert.equal(backup.code, 0, backup.stderr);
      assert.equal(await readFile(log, 'utf8'), 'stop\nstart\n');
      const original = await readFile(join(dir, 'storage/collections/docs/0/segments/seg.bin'));
      await writeFile(join(dir, 'storage/collections/docs/0/segments/seg.bin'), 'damaged');
      await writeFile(join(dir, 'storage/collections/docs/extra.tmp'), 'new file');
      const restore = await s.json<{ results: { previous_moved_to: string }[] }>(['restore', backup.stdout.trim(), '--yes']);
      assert.equal(restore.code, 0, restore.stderr);
      assert.deepEqual(await readFile(join(dir, 'storage/collections/docs/0/segments/seg.bin')), original);
      assert.equal(existsSync(join(dir, 'storage/collections/docs/extra.tmp')), false);
      const aside = restore.value.results[0]!.previous_moved_to;
      assert.match(aside, /storage\.pre-restore-\d{8}_\d{6}$/);
      assert.equal(await readFile(join(aside, 'collections/docs/0/segments/seg.bin'), 'utf8'), 'damaged');
      assert.equal(await readFile(log, 'utf8'), 'stop\nstart\nstop\nstart\n');
    } finally {
      await s.cleanup();
    }
  });

  test('post_command runs even when the backup fails', async () => {
    const log = join(dir, 'hooks-fail.log');
    const s = await makeSandbox('', { qdrantYaml: yaml(`      pre_command: "echo stop >> ${log}; exit 3"\n      post_command: "echo start >> ${log}"`) });
    try {
      const backup = await s.run(['backup', '--full']);
      assert.equal(backup.code, 1);
      assert.match(backup.stderr, /pre_command `echo stop .*; exit 3` failed \(exit status 3\)/);
      assert.equal(await readFile(log, 'utf8'), 'stop\nstart\n');
    } finally {
      await s.cleanup();
    }
  });
});

describe('a real Qdrant server', () => {
  const url = process.env.QDRANT_URL;
  test('round trip against QDRANT_URL', { skip: url ? false : 'QDRANT_URL is not set: no real Qdrant server to test against (the stand-in suites above ran instead)' }, async () => {
    const apiKey = process.env.QDRANT_API_KEY;
    const client = new QdrantClient({ url: url!, checkCompatibility: false, ...(apiKey ? { apiKey } : {}) });
    const prefix = `stackback_test_${Date.now()}_`;
    const keyDir = await mkdtemp(join(tmpdir(), 'stackback-key-'));
    if (apiKey) await writeFile(join(keyDir, 'key'), apiKey, { mode: 0o600 });
    const s = await makeSandbox('', { qdrantYaml: qdrantSourceYaml(url!, { collections: [`${prefix}docs`, `${prefix}images`], ...(apiKey ? { apiKeyFile: join(keyDir, 'key') } : {}) }) });
    try {
      await fillCollections(client, prefix);
      const before = { docs: await allPoints(client, `${prefix}docs`), images: await allPoints(client, `${prefix}images`) };
      const backup = await s.run(['backup', '--full']);
      assert.equal(backup.code, 0, backup.stderr);
      await client.deleteCollection(`${prefix}docs`);
      const restored = await s.run(['restore', backup.stdout.trim(), '--collection', `${prefix}docs`, '--yes']);
      assert.equal(restored.code, 0, restored.stderr);
      assert.deepEqual(await allPoints(client, `${prefix}docs`), before.docs);
      const renamed = await s.run(['restore', backup.stdout.trim(), '--collection', `${prefix}images`, '--target-collection', `${prefix}images_copy`]);
      assert.equal(renamed.code, 0, renamed.stderr);
      assert.deepEqual(await allPoints(client, `${prefix}images_copy`), before.images);
    } finally {
      for (const c of ['docs', 'images', 'images_copy']) await client.deleteCollection(`${prefix}${c}`).catch(() => undefined);
      await s.cleanup();
      await rm(keyDir, { recursive: true, force: true });
    }
  });
});
