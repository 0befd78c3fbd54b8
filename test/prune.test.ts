// Retention applied to a real repository: dry runs change nothing, prune removes what the
// policy says and collects chunks, and no sequence of backups, deletes, prunes and kills
// ever leaves a remaining backup unrestorable.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { snapshotDatabase, type DatabaseSnapshot } from './support/pg-fixture.ts';
import { makeSandbox, postgresSourceYaml, PROJECT_ROOT, type Sandbox } from './support/stackback.ts';

const RETENTION = `retention: { keep_last: 2, keep_hourly: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0, keep_yearly: 0, keep_within: 0s, keep_full: 1, gc_grace: 0s, pre_restore_days: 3 }`;

interface PruneJson {
  dry_run: boolean;
  decisions: { name: string; keep: boolean; reasons: string[] }[];
  removed: string[];
  freed_bytes: number;
  chains_removed: string[];
  safety_copies: { name: string; dropped: boolean }[];
}

/** Every file of the repository with the sha256 of its bytes. */
async function repositoryDigest(dir: string): Promise<Record<string, string>> {
  const digest: Record<string, string> = {};
  const walk = async (folder: string) => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else digest[path.slice(dir.length)] = createHash('sha256').update(await readFile(path)).digest('hex');
    }
  };
  await walk(dir);
  return digest;
}

/** Chunk files that no manifest of the repository names. */
async function unreferencedChunks(sandbox: Sandbox): Promise<string[]> {
  const manifests = join(sandbox.repoPath, 'manifests');
  const referenced = new Set<string>();
  for (const name of await readdir(manifests)) {
    const m = await sandbox.readManifest<{ artifacts: { chunks: { id: string }[] }[] }>(name.replace(/\.json$/, ''));
    for (const a of m.artifacts) for (const c of a.chunks) referenced.add(c.id);
  }
  const files: string[] = [];
  for (const chain of await readdir(join(sandbox.repoPath, 'chains'))) {
    for (const prefix of await readdir(join(sandbox.repoPath, 'chains', chain))) files.push(...(await readdir(join(sandbox.repoPath, 'chains', chain, prefix))));
  }
  return files.filter((f) => !referenced.has(f));
}

/** A small seeded PRNG (mulberry32): the random sequence is the same on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('prune', () => {
  let cluster: PgCluster;
  let sandbox: Sandbox;

  before(async () => {
    cluster = await startPgCluster();
    await cluster.psql('postgres', 'CREATE DATABASE app');
    await cluster.psql('app', "CREATE TABLE items AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS body FROM generate_series(1, 60000) g");
    sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['app'], globals: false }), { extraYaml: RETENTION });
  });

  after(async () => {
    await sandbox?.cleanup();
    await cluster?.stop();
  });

  const change = (n: number) => cluster.psql('app', `UPDATE items SET body = md5(body || '${n}') WHERE id % 50 = ${n % 50}`);

  test('a dry run prints every decision with its reason and changes nothing', async () => {
    for (const [i, kind] of ['--full', '--incremental', '--incremental', '--full', '--incremental'].entries()) {
      await change(i);
      assert.equal((await sandbox.run(['backup', kind])).code, 0);
    }
    const before = await repositoryDigest(sandbox.repoPath);
    const dry = await sandbox.json<PruneJson>(['prune', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.value.decisions.length, 5);
    const list = (await sandbox.json<{ name: string }[]>(['list'])).value.map((b) => b.name);
    const [b0, b1, b2, b3, b4] = list;
    const decision = new Map(dry.value.decisions.map((d) => [d.name, d]));
    assert.deepEqual(decision.get(b4!)!.reasons, ['newest successful backup', 'last 1/2']);
    assert.deepEqual(decision.get(b3!)!.reasons, ['last 2/2', 'full 1/1']);
    for (const name of [b0, b1, b2]) assert.deepEqual([decision.get(name!)!.keep, decision.get(name!)!.reasons], [false, ['no rule keeps it']]);
    assert.deepEqual(await repositoryDigest(sandbox.repoPath), before, 'the repository is byte-identical');
    const text = await sandbox.run(['prune', '--dry-run']);
    assert.match(text.stdout, new RegExp(`${b0} +full +ok +\\S+ +REMOVE +no rule keeps it`));
    assert.match(text.stdout, /dry run: 3 backup\(s\) would be removed; nothing was changed/);
  });

  test('prune removes what the policy says, frees their chunks, and what remains restores', async () => {
    const list = (await sandbox.json<{ name: string; chain: string }[]>(['list'])).value;
    const result = await sandbox.json<PruneJson>(['prune']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.value.removed.sort(), list.slice(0, 3).map((b) => b.name).sort());
    assert.ok(result.value.freed_bytes > 0);
    assert.deepEqual(result.value.chains_removed, [list[0]!.chain], 'the first chain lost all its backups');
    assert.equal(existsSync(join(sandbox.repoPath, 'chains', list[0]!.chain)), false);
    assert.deepEqual((await sandbox.json<{ name: string }[]>(['list'])).value.map((b) => b.name), list.slice(3).map((b) => b.name));
    const history = await sandbox.json<{ kind: string; status: string }[]>(['history']);
    assert.deepEqual([history.value[0]!.kind, history.value[0]!.status], ['prune', 'ok']);
    const deep = await sandbox.run(['verify', '--all', '--deep']);
    assert.equal(deep.code, 0, deep.stdout);
  });

  test('old restore safety databases are dropped after pre_restore_days, recent ones kept', async () => {
    // Marked as a stackback safety copy, as a swap restore marks it (only those are ever dropped).
    const marker = `stackback:safety-copy ${JSON.stringify({ db: 'app_pre_restore_20200101_000000', host: hostname(), pid: 1 })}`;
    await cluster.psql('postgres', `CREATE DATABASE app_pre_restore_20200101_000000; COMMENT ON DATABASE app_pre_restore_20200101_000000 IS '${marker}';`);
    const recent = `app_pre_restore_${new Date().toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15)}`;
    await cluster.psql('postgres', `CREATE DATABASE ${recent}`);
    const dry = await sandbox.json<PruneJson>(['prune', '--dry-run']);
    assert.deepEqual(dry.value.safety_copies.map((c) => [c.name, c.dropped]), [['app_pre_restore_20200101_000000', false]]);
    const result = await sandbox.json<PruneJson>(['prune']);
    assert.deepEqual(result.value.safety_copies.map((c) => [c.name, c.dropped]), [['app_pre_restore_20200101_000000', true]]);
    const names = await cluster.psql('postgres', "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'app_pre_restore_%'");
    assert.equal(names, recent);
  });

  test('a prune killed half-way leaves every remaining backup whole, and the next prune finishes the job', async () => {
    const s = await makeSandbox(postgresSourceYaml(cluster, { databases: ['app'], globals: false }), { extraYaml: RETENTION });
    try {
      for (let i = 0; i < 14; i++) {
        await change(100 + i);
        assert.equal((await s.run(['backup', i === 0 ? '--full' : '--incremental'])).code, 0);
      }
      const manifests = join(s.repoPath, 'manifests');
      const total = (await readdir(manifests)).length;
      const child = execa(process.execPath, [join(PROJECT_ROOT, 'src/cli/main.ts'), 'prune', '--config', s.configPath], { reject: false });
      // Freeze it the moment its deletions show (it is collecting chunks then), then kill it.
      while ((await readdir(manifests)).length === total) await sleep(1);
      child.kill('SIGSTOP');
      const unreferencedAtKill = (await unreferencedChunks(s)).length;
      child.kill('SIGKILL');
      await child;
      assert.ok((await readdir(manifests)).length < total, 'the prune had started deleting');
      if (unreferencedAtKill === 0) console.log('note: the prune had already finished its collection when it was frozen');
      const deep = await s.run(['verify', '--all', '--deep']);
      assert.equal(deep.code, 0, deep.stdout);
      const next = await s.json<PruneJson>(['prune']);
      assert.equal(next.code, 0, next.stderr);
      assert.equal((await readdir(manifests)).length, 3, 'the last 2 and the one full');
      assert.equal((await s.run(['verify', '--all', '--deep'])).code, 0);
      assert.deepEqual(await unreferencedChunks(s), [], 'every chunk file is named by a remaining manifest');
    } finally {
      await s.cleanup();
    }
  });

  test('random backups, deletes, prunes and SIGKILLs never leave a remaining backup unrestorable', async () => {
    const s = await makeSandbox(postgresSourceYaml(cluster, { databases: ['app'], globals: false }), { extraYaml: RETENTION });
    const rand = random(20261126);
    const recorded = new Map<string, DatabaseSnapshot['tables']>();
    const cli = (args: string[]) => execa(process.execPath, [join(PROJECT_ROOT, 'src/cli/main.ts'), ...args, '--config', s.configPath], { reject: false });
    try {
      for (let step = 0; step < 14; step++) {
        const names = (await s.json<{ name: string }[]>(['list'])).value.map((b) => b.name);
        const roll = rand();
        if (roll < 0.35 || names.length === 0) {
          await change(step);
          const kind = rand() < 0.3 ? '--full' : '--incremental';
          const result = await s.json<{ backup: string }>(['backup', kind]);
          assert.equal(result.code, 0, result.stderr);
          recorded.set(result.value.backup, (await snapshotDatabase(cluster, 'app')).tables);
        } else if (roll < 0.5) {
          const victim = names[Math.floor(rand() * names.length)]!;
          assert.equal((await s.run(['delete', victim])).code, 0);
        } else if (roll < 0.65) {
          assert.equal((await s.run(['prune'])).code, 0);
        } else {
          // Kill a backup or a prune at a random moment.
          const child = cli(rand() < 0.5 ? ['prune'] : ['backup', '--incremental']);
          await sleep(Math.floor(rand() * 400));
          child.kill('SIGKILL');
          await child;
        }
        // The invariant: every backup the repository still lists reads back whole.
        const remaining = (await s.json<{ name: string }[]>(['list'])).value.map((b) => b.name);
        if (remaining.length > 0) {
          const deep = await s.run(['verify', '--all', '--deep']);
          assert.equal(deep.code, 0, `step ${step}: ${deep.stdout}`);
        }
        const known = remaining.filter((n) => recorded.has(n));
        if (step % 4 === 3 && known.length > 0) {
          const pick = known[Math.floor(rand() * known.length)]!;
          const restore = await s.run(['restore', pick, '--target-db', 'app_invariant']);
          assert.equal(restore.code, 0, restore.stderr);
          assert.deepEqual((await snapshotDatabase(cluster, 'app_invariant')).tables, recorded.get(pick));
          await cluster.psql('postgres', 'DROP DATABASE app_invariant');
        }
      }
      // A last prune finishes whatever a killed one left, and leaves no unreferenced chunk behind.
      assert.equal((await s.run(['prune'])).code, 0);
      const deep = await s.run(['verify', '--all', '--deep']);
      assert.equal(deep.code, 0, deep.stdout);
    } finally {
      await s.cleanup();
    }
  });
});
