// Faults that must never silently stop, fork or poison the backups: a backup disk that is
// not mounted, locks that outlive a reboot, a damaged chunk, a full disk, sources that yield
// nothing, and root running the CLI against a daemon-owned repository.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { QdrantClient } from '@qdrant/js-client-rest';
import { execa } from 'execa';
import { currentBootId, processStartTime } from '../src/process-identity.ts';
import { daemonRequest } from '../src/daemon/client.ts';
import { controlSockets, controlYaml, startDaemon } from './support/daemon.ts';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { startQdrantStandin, type QdrantStandin } from './support/qdrant-standin.ts';
import { filesSourceYaml, makeSandbox, postgresSourceYaml, qdrantSourceYaml, type Sandbox } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';

interface StatusJson {
  healthy: boolean;
  warnings: string[];
}

/** A files sandbox whose control sockets are its own, so a daemon started by a test never meets another. */
async function sandboxOf(data: string, extraYaml = ''): Promise<Sandbox> {
  const sandbox = await makeSandbox('', { filesYaml: filesSourceYaml([data]) });
  await writeFile(sandbox.configPath, `${controlYaml(controlSockets(sandbox.dir))}\n${extraYaml}\n${await readFile(sandbox.configPath, 'utf8')}`);
  return sandbox;
}

async function filesTree(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'stackback-faults-data-'));
  await mkdir(join(dir, 'docs'));
  for (let i = 0; i < 20; i++) await writeFile(join(dir, 'docs', `file-${i}.txt`), `document ${i}\n`.repeat(2000 + i * 100));
  return dir;
}

describe('a backup disk that is not mounted', () => {
  let data: string;
  let sandbox: Sandbox;
  before(async () => {
    data = await filesTree();
    sandbox = await sandboxOf(data);
  });
  after(async () => {
    await sandbox.cleanup();
    await rm(data, { recursive: true, force: true });
  });

  test('is refused by name, nothing is created in its place, and status shows it', async () => {
    const first = await sandbox.run(['backup', '--full']);
    assert.equal(first.code, 0, first.stderr);
    // The disk goes away: its mount point stays behind, empty.
    await rename(sandbox.repoPath, `${sandbox.repoPath}.away`);
    await mkdir(sandbox.repoPath);

    const backup = await sandbox.run(['backup', '--full']);
    assert.equal(backup.code, 1);
    assert.match(backup.stderr, new RegExp(`repository ${sandbox.repoPath} not found \\(no repo.json\\) — is its disk mounted\\?`));
    assert.deepEqual(await readdir(sandbox.repoPath), [], 'nothing was created on the empty mount point');

    const status = await sandbox.json<StatusJson>(['status']);
    assert.equal(status.value.healthy, false);
    assert.ok(status.value.warnings.some((w) => /not found \(no repo.json\) — is its disk mounted\?/.test(w)), status.value.warnings.join('\n'));
    for (const command of [['verify', '--all'], ['prune'], ['list']]) {
      const refused = await sandbox.run(command);
      if (command[0] === 'list') continue; // list reads the catalog only
      assert.equal(refused.code, 1, `${command.join(' ')}: ${refused.stderr}`);
      assert.match(refused.stderr, /is its disk mounted\?/, command.join(' '));
    }
    assert.deepEqual(await readdir(sandbox.repoPath), []);

    // Neither does the daemon start on it.
    const daemon = await execa(process.execPath, [join(import.meta.dirname, '../src/cli/main.ts'), 'daemon', '--config', sandbox.configPath], { reject: false, timeout: 30_000 });
    assert.equal(daemon.exitCode, 1, daemon.stderr);
    assert.match(daemon.stderr, /is its disk mounted\?/);
    assert.deepEqual(await readdir(sandbox.repoPath), []);

    // `init` does not paper over it either, without --force.
    const init = await sandbox.run(['init']);
    assert.equal(init.code, 1);
    assert.match(init.stderr, /init --force/);
    assert.deepEqual(await readdir(sandbox.repoPath), []);

    // The disk comes back: everything works again, with the old backups.
    await rm(sandbox.repoPath, { recursive: true });
    await rename(`${sandbox.repoPath}.away`, sandbox.repoPath);
    const again = await sandbox.run(['backup']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await sandbox.manifests()).length, 2);
  });

  test('another repository at the path is refused; catalog rebuild adopts it on purpose', async () => {
    const other = await sandboxOf(data);
    try {
      assert.equal((await other.run(['init'])).code, 0);
      const original = `${sandbox.repoPath}.original`;
      await rename(sandbox.repoPath, original);
      await rename(other.repoPath, sandbox.repoPath);
      // Its key comes along (the catalog rebuild below opens it).
      await rename(`${sandbox.repoPath}.key`, `${original}.key`);
      await rename(`${other.repoPath}.key`, `${sandbox.repoPath}.key`);
      const backup = await sandbox.run(['backup']);
      assert.equal(backup.code, 1);
      assert.match(backup.stderr, /but the catalog .* indexes repository .* — is the right disk mounted\?/);
      assert.deepEqual(await sandbox.manifests(), [], 'nothing was written into the other repository');
      // The operator's word makes it this catalog's repository.
      const rebuild = await sandbox.run(['catalog', 'rebuild']);
      assert.equal(rebuild.code, 0, rebuild.stderr);
      const adopted = await sandbox.run(['backup']);
      assert.equal(adopted.code, 0, adopted.stderr);
      assert.equal((await sandbox.manifests()).length, 1);
      await rm(original, { recursive: true });
    } finally {
      await other.cleanup();
    }
  });

  test('a fresh install whose repository folder is empty (a mount point without its disk) waits for init', async () => {
    const fresh = await sandboxOf(data);
    try {
      await mkdir(fresh.repoPath);
      const backup = await fresh.run(['backup']);
      assert.equal(backup.code, 1);
      assert.match(backup.stderr, /is an empty folder — is its disk mounted\?/);
      assert.deepEqual(await readdir(fresh.repoPath), []);
      assert.equal((await fresh.run(['init'])).code, 0);
      assert.equal((await fresh.run(['backup'])).code, 0);
    } finally {
      await fresh.cleanup();
    }
  });

  test('init makes a repository once; init --force starts anew when the old one is lost for good', async () => {
    const fresh = await sandboxOf(data);
    try {
      const init = await fresh.json<{ id: string; path: string }>(['init']);
      assert.equal(init.code, 0, init.stderr);
      assert.equal(JSON.parse(await readFile(join(fresh.repoPath, 'repo.json'), 'utf8')).id, init.value.id);
      const twice = await fresh.run(['init']);
      assert.equal(twice.code, 1);
      assert.match(twice.stderr, /a repository already exists at/);
      assert.equal((await fresh.run(['backup'])).code, 0);
      await rm(fresh.repoPath, { recursive: true });
      const forced = await fresh.json<{ id: string; forgot_backups: number }>(['init', '--force']);
      assert.equal(forced.code, 0, forced.stderr);
      assert.notEqual(forced.value.id, init.value.id);
      assert.equal(forced.value.forgot_backups, 1);
      assert.equal((await fresh.run(['backup', '--full'])).code, 0);
    } finally {
      await fresh.cleanup();
    }
  });
});

describe('locks after a reboot', () => {
  let data: string;
  let sandbox: Sandbox;
  let unrelated: ReturnType<typeof execa>;
  before(async () => {
    data = await filesTree();
    sandbox = await sandboxOf(data);
    assert.equal((await sandbox.run(['init'])).code, 0);
    // A live process that has nothing to do with stackback: after a reboot, its pid could be the one in an old lock.
    unrelated = execa('sleep', ['600']);
  });
  after(async () => {
    unrelated.kill('SIGKILL');
    await unrelated.catch(() => undefined);
    await sandbox.cleanup();
    await rm(data, { recursive: true, force: true });
  });

  const writeLock = (name: string, identity: Record<string, unknown>) =>
    writeFile(join(sandbox.repoPath, 'locks', name), JSON.stringify({ host: os.hostname(), started_at: '2026-01-01T00:00:00.000Z', command: 'backup --full', ...identity }));

  test('a lock with this host name and a live pid but another boot id is taken over', async () => {
    await writeLock('writer.lock', { pid: unrelated.pid, boot_id: '00000000-0000-4000-8000-000000000000', start_time: processStartTime(unrelated.pid!) });
    const backup = await sandbox.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    assert.equal(existsSync(join(sandbox.repoPath, 'locks', 'writer.lock')), false);
  });

  test('a lock whose pid was reused by another process in this boot is taken over (daemon lock too)', async () => {
    await writeLock('writer.lock', { pid: unrelated.pid, boot_id: currentBootId(), start_time: '1' });
    const backup = await sandbox.run(['backup']);
    assert.equal(backup.code, 0, backup.stderr);
    await writeLock('daemon.lock', { pid: unrelated.pid, boot_id: currentBootId(), start_time: '1', command: 'daemon' });
    const daemon = execa(process.execPath, [join(import.meta.dirname, '../src/cli/main.ts'), 'daemon', '--config', sandbox.configPath], { reject: false, all: true });
    // The daemon takes the lock over and runs until stopped; a refusal would end it at once.
    const ended = await Promise.race([daemon.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 3000))]);
    daemon.kill('SIGTERM');
    const result = await daemon;
    assert.equal(ended, false, `the daemon refused to start:\n${result.all}`);
    assert.doesNotMatch(String(result.all), /another stackback daemon uses this repository/);
  });

  test('a lock held by a live process of this boot is respected', async () => {
    await writeLock('writer.lock', { pid: unrelated.pid, boot_id: currentBootId(), start_time: processStartTime(unrelated.pid!) });
    const backup = await sandbox.run(['backup']);
    assert.equal(backup.code, 1);
    assert.match(backup.stderr, new RegExp(`repository locked by pid ${unrelated.pid}`));
    await rm(join(sandbox.repoPath, 'locks', 'writer.lock'));
  });

  test('a run left running by a pid of an earlier boot is marked interrupted', async () => {
    const db = new Database(sandbox.catalogPath);
    const id = Number(
      db
        .prepare("INSERT INTO runs (kind, started_at, status, pid, host, boot_id, start_time, detail) VALUES ('backup', ?, 'running', ?, ?, 'an-earlier-boot', '1', '{}')")
        .run(new Date().toISOString(), unrelated.pid, os.hostname()).lastInsertRowid,
    );
    db.close();
    const history = await sandbox.json<{ id: number; status: string }[]>(['history']);
    assert.equal(history.value.find((r) => r.id === id)?.status, 'interrupted');
  });
});

describe('a damaged chunk', () => {
  let data: string;
  let sandbox: Sandbox;
  before(async () => {
    data = await mkdtemp(join(tmpdir(), 'stackback-faults-chunks-'));
    for (let i = 0; i < 8; i++) await writeFile(join(data, `blob-${i}.bin`), randomBytes(512 * 1024));
    sandbox = await sandboxOf(data);
    assert.equal((await sandbox.run(['backup', '--full'])).code, 0);
  });
  after(async () => {
    await sandbox.cleanup();
    await rm(data, { recursive: true, force: true });
  });

  interface ManifestJson {
    name: string;
    chain: string;
    artifacts: { kind: string; chunks: { id: string }[] }[];
  }
  const newestManifest = async (): Promise<ManifestJson> => {
    const names = (await sandbox.manifests()).sort();
    return sandbox.readManifest<ManifestJson>(names.at(-1)!.replace(/\.json$/, ''));
  };
  const chunkFile = (m: ManifestJson, index: number) => {
    const id = m.artifacts.find((a) => a.kind === 'files_tar')!.chunks[index]!.id;
    return join(sandbox.repoPath, 'chains', m.chain, id.slice(0, 2), id);
  };

  /** Restores `name` beside the original and compares every file byte for byte. */
  const restoresIntact = async (name: string) => {
    const target = join(sandbox.dir, `restored-${name}`);
    const restore = await sandbox.run(['restore', name, '--source', 'app-files', '--target-dir', target]);
    assert.equal(restore.code, 0, restore.stderr);
    for (const file of await readdir(data)) assert.ok((await readFile(join(target, data, file))).equals(await readFile(join(data, file))), file);
  };

  test('once verify finds it, the next backup stores it anew and is fully restorable', async () => {
    const full = await newestManifest();
    assert.ok(full.artifacts.find((a) => a.kind === 'files_tar')!.chunks.length >= 3, 'the archive spans several chunks');
    // A flipped byte keeps the size: only reading it back finds it.
    const file = chunkFile(full, 1);
    const bytes = await readFile(file);
    bytes[bytes.length >> 1]! ^= 0xff;
    await writeFile(file, bytes);
    const verify = await sandbox.run(['verify', full.name, '--deep']);
    assert.equal(verify.code, 1);

    const next = await sandbox.run(['backup']);
    assert.equal(next.code, 0, next.stderr);
    const incremental = await newestManifest();
    assert.notEqual(incremental.name, full.name);
    const deep = await sandbox.run(['verify', incremental.name, '--deep']);
    assert.equal(deep.code, 0, deep.stdout + deep.stderr);
    await restoresIntact(incremental.name);
  });

  test('a dedup hit whose chunk object is gone writes it anew (no verify needed)', async () => {
    const last = await newestManifest();
    await rm(chunkFile(last, 2));
    const next = await sandbox.run(['backup']);
    assert.equal(next.code, 0, next.stderr);
    const incremental = await newestManifest();
    const deep = await sandbox.run(['verify', incremental.name, '--deep']);
    assert.equal(deep.code, 0, deep.stdout + deep.stderr);
    await restoresIntact(incremental.name);
  });
});

describe('a full disk', () => {
  let mountPoint: string;
  let mounted = false;
  let data: string;
  before(async () => {
    mountPoint = join(tmpdir(), `stackback-faults-small-${process.pid}`);
    await mkdir(mountPoint, { recursive: true });
    mounted = (await execa('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mountPoint], { reject: false })).exitCode === 0;
    data = await mkdtemp(join(tmpdir(), 'stackback-faults-full-'));
  });
  after(async () => {
    if (mounted) await execa('umount', [mountPoint], { reject: false });
    await rm(mountPoint, { recursive: true, force: true });
    await rm(data, { recursive: true, force: true });
  });

  test('a scheduled backup refused for lack of space is followed by a prune, and the next one fits', async (t) => {
    if (!mounted) return t.skip('mounting a tmpfs needs root (CAP_SYS_ADMIN); this machine refused it');
    const retention = 'retention: { keep_last: 1, keep_hourly: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0, keep_within: "0s", keep_full: 1, gc_grace: "0s" }';
    const schedule = 'schedule: { full: "*/4 * * * * *", incremental: "off", verify: "off", prune: after_backup, catch_up: false }';
    const sandbox = await sandboxOf(data, `${retention}\n${schedule}\ntimezone: UTC`);
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace(sandbox.repoPath, join(mountPoint, 'repo')));
    try {
      // Two fulls of 6 MiB that does not compress fill 12 of the 16 MiB: the next full cannot fit.
      for (let i = 0; i < 2; i++) {
        await writeFile(join(data, 'blob.bin'), randomBytes(6 * 1024 * 1024));
        const full = await sandbox.run(['backup', '--full']);
        assert.equal(full.code, 0, full.stderr);
      }
      const daemon = await startDaemon(sandbox.configPath, controlSockets(sandbox.dir));
      try {
        const history = async () => (await sandbox.json<{ kind: string; status: string; error: string | null; detail: Record<string, unknown> | null }[]>(['history'])).value;
        const deadline = Date.now() + 60_000;
        let runs = await history();
        // Refused for space, then pruned, then the next scheduled full fits again (history is newest first).
        const pruneForSpace = () => runs.findIndex((r) => r.kind === 'prune' && r.detail?.trigger === 'disk_full');
        while (pruneForSpace() < 0 || !runs.slice(0, pruneForSpace()).some((r) => r.kind === 'backup' && r.status === 'ok')) {
          assert.ok(Date.now() < deadline, `no successful full after the prune:\n${JSON.stringify(runs, null, 1)}\n${daemon.output()}`);
          await new Promise((resolve) => setTimeout(resolve, 500));
          runs = await history();
        }
        const refused = runs.slice(pruneForSpace()).find((r) => r.kind === 'backup')!;
        assert.equal(refused.status, 'failed');
        assert.match(refused.error ?? '', /not enough free space/);
        const prune = runs[pruneForSpace()]!;
        assert.equal(prune.status, 'ok');
        assert.equal((prune.detail?.removed as string[]).length, 1, 'the older full was pruned; the newest successful one was kept');
      } finally {
        await daemon.stop();
      }
    } finally {
      await sandbox.cleanup();
      await rm(join(mountPoint, 'repo'), { recursive: true, force: true });
    }
  });

  test('status names a full disk and what the prune after it did', async (t) => {
    if (!mounted) return t.skip('mounting a tmpfs needs root (CAP_SYS_ADMIN); this machine refused it');
    const retention = 'retention: { keep_last: 5, keep_full: 5, gc_grace: "0s" }';
    const sandbox = await sandboxOf(data, `${retention}\nschedule: { full: "*/4 * * * * *", incremental: "off", verify: "off", prune: after_backup, catch_up: false }`);
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace(sandbox.repoPath, join(mountPoint, 'repo2')));
    try {
      for (let i = 0; i < 2; i++) {
        await writeFile(join(data, 'blob.bin'), randomBytes(5 * 1024 * 1024));
        assert.equal((await sandbox.run(['backup', '--full'])).code, 0);
      }
      const daemon = await startDaemon(sandbox.configPath, controlSockets(sandbox.dir));
      try {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const status = await sandbox.json<StatusJson>(['status']);
          // Retention keeps both fulls here: nothing can be freed, and status says so.
          if (status.value.warnings.some((w) => /failed for lack of space and the retention policy keeps every backup/.test(w))) break;
          assert.ok(Date.now() < deadline, `status never named the full disk:\n${status.value.warnings.join('\n')}\n${daemon.output()}`);
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      } finally {
        await daemon.stop();
      }
    } finally {
      await sandbox.cleanup();
      await rm(join(mountPoint, 'repo2'), { recursive: true, force: true });
    }
  });
});

describe('a backup that protects nothing, or less than before', () => {
  let standin: QdrantStandin;
  let client: QdrantClient;
  let dataA: string;
  let dataB: string;
  let empty: string;
  const cleanups: (() => Promise<void>)[] = [];
  before(async () => {
    standin = await startQdrantStandin();
    client = new QdrantClient({ url: standin.url, checkCompatibility: false });
    dataA = await filesTree();
    dataB = await filesTree();
    empty = await mkdtemp(join(tmpdir(), 'stackback-faults-empty-'));
  });
  after(async () => {
    for (const cleanup of cleanups) await cleanup();
    await standin.stop();
    for (const dir of [dataA, dataB, empty]) await rm(dir, { recursive: true, force: true });
  });

  /** A sandbox with the given sources (YAML of `sources:` entries by kind). */
  const sandboxWith = async (options: { qdrant?: boolean; files: [string, string][]; extraYaml?: string }): Promise<Sandbox> => {
    const sandbox = await makeSandbox('', {
      ...(options.qdrant ? { qdrantYaml: qdrantSourceYaml(standin.url) } : {}),
      filesYaml: options.files.map(([name, path]) => filesSourceYaml([path], { name })).join('\n'),
      extraYaml: `${controlYaml(controlSockets(join(tmpdir(), 'unused')))}\nschedule: { full: "0 3 * * 0", incremental: "0 * * * *", catch_up: false }\n${options.extraYaml ?? ''}`,
    });
    cleanups.push(() => sandbox.cleanup());
    return sandbox;
  };
  const warnings = async (sandbox: Sandbox) => (await sandbox.json<StatusJson>(['status'])).value.warnings;

  test('collections that disappear, then none left, and an empty file tree are named on the run and in status', async () => {
    await client.createCollection('docs', { vectors: { size: 4, distance: 'Cosine' } });
    await client.upsert('docs', { wait: true, points: [{ id: 1, vector: [1, 0, 0, 0], payload: { a: 1 } }] });
    await client.createCollection('images', { vectors: { size: 2, distance: 'Dot' } });
    await client.upsert('images', { wait: true, points: [{ id: 1, vector: [1, 0], payload: { b: 2 } }] });
    const sandbox = await sandboxWith({ qdrant: true, files: [['app-files', dataA], ['uploads', empty]] });
    const first = await sandbox.json<{ sources: { name: string; coverage?: string[] }[] }>(['backup', '--full']);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.value.sources.find((s) => s.name === 'vectors')?.coverage, undefined);
    assert.deepEqual(first.value.sources.find((s) => s.name === 'uploads')?.coverage, [`no files under ${empty}: is a disk not mounted there?`]);
    assert.ok((await warnings(sandbox)).includes(`source uploads: no files under ${empty}: is a disk not mounted there? (backup ${(await sandbox.manifests())[0]!.replace(/\.json$/, '')})`));

    await client.deleteCollection('images');
    const second = await sandbox.run(['backup']);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /source vectors: 1 of the 2 artifact\(s\) of backup full-\S+ are gone: vectors\/collection\/images/);
    assert.ok((await warnings(sandbox)).some((w) => /^source vectors: 1 of the 2 artifact\(s\) of backup full-\S+ are gone: vectors\/collection\/images/.test(w)));

    await client.deleteCollection('docs');
    const third = await sandbox.run(['backup']);
    assert.equal(third.code, 0, third.stderr);
    const now = await warnings(sandbox);
    assert.ok(now.some((w) => /^source vectors: nothing to back up: its configuration matched no database, collection or path/.test(w)), now.join('\n'));
    assert.ok(now.some((w) => /^source vectors: 1 of the 1 artifact\(s\) of backup incr-\S+ are gone: vectors\/collection\/docs/.test(w)), now.join('\n'));
  });

  test('a backup of one source does not make another look fresh, or push its backups out of retention', async () => {
    const sandbox = await sandboxWith({
      files: [['app-a', dataA], ['app-b', dataB]],
      extraYaml: 'retention: { keep_last: 1, keep_hourly: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0, keep_within: "0s", keep_full: 1 }',
    });
    assert.equal((await sandbox.run(['backup', '--full'])).code, 0);
    // That backup of both sources was taken three days ago.
    const db = new Database(sandbox.catalogPath);
    const old = new Date(Date.now() - 3 * 86_400_000).toISOString();
    db.prepare('UPDATE backups SET started_at = ?, finished_at = ?').run(old, old);
    db.close();
    for (let i = 0; i < 2; i++) assert.equal((await sandbox.run(['backup', '--full', '--source', 'app-a'])).code, 0);

    const now = await warnings(sandbox);
    assert.ok(now.some((w) => /^source app-b: last successful backup is 3 days old, schedule expects 1 h$/.test(w)), now.join('\n'));
    assert.ok(!now.some((w) => w.startsWith('source app-a:')), now.join('\n'));

    const prune = await sandbox.json<{ decisions: { name: string; keep: boolean; reasons: string[] }[] }>(['prune', '--dry-run']);
    const [newestA, olderA, both] = prune.value.decisions;
    assert.equal(newestA!.keep, true);
    assert.equal(olderA!.keep, false, 'the older backup of app-a alone is not kept');
    assert.equal(both!.keep, true, 'the only backup of app-b is kept');
    assert.ok(both!.reasons.some((r) => r.includes('app-b')), both!.reasons.join('; '));
  });

  test('a restore safety copy is not the chain scheduled incrementals join', async () => {
    await client.createCollection('notes', { vectors: { size: 2, distance: 'Dot' } });
    await client.upsert('notes', { wait: true, points: [{ id: 7, vector: [0, 1], payload: { n: 'x' } }] });
    const sandbox = await sandboxWith({ qdrant: true, files: [['app-files', dataA]] });
    const full = await sandbox.json<{ backup: string; chain: string }>(['backup', '--full']);
    assert.equal(full.code, 0, full.stderr);
    const restore = await sandbox.json<{ results: { safety_backup?: string }[] }>(['restore', full.value.backup, '--source', 'vectors', '--collection', 'notes', '--yes']);
    assert.equal(restore.code, 0, restore.stderr);
    assert.ok(restore.value.results.some((r) => r.safety_backup?.startsWith('prerestore-')));
    const incremental = await sandbox.json<{ kind: string; chain: string }>(['backup', '--incremental']);
    assert.equal(incremental.code, 0, incremental.stderr);
    assert.equal(incremental.value.kind, 'incremental');
    assert.equal(incremental.value.chain, full.value.chain);
  });
});

describe('root and a repository that belongs to the daemon user', () => {
  let data: string;
  let sandbox: Sandbox;
  before(async () => {
    data = await filesTree();
    await execa('chmod', ['-R', 'a+rX', data]);
    sandbox = await sandboxOf(data, 'schedule: { full: "off", incremental: "off", verify: "off", prune: "off", catch_up: false }');
    assert.equal((await sandbox.run(['backup', '--full'])).code, 0);
    // The daemon's user owns its state, as the systemd install makes it.
    await execa('chown', ['-R', 'nobody:nogroup', sandbox.dir]);
  });
  after(async () => {
    await sandbox.cleanup();
    await rm(data, { recursive: true, force: true });
  });

  const rootOwned = async () => (await execa('find', [sandbox.dir, '-uid', '0'])).stdout.trim();

  test('local commands run as root are refused and leave no root-owned file; as the owner they work', async () => {
    for (const command of [['backup'], ['list'], ['status'], ['verify', '--all'], ['init']]) {
      const result = await sandbox.run(command);
      assert.equal(result.code, 2, `${command.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /belongs to nobody: run as root, this command would leave root-owned files there/, command.join(' '));
      assert.match(result.stderr, /sudo -u nobody stackback/);
    }
    assert.equal(await rootOwned(), '', 'no file of the repository or catalog became root-owned');
    const cli = join(import.meta.dirname, '../src/cli/main.ts');
    const asOwner = await execa('runuser', ['-u', 'nobody', '--', process.execPath, cli, 'backup', '--config', sandbox.configPath], { reject: false });
    assert.equal(asOwner.exitCode, 0, asOwner.stderr);
    assert.equal(await rootOwned(), '');
  });

  test('with the daemon running as its user, root reads and submits through its sockets and leaves nothing root-owned', async () => {
    const cli = join(import.meta.dirname, '../src/cli/main.ts');
    const sockets = controlSockets(sandbox.dir);
    const daemon = execa('runuser', ['-u', 'nobody', '--', process.execPath, cli, 'daemon', '--config', sandbox.configPath], { reject: false, all: true });
    try {
      await waitFor('the daemon', async () => (await daemonRequest(sockets.socket, 'GET', '/api/backup/status', undefined, 1000).catch(() => undefined))?.status === 200);
      const name = (await readdir(join(sandbox.repoPath, 'manifests')))[0]!.replace(/\.json$/, '');
      for (const command of [['list'], ['show', name], ['history'], ['status'], ['backup']]) {
        const result = await sandbox.run(command);
        assert.ok(result.code === 0 || (command[0] === 'status' && result.code === 1), `${command.join(' ')}: ${result.code} ${result.stderr}`);
        assert.doesNotMatch(result.stderr, /belongs to nobody/, command.join(' '));
      }
      const history = await sandbox.json<{ kind: string; status: string }[]>(['history', '-n', '1']);
      assert.deepEqual(history.value.map((r) => [r.kind, r.status]), [['backup', 'ok']], 'the backup ran as a daemon job');
      assert.equal(await rootOwned(), '', 'no file of the repository or catalog became root-owned');
    } finally {
      daemon.kill('SIGTERM');
      await daemon;
    }
  });
});

describe('databases: all on a server with no database to back up', () => {
  let cluster: PgCluster;
  before(async () => {
    cluster = await startPgCluster();
    await cluster.psql('template1', 'DROP DATABASE postgres');
  });
  after(async () => {
    await cluster?.stop();
  });

  test('is named on the run and in status, even though the globals were stored', async () => {
    const sandbox = await makeSandbox(postgresSourceYaml(cluster, { extra: '      maintenance_db: template1' }), {
      extraYaml: `${controlYaml(controlSockets(join(tmpdir(), 'unused')))}\nschedule: { incremental: "0 * * * *", catch_up: false }`,
    });
    try {
      const backup = await sandbox.json<{ status: string; artifacts: number; sources: { name: string; coverage?: string[] }[] }>(['backup', '--full']);
      assert.equal(backup.code, 0, backup.stderr);
      assert.equal(backup.value.artifacts, 2, 'the globals and the copy of the catalog');
      assert.deepEqual(backup.value.sources[0]!.coverage, ['nothing to back up: its configuration matched no database, collection or path']);
      const status = await sandbox.json<StatusJson>(['status']);
      assert.ok(status.value.warnings.some((w) => w.startsWith('source main: nothing to back up')), status.value.warnings.join('\n'));
    } finally {
      await sandbox.cleanup();
    }
  });
});
