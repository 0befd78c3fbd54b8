// Incremental backups in chains: each one restorable on its own, deletion never breaking
// another, verification at two depths, and the catalog rebuilt from the repository alone.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { createRichDatabase, type DatabaseSnapshot, snapshotDatabase } from './support/pg-fixture.ts';
import { makeSandbox, postgresSourceYaml, type Sandbox } from './support/stackback.ts';

interface BackupJson {
  backup: string;
  kind: string;
  chain: string;
  status: string;
  promoted_to_full: boolean;
  stats: { bytes_read: number; bytes_stored: number; chunks: number; chunks_new: number };
}

interface VerifyJson {
  ok: boolean;
  backups: { backup: string; ok: boolean; artifacts: { artifact: string; ok: boolean; detail: string }[] }[];
  damaged_chunks: { chunk: string; problem: string; used_by: { backup: string; artifacts: string[] }[] }[];
}

async function chunkFiles(repoPath: string, chain: string): Promise<string[]> {
  const dir = join(repoPath, 'chains', chain);
  if (!existsSync(dir)) return [];
  const files: string[] = [];
  for (const prefix of await readdir(dir)) files.push(...(await readdir(join(dir, prefix))));
  return files.sort();
}

describe('chains of full and incremental backups', () => {
  let cluster: PgCluster;
  let sandbox: Sandbox;
  const taken: { backup: BackupJson; app: DatabaseSnapshot; other: DatabaseSnapshot }[] = [];

  before(async () => {
    cluster = await startPgCluster();
    await createRichDatabase(cluster, 'app');
    // Enough data for a few dozen chunks, so an incremental can visibly skip most of them.
    await cluster.psql('app', "CREATE TABLE app.events AS SELECT g AS id, md5(g::text) || ' ' || repeat(chr(65 + g % 26), 40) AS body FROM generate_series(1, 300000) g; ALTER TABLE app.events ADD PRIMARY KEY (id);");
    await cluster.psql('postgres', 'CREATE DATABASE other');
    await cluster.psql('other', "CREATE TABLE notes AS SELECT g AS id, 'note ' || g AS text FROM generate_series(1, 5000) g;");
    sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['app', 'other'] }));
  });

  after(async () => {
    await sandbox?.cleanup();
    await cluster?.stop();
  });

  async function backup(kind: '--full' | '--incremental'): Promise<BackupJson> {
    const result = await sandbox.json<BackupJson>(['backup', kind]);
    assert.equal(result.code, 0, result.stderr);
    taken.push({ backup: result.value, app: await snapshotDatabase(cluster, 'app'), other: await snapshotDatabase(cluster, 'other') });
    return result.value;
  }

  test('an incremental with no chain yet runs as a full, and says so', async () => {
    const fresh = await makeSandbox(postgresSourceYaml(cluster, { databases: ['other'], globals: false }));
    try {
      const result = await fresh.json<BackupJson>(['backup', '--incremental']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.value.kind, 'full');
      assert.equal(result.value.promoted_to_full, true);
      assert.match(result.stderr, /no backup chain exists yet: this incremental runs as a full backup/);
    } finally {
      await fresh.cleanup();
    }
  });

  test('incrementals join the chain and store only what changed', async () => {
    const full = await backup('--full');
    await cluster.psql('app', "UPDATE app.events SET body = 'changed ' || id WHERE id BETWEEN 150000 AND 150050;");
    const incr1 = await backup('--incremental');
    await cluster.psql('app', "INSERT INTO app.events SELECT g, 'appended ' || g FROM generate_series(300001, 301000) g; UPDATE app.customers SET name = 'Renamed' WHERE id = 2;");
    await cluster.psql('other', 'DELETE FROM notes WHERE id % 10 = 0');
    const incr2 = await backup('--incremental');
    const incr3 = await backup('--incremental'); // nothing changed

    assert.equal(incr1.chain, full.chain);
    assert.equal(incr2.chain, full.chain);
    assert.equal(incr1.kind, 'incremental');
    assert.ok(full.stats.chunks_new >= 10, `the full wrote ${full.stats.chunks_new} chunks`);
    for (const incr of [incr1, incr2]) {
      assert.ok(incr.stats.bytes_stored < full.stats.bytes_stored * 0.35, `${incr.backup} stored ${incr.stats.bytes_stored} of the full's ${full.stats.bytes_stored}`);
      assert.ok(incr.stats.chunks_new < incr.stats.chunks / 2);
    }
    // Unchanged data: only each dump's first chunk (its header carries the dump time) and the catalog copy are new.
    assert.ok(incr3.stats.chunks_new <= 4, `an unchanged database stored ${incr3.stats.chunks_new} new chunks`);

    const list = await sandbox.json<{ name: string; kind: string; chain: string; bytes_read: number; bytes_stored: number }[]>(['list']);
    assert.deepEqual(list.value.map((b) => [b.name, b.kind, b.chain, b.bytes_stored]), taken.map((t) => [t.backup.backup, t.backup.kind, t.backup.chain, t.backup.stats.bytes_stored]));
    const table = await sandbox.run(['list']);
    assert.match(table.stdout, /NAME +KIND +STATUS +CHAIN +FINISHED +TOOK +READ +STORED +SOURCES/);
    assert.match(table.stdout, new RegExp(`${incr1.backup} +incremental +ok +${full.chain}`));
  });

  test('every backup of the chain restores to exactly the data it saw', async () => {
    for (const [index, { backup: b, app, other }] of taken.entries()) {
      for (const [database, expected] of [['app', app], ['other', other]] as const) {
        const target = `${database}_check_${index}`;
        const result = await sandbox.run(['restore', b.backup, '--database', database, '--target-db', target]);
        assert.equal(result.code, 0, result.stderr);
        const restored = await snapshotDatabase(cluster, target);
        assert.deepEqual(restored.tables, expected.tables, `${b.backup} ${database}`);
        assert.deepEqual(restored.sequences, expected.sequences);
        assert.deepEqual(restored.schema, expected.schema);
        await cluster.psql('postgres', `DROP DATABASE ${target}`);
      }
    }
  });

  test('a flipped byte is invisible to quick verify, found by --deep with every backup that uses the chunk', async () => {
    const [full, incr1] = taken.map((t) => t.backup);
    const manifests: { chain: string; artifacts: { id: string; chunks: { id: string }[] }[] }[] = [];
    for (const t of taken) manifests.push(await sandbox.readManifest(t.backup.backup));
    const manifest = manifests[0]!;
    // A chunk of the "app" dump that every backup of the chain shares.
    const appChunks = manifests.map((m) => new Set(m.artifacts.find((a) => a.id === 'main/db/app')!.chunks.map((c) => c.id)));
    const chunk = [...appChunks[0]!].find((id) => appChunks.every((set) => set.has(id)))!;
    assert.ok(chunk, 'the backups share chunks');
    const file = join(sandbox.repoPath, 'chains', manifest.chain, chunk.slice(0, 2), chunk);
    const original = await readFile(file);
    const damaged = Buffer.from(original);
    damaged[7] = damaged[7]! ^ 0x10;
    await writeFile(file, damaged);
    try {
      const quick = await sandbox.json<VerifyJson>(['verify', full!.backup]);
      assert.equal(quick.code, 0);
      assert.equal(quick.value.ok, true);

      const deep = await sandbox.json<VerifyJson>(['verify', '--all', '--deep']);
      assert.equal(deep.code, 1);
      assert.equal(deep.value.damaged_chunks.length, 1);
      const found = deep.value.damaged_chunks[0]!;
      assert.equal(found.chunk, chunk);
      assert.equal(found.problem, 'damaged');
      assert.deepEqual(found.used_by.map((u) => u.backup).sort(), taken.map((t) => t.backup.backup).sort());
      assert.ok(found.used_by.every((u) => u.artifacts.includes('main/db/app')));
      for (const verdict of deep.value.backups) {
        assert.equal(verdict.artifacts.find((a) => a.artifact === 'main/db/app')!.ok, false);
        assert.equal(verdict.artifacts.find((a) => a.artifact === 'main/db/other')!.ok, true, 'the other artifacts are fine');
      }
      const text = await sandbox.run(['verify', incr1!.backup, '--deep']);
      assert.match(text.stdout, new RegExp(`damaged chunk ${chunk} .*(\\n  used by .*){${taken.length}}`));

      // Restoring the damaged artifact refuses before touching anything; the others restore.
      const refused = await sandbox.run(['restore', incr1!.backup, '--database', 'app', '--target-db', 'app_never']);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /nothing was touched/);
      assert.match(refused.stderr, /affecting main\/db\/app/);
      assert.equal(await cluster.psql('postgres', "SELECT count(*) FROM pg_database WHERE datname = 'app_never'"), '0');
      const fine = await sandbox.run(['restore', incr1!.backup, '--database', 'other', '--target-db', 'other_despite_damage']);
      assert.equal(fine.code, 0, fine.stderr);
      await cluster.psql('postgres', 'DROP DATABASE other_despite_damage');
    } finally {
      await writeFile(file, original);
    }
    const missing = join(sandbox.repoPath, 'chains', manifest.chain, chunk.slice(0, 2), chunk);
    await rm(missing);
    const quick = await sandbox.json<VerifyJson>(['verify', full!.backup]);
    assert.equal(quick.code, 1, 'a missing chunk fails even the quick level');
    assert.equal(quick.value.damaged_chunks[0]!.problem, 'missing');
    await writeFile(missing, original);
  });

  test('deleting the full keeps every incremental restorable, and frees what only the full used', async () => {
    const [full, incr1] = taken.map((t) => t.backup);
    const chain = full!.chain;
    const before = await chunkFiles(sandbox.repoPath, chain);
    const deleted = await sandbox.json<{ chainRemoved: boolean; freedChunks: number }>(['delete', full!.backup]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.value.chainRemoved, false);
    assert.ok(deleted.value.freedChunks > 0, 'chunks only the full used were removed');
    assert.equal((await chunkFiles(sandbox.repoPath, chain)).length, before.length - deleted.value.freedChunks);

    const deep = await sandbox.json<VerifyJson>(['verify', '--all', '--deep']);
    assert.equal(deep.code, 0, JSON.stringify(deep.value.damaged_chunks));
    const result = await sandbox.run(['restore', incr1!.backup, '--database', 'app', '--target-db', 'app_after_delete']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual((await snapshotDatabase(cluster, 'app_after_delete')).tables, taken[1]!.app.tables);
    await cluster.psql('postgres', 'DROP DATABASE app_after_delete');

    // Deleting the rest removes the chain whole.
    for (const b of taken.slice(1).map((t) => t.backup)) assert.equal((await sandbox.run(['delete', b.backup])).code, 0);
    assert.equal(existsSync(join(sandbox.repoPath, 'chains', chain)), false);
  });

  test('catalog rebuild recreates the same list from the repository alone', async () => {
    await backup('--full');
    await backup('--incremental');
    const before = await sandbox.json<unknown[]>(['list']);
    await rm(sandbox.catalogPath);
    await rm(`${sandbox.catalogPath}-wal`, { force: true });
    await rm(`${sandbox.catalogPath}-shm`, { force: true });
    const empty = await sandbox.json<unknown[]>(['list']);
    assert.deepEqual(empty.value, []);
    const rebuilt = await sandbox.json<{ backups: number }>(['catalog', 'rebuild']);
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    assert.equal(rebuilt.value.backups, 2);
    assert.deepEqual((await sandbox.json<unknown[]>(['list'])).value, before.value);
    // The rebuilt chunk index lets the next incremental skip what the chain holds.
    const next = await sandbox.json<BackupJson>(['backup', '--incremental']);
    assert.ok(next.value.stats.chunks_new <= 4 && next.value.stats.chunks_new < next.value.stats.chunks / 4, JSON.stringify(next.value.stats));
  });
});
