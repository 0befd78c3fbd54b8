// What must never lose data: a backup killed with SIGKILL, a full disk, a source that
// stalls, two writers at once. Real processes, real signals, a real (small) filesystem.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa, type ResultPromise } from 'execa';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { snapshotDatabase } from './support/pg-fixture.ts';
import { makeSandbox, postgresSourceYaml, PROJECT_ROOT, type Sandbox } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';

interface RunJson {
  id: number;
  kind: string;
  status: string;
  error: string | null;
}

async function countFiles(dir: string): Promise<number> {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) n += entry.isDirectory() ? await countFiles(join(dir, entry.name)) : 1;
  return n;
}

/** Starts `stackback backup` as a child we can kill. */
function startBackup(sandbox: Sandbox, kind: string): ResultPromise {
  return execa(process.execPath, [join(PROJECT_ROOT, 'src/cli/main.ts'), 'backup', kind, '--config', sandbox.configPath], { reject: false });
}

/** Every chunk file in the repository is named by some manifest (nothing orphaned). */
async function assertNoOrphans(sandbox: Sandbox): Promise<void> {
  const referenced = new Set<string>();
  for (const name of await sandbox.manifests()) {
    const m = await sandbox.readManifest<{ chain: string; artifacts: { chunks: { id: string }[] }[] }>(name.replace(/\.json$/, ''));
    for (const a of m.artifacts) for (const c of a.chunks) referenced.add(`${m.chain}/${c.id}`);
  }
  const chainsDir = join(sandbox.repoPath, 'chains');
  for (const chain of await readdir(chainsDir)) {
    for (const prefix of await readdir(join(chainsDir, chain))) {
      for (const id of await readdir(join(chainsDir, chain, prefix))) assert.ok(referenced.has(`${chain}/${id}`), `orphan chunk ${chain}/${id}`);
    }
  }
  assert.deepEqual(await readdir(join(sandbox.repoPath, 'tmp')), [], 'no temp files left');
}

describe('crash safety', () => {
  let cluster: PgCluster;
  const sandboxes: Sandbox[] = [];
  const sandbox = async (options: { databases?: string[]; extraYaml?: string; repoPath?: string } = {}) => {
    const s = await makeSandbox(postgresSourceYaml(cluster, { databases: options.databases ?? ['big'], globals: false }), options);
    sandboxes.push(s);
    return s;
  };

  before(async () => {
    cluster = await startPgCluster();
    // Incompressible-ish rows: a dump of ~60 MB that takes long enough to be killed mid-way.
    await cluster.psql('postgres', 'CREATE DATABASE big');
    await cluster.psql('big', "CREATE TABLE rows AS SELECT g AS id, md5(g::text) || md5((g * 31)::text) || md5((g * 7)::text) AS body FROM generate_series(1, 600000) g;");
  });

  after(async () => {
    for (const s of sandboxes) await s.cleanup();
    await cluster?.stop();
  });

  test('kill -9 during a full backup: no manifest, run marked interrupted, leftovers cleaned, next backup fine', async () => {
    const s = await sandbox();
    const child = startBackup(s, '--full');
    await waitFor('the first chunks on disk', async () => (await countFiles(join(s.repoPath, 'chains'))) >= 3, 30_000, 10);
    child.kill('SIGKILL');
    await child;
    assert.deepEqual(await s.manifests(), [], 'a killed backup has no manifest');
    assert.ok((await countFiles(join(s.repoPath, 'chains'))) >= 3, 'it had written chunks');

    const history = await s.json<RunJson[]>(['history']);
    assert.equal(history.value[0]!.status, 'interrupted');
    assert.match(history.value[0]!.error!, /killed or crashed/);
    assert.match(history.stderr, /was interrupted: its process is gone/);

    const next = await s.run(['backup', '--full']);
    assert.equal(next.code, 0, next.stderr);
    await assertNoOrphans(s);
    const restored = await s.run(['restore', next.stdout.trim(), '--target-db', 'big_after_kill']);
    assert.equal(restored.code, 0, restored.stderr);
    assert.deepEqual((await snapshotDatabase(cluster, 'big_after_kill')).tables, (await snapshotDatabase(cluster, 'big')).tables);
    await cluster.psql('postgres', 'DROP DATABASE big_after_kill');
  });

  test('kill -9 during an incremental: the chunks it added to the chain are collected, older backups intact', async () => {
    const s = await sandbox();
    const full = await s.run(['backup', '--full']);
    assert.equal(full.code, 0, full.stderr);
    await cluster.psql('big', "UPDATE rows SET body = upper(body) WHERE id % 3 = 0");
    const child = startBackup(s, '--incremental');
    const [manifest] = await s.manifests();
    const chainCount = async () => countFiles(join(s.repoPath, 'chains'));
    const before = await chainCount();
    await waitFor('new chunks of the incremental', async () => (await chainCount()) >= before + 3, 30_000, 10);
    child.kill('SIGKILL');
    await child;
    assert.deepEqual(await s.manifests(), [manifest]);
    const next = await s.run(['backup', '--incremental']);
    assert.equal(next.code, 0, next.stderr);
    await assertNoOrphans(s);
    const deep = await s.run(['verify', '--all', '--deep']);
    assert.equal(deep.code, 0, deep.stdout);
    await cluster.psql('big', "UPDATE rows SET body = lower(body) WHERE id % 3 = 0");
  });

  test('a stalled source is aborted after stall_timeout and recorded as stalled', async () => {
    const s = await sandbox({ extraYaml: 'stall_timeout: 2s' });
    // Another session holds an exclusive lock: pg_dump waits for it and produces nothing.
    const locker = execa(join(cluster.binDir, 'psql'), ['-X', '-h', cluster.socketDir, '-p', String(cluster.port), '-U', 'postgres', '-d', 'big'], {
      input: 'BEGIN; LOCK TABLE rows IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);',
      reject: false,
    });
    try {
      await waitFor('the lock', async () => (await cluster.psql('big', "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'rows'::regclass")) === '1');
      const started = Date.now();
      const result = await s.run(['backup', '--full']);
      assert.equal(result.code, 1);
      assert.ok(Date.now() - started < 20_000, 'it did not wait for the lock to go away');
      assert.match(result.stderr, /main\/db\/big made no progress for 2 s \(stall_timeout\): backup aborted/);
      const history = await s.json<RunJson[]>(['history']);
      assert.equal(history.value[0]!.status, 'stalled');
      assert.deepEqual(await s.manifests(), []);
      assert.equal(await countFiles(join(s.repoPath, 'chains')), 0);
    } finally {
      // Killing psql leaves its backend asleep with the lock: end the backend itself.
      await cluster.psql('postgres', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()");
      await locker;
    }
  });

  test('two writers at once: the second fails naming the holder, or waits for it with lock_timeout', async () => {
    const s = await sandbox();
    const first = startBackup(s, '--full');
    await waitFor('the writer lock', async () => existsSync(join(s.repoPath, 'locks', 'writer.lock')));
    const second = await s.run(['backup', '--full']);
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`repository locked by pid ${first.pid} on .* since \\d{4}-.* \\(backup --full\\)`));
    assert.equal((await first).exitCode, 0);

    const patient = await sandbox({ extraYaml: 'lock_timeout: 2m' });
    const a = startBackup(patient, '--full');
    await waitFor('the writer lock', async () => existsSync(join(patient.repoPath, 'locks', 'writer.lock')));
    const b = await patient.run(['backup', '--incremental']);
    assert.equal(b.code, 0, b.stderr);
    assert.equal((await a).exitCode, 0);
    assert.equal((await patient.manifests()).length, 2);
    const deep = await patient.run(['verify', '--all', '--deep']);
    assert.equal(deep.code, 0, deep.stdout);
  });

  describe('on a small filesystem', () => {
    let mountPoint: string;
    let mounted = false;
    before(async () => {
      mountPoint = join(tmpdir(), `stackback-small-${process.pid}`);
      await mkdir(mountPoint, { recursive: true });
      const result = await execa('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mountPoint], { reject: false });
      mounted = result.exitCode === 0;
    });
    after(async () => {
      if (mounted) await execa('umount', [mountPoint], { reject: false });
      await rm(mountPoint, { recursive: true, force: true });
    });


    test('a backup that cannot fit is refused before it starts, with both numbers', async (t) => {
      if (!mounted) return t.skip('mounting a tmpfs needs root (CAP_SYS_ADMIN); this machine refused it');
      const s = await sandbox({ repoPath: join(mountPoint, 'too-small') });
      const result = await s.run(['backup', '--full']);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /not enough free space for this backup in .*too-small: \d+ bytes free, about \d+ bytes needed \(the size of the data to back up, uncompressed\)/);
      assert.deepEqual(await s.manifests(), []);
    });

    test('a disk that fills up during a backup fails it clearly, leaves no manifest and frees what it wrote', async (t) => {
      if (!mounted) return t.skip('mounting a tmpfs needs root (CAP_SYS_ADMIN); this machine refused it');
      await cluster.psql('postgres', 'CREATE DATABASE smalldb');
      await cluster.psql('smalldb', "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g;");
      const s = await makeSandbox(postgresSourceYaml(cluster, { databases: ['smalldb'], globals: false }), { repoPath: join(mountPoint, 'fills-up') });
      sandboxes.push(s);
      assert.equal((await s.run(['backup', '--full'])).code, 0);
      assert.equal((await s.run(['backup', '--incremental'])).code, 0); // the estimate for the next incremental: tiny
      const usedBefore = await countFiles(join(s.repoPath, 'chains'));
      // Now the database grows far beyond the filesystem (random text barely compresses).
      await cluster.psql('smalldb', "INSERT INTO t SELECT g, string_agg(md5((g * 1000 + i)::text), '') FROM generate_series(20001, 80000) g, generate_series(1, 20) i GROUP BY g;");
      const result = await s.run(['backup', '--incremental']);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /disk is full \(ENOSPC\)/);
      assert.equal((await s.manifests()).length, 2, 'no manifest for the failed backup');
      assert.equal(await countFiles(join(s.repoPath, 'chains')), usedBefore, 'the chunks it wrote were freed');
      assert.deepEqual(await readdir(join(s.repoPath, 'tmp')), []);
      const history = await s.json<RunJson[]>(['history']);
      assert.equal(history.value[0]!.status, 'failed');
      await cluster.psql('postgres', 'DROP DATABASE smalldb');
    });
  });
});
