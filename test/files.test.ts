// The files source end to end: a tree with every kind of entry backed up, restored beside
// and in place, compared byte for byte with modes, mtimes and links; malicious archives
// refused; unreadable files named; the catalog brought back from a backup alone.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, chmod, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Header } from 'tar';
import { execa } from 'execa';
import { createArchive } from '../src/sources/files/archive.ts';
import { extractArchive, scanArchive } from '../src/sources/files/extract.ts';
import { filesSourceYaml, makeSandbox, PROJECT_ROOT, type Sandbox } from './support/stackback.ts';
import { writeIncompressibleFile } from './support/wait.ts';

interface Entry {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  mtimeMs: number;
  size: number;
  sha256?: string;
  target?: string;
  ino?: number;
}

/** Everything about a tree that a restore must bring back, keyed by relative path. */
async function describeTree(root: string): Promise<Record<string, Entry>> {
  const result: Record<string, Entry> = {};
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const full = join(dir, name);
      const key = rel ? `${rel}/${name}` : name;
      const info = await lstat(full);
      const base = { mode: info.mode & 0o7777, mtimeMs: Math.floor(info.mtimeMs / 1000), size: info.isFile() ? info.size : 0 };
      if (info.isSymbolicLink()) result[key] = { type: 'symlink', ...base, mtimeMs: 0, mode: 0, target: await readlink(full) };
      else if (info.isDirectory()) {
        result[key] = { type: 'dir', ...base };
        await walk(full, key);
      } else result[key] = { type: 'file', ...base, sha256: createHash('sha256').update(await readFile(full)).digest('hex') };
    }
  };
  await walk(root, '');
  return result;
}

interface CraftedEntry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link';
  data?: string;
  linkpath?: string;
}

/** A tar archive written header by header, so it can say what no honest tar writer would. */
async function* crafted(entries: CraftedEntry[]): AsyncGenerator<Uint8Array> {
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? '');
    const type = entry.type ?? 'File';
    const header = new Header({ path: entry.path, type, size: type === 'File' ? data.length : 0, mode: type === 'Directory' ? 0o755 : 0o644, mtime: new Date('2024-01-01T00:00:00Z'), linkpath: entry.linkpath ?? '', uid: 0, gid: 0 });
    const block = Buffer.alloc(512);
    header.encode(block);
    yield block;
    if (type === 'File' && data.length > 0) yield Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
  }
  yield Buffer.alloc(1024);
}

async function inode(path: string): Promise<number> {
  return (await lstat(path)).ino;
}

describe('files source', () => {
  let dir: string;
  let tree: string;
  let sandbox: Sandbox;
  let original: Record<string, Entry>;
  let backupName: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stackback-files-'));
    tree = join(dir, 'srv', 'app');
    await mkdir(join(tree, 'uploads', 'nested', 'deeper'), { recursive: true });
    await mkdir(join(tree, 'empty-folder'));
    await mkdir(join(tree, 'cache'));
    await writeFile(join(tree, 'uploads', 'binary.bin'), randomBytes(300_000));
    await writeFile(join(tree, 'uploads', 'empty.txt'), '');
    await writeFile(join(tree, 'uploads', 'nested', 'Grüße 日本語 🎉.txt'), 'non-ASCII name and text: Grüße 日本語 🎉\n');
    await writeFile(join(tree, 'uploads', 'nested', 'deeper', 'secret.key'), 'private\n', { mode: 0o600 });
    await writeFile(join(tree, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    await chmod(join(tree, 'uploads', 'nested', 'deeper', 'secret.key'), 0o600);
    await chmod(join(tree, 'run.sh'), 0o755);
    await symlink('uploads/binary.bin', join(tree, 'link-to-binary'));
    await symlink('/etc/hostname', join(tree, 'absolute-link'));
    await link(join(tree, 'uploads', 'binary.bin'), join(tree, 'hardlink.bin'));
    await writeFile(join(tree, 'scratch.tmp'), 'excluded');
    await writeFile(join(tree, 'cache', 'c.dat'), 'excluded');
    // A file over 100 MB, generated (random-ish, so it does not compress away).
    await writeIncompressibleFile(join(tree, 'big.dat'), 101);
    await utimes(join(tree, 'uploads', 'empty.txt'), new Date('2020-02-02T02:02:02Z'), new Date('2020-02-02T02:02:02Z'));
    await utimes(join(tree, 'uploads', 'nested'), new Date('2021-01-01T00:00:00Z'), new Date('2021-01-01T00:00:00Z'));
    original = await describeTree(tree);
    sandbox = await makeSandbox('', { filesYaml: filesSourceYaml([tree], { exclude: ['**/*.tmp', '**/cache/**'] }) });
  });

  after(async () => {
    await sandbox?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  // **/cache/** excludes what is in the folder; the (then empty) folder itself stays.
  const withoutExcluded = (entries: Record<string, Entry>) => Object.fromEntries(Object.entries(entries).filter(([k]) => !k.endsWith('.tmp') && !k.startsWith('cache/')));

  test('a tree with every kind of entry backs up, and restores into a new folder identical', async () => {
    const backup = await sandbox.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    backupName = backup.stdout.trim();
    const shown = await sandbox.json<{ artifacts: { id: string; kind: string; meta: { file_count: number; files: { path: string }[] } }[] }>(['show', backupName]);
    const files = shown.value.artifacts.find((a) => a.kind === 'files_tar')!;
    assert.ok(files.meta.files.some((f) => f.path.endsWith('Grüße 日本語 🎉.txt')));
    assert.ok(!files.meta.files.some((f) => f.path.endsWith('.tmp') || f.path.includes('/cache/')), 'excludes apply');
    assert.ok(shown.value.artifacts.some((a) => a.kind === 'catalog'), 'the catalog travels with every backup');

    const target = join(dir, 'restored');
    const restore = await sandbox.run(['restore', backupName, '--target-dir', target]);
    assert.equal(restore.code, 0, restore.stderr);
    const restored = await describeTree(join(target, tree.slice(1)));
    const expected = withoutExcluded(original);
    assert.deepEqual(Object.keys(restored).sort(), Object.keys(expected).sort());
    for (const [key, entry] of Object.entries(restored)) assert.deepEqual(entry, expected[key], key);
    const restoredTree = join(target, tree.slice(1));
    assert.equal(await inode(join(restoredTree, 'hardlink.bin')), await inode(join(restoredTree, 'uploads', 'binary.bin')), 'the hard link pair is one file again');
    assert.equal(await readlink(join(restoredTree, 'absolute-link')), '/etc/hostname');
  });

  test('an incremental of an unchanged tree re-stores almost nothing', async () => {
    const incr = await sandbox.json<{ stats: { bytes_read: number; bytes_stored: number } }>(['backup', '--incremental']);
    assert.equal(incr.code, 0, incr.stderr);
    assert.ok(incr.value.stats.bytes_stored < incr.value.stats.bytes_read * 0.05, `re-stored ${incr.value.stats.bytes_stored} of ${incr.value.stats.bytes_read} bytes`);
  });

  test('in place: the replaced path is moved aside, the backup comes back exactly', async () => {
    await writeFile(join(tree, 'run.sh'), 'tampered');
    await rm(join(tree, 'uploads', 'nested'), { recursive: true });
    await writeFile(join(tree, 'new-file'), 'appeared after the backup');
    const restore = await sandbox.json<{ results: { moved_aside: string[] }[] }>(['restore', backupName, '--yes']);
    assert.equal(restore.code, 0, restore.stderr);
    const aside = restore.value.results[0]!.moved_aside[0]!;
    assert.match(aside, /app\.pre-restore-\d{8}_\d{6}$/);
    assert.equal(await readFile(join(aside, 'run.sh'), 'utf8'), 'tampered');
    assert.deepEqual(await describeTree(tree), withoutExcluded(original));
  });

  test('in place, a folder directly under / gets its mode back', { skip: process.getuid?.() !== 0 ? 'writes a folder under / (needs root)' : false }, async () => {
    const top = `/stackback-test-top-${process.pid}`;
    await mkdir(join(top, 'inner'), { recursive: true, mode: 0o700 });
    await chmod(top, 0o700);
    await writeFile(join(top, 'inner', 'f.txt'), 'top-level');
    const s = await makeSandbox('', { filesYaml: filesSourceYaml([top]) });
    try {
      const backup = await s.run(['backup', '--full']);
      assert.equal(backup.code, 0, backup.stderr);
      await chmod(top, 0o755);
      await writeFile(join(top, 'inner', 'f.txt'), 'changed');
      const restore = await s.run(['restore', backup.stdout.trim(), '--yes']);
      assert.equal(restore.code, 0, restore.stderr);
      assert.equal((await lstat(top)).mode & 0o777, 0o700);
      assert.equal(await readFile(join(top, 'inner', 'f.txt'), 'utf8'), 'top-level');
    } finally {
      await s.cleanup();
      for (const entry of await readdir('/')) if (entry.startsWith(`stackback-test-top-${process.pid}`)) await rm(`/${entry}`, { recursive: true, force: true });
    }
  });

  test('--path restores one path only', async () => {
    const target = join(dir, 'only');
    const result = await sandbox.run(['restore', backupName, '--target-dir', target, '--path', join(tree, 'uploads', 'nested')]);
    assert.equal(result.code, 0, result.stderr);
    const restored = await describeTree(join(target, tree.slice(1)));
    assert.ok(Object.keys(restored).every((k) => k === 'uploads' || k.startsWith('uploads/nested')), Object.keys(restored).join(','));
    assert.ok(restored['uploads/nested/deeper/secret.key']);
  });

  test('a damaged chunk met while the restore lists the archive: refused with the damage named, nothing written', async () => {
    const manifest = await sandbox.readManifest<{ artifacts: { kind: string; chunks: { id: string }[] }[] }>(backupName);
    // The archive's first chunk: the listing meets it before the damage check has reported.
    const victimId = manifest.artifacts.find((a) => a.kind === 'files_tar')!.chunks[0]!.id;
    const victim = (await readdir(join(sandbox.repoPath, 'chains'), { recursive: true })).map((f) => join(sandbox.repoPath, 'chains', String(f))).find((f) => f.endsWith(victimId))!;
    const saved = await readFile(victim);
    const flipped = Buffer.from(saved);
    flipped[flipped.length >> 1]! ^= 0x10;
    await writeFile(victim, flipped);
    try {
      const target = join(dir, 'never-written');
      const result = await sandbox.run(['restore', backupName, '--target-dir', target, '--yes']);
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stderr, new RegExp(`cannot restore ${backupName}; nothing was touched:[^]*${victimId.slice(0, 12)}… damaged[^]*affecting app-files/files`));
      assert.equal(existsSync(target), false, 'nothing was written');
    } finally {
      await writeFile(victim, saved);
    }
  });

  test('a crafted archive that tries to escape is refused whole, and nothing is written outside', async () => {
    const target = join(dir, 'victim-target');
    const outside = join(dir, 'outside-marker');
    const cases: [string, CraftedEntry[]][] = [
      ['a ../ path', [{ path: 'ok.txt', data: 'fine' }, { path: '../outside-marker', data: 'escaped' }]],
      ['an absolute path', [{ path: outside, data: 'escaped' }]],
      ['a symlink out, then a file through it', [{ path: 'escape', type: 'SymbolicLink', linkpath: dir }, { path: 'escape/outside-marker', data: 'through a link' }]],
      ['a relative symlink out', [{ path: 'up', type: 'SymbolicLink', linkpath: '../../..' }]],
      ['a hard link out', [{ path: 'hard', type: 'Link', linkpath: '../outside-marker' }]],
      ['a hard link through an absolute symlink', [{ path: 'evil', type: 'SymbolicLink', linkpath: '/etc' }, { path: 'x', type: 'Link', linkpath: 'evil/hostname' }]],
    ];
    for (const [label, entries] of cases) {
      const scan = await scanArchive(crafted(entries), { root: target });
      assert.ok(scan.problems.length > 0, `${label}: refused`);
    }
    assert.equal(existsSync(outside), false, 'nothing was written outside the target');
    assert.equal(existsSync(target), false, 'nothing was written at all');
    // A clean archive passes the scan and unpacks.
    const clean: CraftedEntry[] = [{ path: 'a', type: 'Directory' }, { path: 'a/ok.txt', data: 'fine' }, { path: 'a/abs', type: 'SymbolicLink', linkpath: '/etc/hostname' }];
    assert.deepEqual((await scanArchive(crafted(clean), { root: target })).problems, []);
    await extractArchive(() => crafted(clean), { root: target }, await scanArchive(crafted(clean), { root: target }));
    assert.equal(await readFile(join(target, 'a', 'ok.txt'), 'utf8'), 'fine');
  });

  test('an unreadable file makes the backup partial and is named', { skip: process.getuid?.() === 0 && !existsSync('/usr/sbin/runuser') ? 'needs runuser to read as an unprivileged user' : false }, async () => {
    const locked = join(dir, 'locked');
    await mkdir(join(locked, 'data'), { recursive: true });
    await writeFile(join(locked, 'data', 'readable.txt'), 'fine');
    await writeFile(join(locked, 'data', 'no-access.txt'), 'secret', { mode: 0o000 });
    await chmod(join(locked, 'data', 'no-access.txt'), 0o000);
    const s = await makeSandbox('', { filesYaml: filesSourceYaml([locked]) });
    try {
      // Root reads every file: run this backup as `nobody`, for whom the file is unreadable.
      await execa('chmod', ['-R', 'a+rwX', s.dir]);
      await chmod(dir, 0o755);
      const run = (args: string[]) =>
        process.getuid?.() === 0
          ? execa('runuser', ['-u', 'nobody', '--', process.execPath, join(PROJECT_ROOT, 'src/cli/main.ts'), ...args, '--config', s.configPath], { reject: false })
          : execa(process.execPath, [join(PROJECT_ROOT, 'src/cli/main.ts'), ...args, '--config', s.configPath], { reject: false });
      const backup = await run(['backup', '--full']);
      assert.equal(backup.exitCode, 1, String(backup.stderr));
      assert.match(String(backup.stderr), /full backup partial/);
      assert.match(String(backup.stderr), /no-access\.txt/);
      const shown = await run(['show', String(backup.stdout).trim()]);
      assert.match(String(shown.stdout), /PARTIAL +app-files\/files: could not read .*no-access\.txt/);
    } finally {
      await s.cleanup();
    }
  });

  test('owners are recorded by name too, and restored by name where the id changed', { skip: process.getuid?.() !== 0 || !existsSync('/usr/sbin/useradd') ? 'needs root and useradd to create a user' : false }, async () => {
    const user = `sbtest${process.pid % 10000}`;
    const [oldId, newId] = [24000 + (process.pid % 1000), 25000 + (process.pid % 1000)];
    await execa('useradd', ['--system', '--no-create-home', '--uid', String(oldId), '--user-group', user]);
    const owned = join(dir, 'owned');
    const s = await makeSandbox('', { filesYaml: filesSourceYaml([owned]) });
    try {
      await mkdir(owned);
      await writeFile(join(owned, 'mine.txt'), 'belongs to the test user');
      await execa('chown', ['-R', `${user}:${user}`, owned]);
      const backup = await s.run(['backup', '--full']);
      assert.equal(backup.code, 0, backup.stderr);
      const shown = await s.json<{ artifacts: { kind: string; meta: { files: { path: string; uid: number; user?: string; group?: string }[] } }[] }>(['show', backup.stdout.trim()]);
      const entry = shown.value.artifacts.find((a) => a.kind === 'files_tar')!.meta.files.find((f) => f.path.endsWith('mine.txt'))!;
      assert.deepEqual([entry.uid, entry.user, entry.group], [oldId, user, user]);
      // On the "new machine" the same user has another id: the files follow the name.
      await execa('usermod', ['--uid', String(newId), user]);
      await execa('groupmod', ['--gid', String(newId), user]);
      const target = join(dir, 'owned-restored');
      const restore = await s.run(['restore', backup.stdout.trim(), '--target-dir', target]);
      assert.equal(restore.code, 0, restore.stderr);
      const info = await lstat(join(target, owned.slice(1), 'mine.txt'));
      assert.deepEqual([info.uid, info.gid], [newId, newId]);
    } finally {
      await execa('userdel', [user], { reject: false });
      await execa('groupdel', [user], { reject: false });
      await s.cleanup();
    }
  });

  test('a file written to while the backup reads it is named as a warning', async () => {
    const live = join(dir, 'live');
    await mkdir(live);
    await writeFile(join(live, 'growing.log'), randomBytes(8 * 1024 * 1024));
    const { stream, report } = createArchive({ paths: [live], exclude: [], oneFileSystem: true });
    let seen = 0;
    let appended = false;
    for await (const chunk of stream) {
      seen += chunk.length;
      if (!appended && seen > 1024 * 1024) {
        await appendFile(join(live, 'growing.log'), 'a line written during the backup\n');
        appended = true;
      }
    }
    assert.ok(appended);
    assert.ok(report.warnings.some((w) => /growing\.log: changed while the backup read it/.test(w)), report.warnings.join('\n'));
    assert.deepEqual(report.readErrors, [], 'a changed file does not make the backup partial');
  });

  test('files and folders that vanish while the tree is read are warnings, and the archive stays whole', async () => {
    const live = join(dir, 'vanishing');
    await mkdir(join(live, 'z-folder'), { recursive: true });
    for (let i = 0; i < 50; i++) await writeFile(join(live, `f${String(i).padStart(2, '0')}`), randomBytes(20_000));
    await writeFile(join(live, 'z-folder', 'inside'), 'gone with its folder');
    const { stream, report } = createArchive({ paths: [live], exclude: [], oneFileSystem: true });
    const archive: Buffer[] = [];
    let deleted = false;
    for await (const chunk of stream) {
      archive.push(Buffer.from(chunk));
      // The folder has been listed once its first file's bytes arrive: the later siblings and the subfolder go now.
      if (!deleted && Buffer.concat(archive).length > 20_000) {
        for (const name of await readdir(live)) if (name >= 'f10') await rm(join(live, name), { recursive: true });
        deleted = true;
      }
    }
    assert.ok(report.warnings.some((w) => w === `${join(live, 'f49')}: vanished while the backup ran`), report.warnings.join('\n'));
    assert.ok(report.warnings.some((w) => w === `${join(live, 'z-folder')}: vanished while the backup ran`), report.warnings.join('\n'));
    assert.deepEqual(report.readErrors, []);
    // The stream is a valid tar of exactly what was recorded, and unpacks.
    const target = join(dir, 'vanishing-restored');
    const scan = await scanArchive((async function* () { yield* archive; })(), { root: target });
    assert.deepEqual(scan.problems, []);
    assert.equal(scan.entries, report.files.length);
    await extractArchive(async function* () { yield* archive; }, { root: target }, scan);
    const stored = report.files.filter((f) => f.type === 'File');
    assert.ok(stored.length >= 1 && stored.length < 50, `${stored.length} files stored`);
    for (const file of stored) assert.equal(createHash('sha256').update(await readFile(join(target, file.path))).digest('hex'), file.sha256, file.path);
  });

  test('catalog restore on a machine with only the repository gives the same list', async () => {
    const before = await sandbox.json<unknown[]>(['list']);
    const history = (await sandbox.json<unknown[]>(['history'])).value.length;
    const names = (before.value as { name: string }[]).map((b) => b.name);
    // A new machine: the repository was copied, the catalog is lost.
    await rm(sandbox.catalogPath);
    await rm(`${sandbox.catalogPath}-wal`, { force: true });
    await rm(`${sandbox.catalogPath}-shm`, { force: true });
    const restored = await sandbox.json<{ backups: number; runs: number }>(['catalog', 'restore', names.at(-1)!]);
    assert.equal(restored.code, 0, restored.stderr);
    assert.deepEqual((await sandbox.json<unknown[]>(['list'])).value, before.value);
    assert.ok(restored.value.runs >= history - 3, 'the run history came back too');
    const again = await sandbox.run(['catalog', 'restore', names.at(-1)!]);
    assert.equal(again.code, 2, 'an existing catalog is not replaced without --force');
  });
});

describe('files source coverage', () => {
  test('one of two configured paths empty (a disk not mounted there): that path is named, the other is not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stackback-files-coverage-'));
    const full = join(dir, 'full');
    const empty = join(dir, 'mnt-empty');
    await mkdir(join(full, 'sub'), { recursive: true });
    await writeFile(join(full, 'sub', 'file.txt'), 'data');
    await mkdir(join(empty, 'lost+found'), { recursive: true });
    const sandbox = await makeSandbox('', { filesYaml: filesSourceYaml([full, empty], { name: 'two' }) });
    try {
      const backup = await sandbox.json<{ sources: { name: string; coverage?: string[] }[] }>(['backup', '--full']);
      assert.equal(backup.code, 0, backup.stderr);
      assert.deepEqual(backup.value.sources.find((s) => s.name === 'two')?.coverage, [`no files under ${empty}: is a disk not mounted there?`]);
    } finally {
      await sandbox.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
