// Files restores and chunk decoding, tried as an attacker would: symlinks planted on disk
// where a restore will write, setuid files restored by a user who is not root, an archive
// whose entries lie outside the paths its source backs up, and a chunk that is a zstd bomb.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, statSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import { DEFAULT_CHUNKER } from '../src/repository/chunker.ts';
import { decodeObject, decodeObjectSync } from '../src/repository/object-codec.ts';
import { createArchive } from '../src/sources/files/archive.ts';
import { extractArchive, scanArchive } from '../src/sources/files/extract.ts';
import { filesSourceYaml, makeSandbox, PROJECT_ROOT, type Sandbox } from './support/stackback.ts';

const isRoot = process.getuid?.() === 0;

describe('files restores do not write through links, and keep privileges out', () => {
  let dir: string;
  let app: string;
  let outside: string;
  let sandbox: Sandbox;
  let backup: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stackback-sec-files-'));
    app = join(dir, 'srv', 'app');
    outside = join(dir, 'other');
    await mkdir(join(app, 'uploads', 'nested'), { recursive: true });
    await mkdir(outside);
    await writeFile(join(app, 'uploads', 'nested', 'photo.jpg'), 'a photo');
    await writeFile(join(app, 'run-as-owner'), '#!/bin/sh\n', { mode: 0o755 });
    await chmod(join(app, 'run-as-owner'), 0o4755);
    await writeFile(join(app, 'run-as-group'), '#!/bin/sh\n', { mode: 0o755 });
    await chown(join(app, 'run-as-group'), 65534, 65534);
    await chmod(join(app, 'run-as-group'), 0o2755);
    // Empty: Linux clears these bits when a user who is not root writes to a file, but this one is never written to.
    await writeFile(join(app, 'empty-setuid'), '');
    await chmod(join(app, 'empty-setuid'), 0o4755);
    await mkdir(join(app, 'shared'));
    await chmod(join(app, 'shared'), 0o2775);
    sandbox = await makeSandbox('', { filesYaml: filesSourceYaml([app]) });
    const result = await sandbox.run(['backup', '--full']);
    assert.equal(result.code, 0, result.stderr);
    backup = result.stdout.trim();
  });

  after(async () => {
    await sandbox?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  test('--target-dir: a symlink planted where a restored folder goes is refused, nothing lands outside', async () => {
    const target = join(dir, 'target');
    const first = app.split('/')[1]!;
    await mkdir(target);
    // ln -s <outside> <target>/tmp: the restored tree would be unpacked into <outside>.
    await symlink(outside, join(target, first));
    const restore = await sandbox.run(['restore', backup, '--target-dir', target]);
    assert.notEqual(restore.code, 0);
    assert.match(restore.stderr, new RegExp(`through ${join(target, first)}, a symlink on disk`));
    assert.deepEqual(await readdir(outside), [], 'nothing was written outside the target');
  });

  test('in place: a folder below the backed-up path swapped for a symlink is refused, nothing lands outside', async () => {
    const uploads = join(app, 'uploads');
    await rename(uploads, `${uploads}.real`);
    await symlink(outside, uploads);
    try {
      const restore = await sandbox.run(['restore', backup, '--yes', '--path', join(uploads, 'nested')]);
      assert.notEqual(restore.code, 0);
      assert.match(restore.stderr, new RegExp(`${uploads} is a symlink on disk`));
      assert.deepEqual(await readdir(outside), [], 'nothing was written or moved outside');
    } finally {
      await rm(uploads);
      await rename(`${uploads}.real`, uploads);
    }
  });

  test('in place: an archive with entries outside the paths its manifest recorded is refused whole', async () => {
    // The manifest now claims the source backed up only uploads/.
    const file = join(sandbox.repoPath, 'manifests', `${backup}.json`);
    const original = await readFile(file);
    const manifest = await sandbox.readManifest<{ artifacts: { kind: string; meta: { paths: string[] } }[] }>(backup);
    manifest.artifacts.find((a) => a.kind === 'files_tar')!.meta.paths = [join(app, 'uploads')];
    await sandbox.writeManifest(backup, manifest);
    try {
      await writeFile(join(app, 'run-as-owner'), 'changed since the backup');
      const restore = await sandbox.run(['restore', backup, '--yes']);
      assert.notEqual(restore.code, 0);
      assert.match(restore.stderr, /outside the paths this source backed up/);
      assert.equal(await readFile(join(app, 'run-as-owner'), 'utf8'), 'changed since the backup', 'nothing was written');
      assert.ok(!(await readdir(app)).some((n) => n.includes('pre-restore')) && !(await readdir(join(app, '..'))).some((n) => n.includes('pre-restore')), 'nothing was moved aside');
    } finally {
      await writeFile(file, original);
    }
  });

  test('as root, setuid and setgid bits come back with the owners', { skip: isRoot ? false : 'needs root' }, async () => {
    const target = join(dir, 'as-root');
    const restore = await sandbox.run(['restore', backup, '--target-dir', target]);
    assert.equal(restore.code, 0, restore.stderr);
    const restored = join(target, app.slice(1));
    assert.equal((await lstat(join(restored, 'run-as-owner'))).mode & 0o7777, 0o4755);
    assert.equal((await lstat(join(restored, 'empty-setuid'))).mode & 0o7777, 0o4755);
    assert.equal((await lstat(join(restored, 'shared'))).mode & 0o7777, 0o2775);
    // Given to its owner after it was written (which clears setgid): the bit is set again.
    const group = await lstat(join(restored, 'run-as-group'));
    assert.deepEqual([group.uid, group.gid, group.mode & 0o7777], [65534, 65534, 0o2755]);
  });

  test('a user who is not root unpacks setuid and setgid files without those bits', { skip: isRoot && existsSync('/usr/bin/setpriv') ? false : 'needs root and setpriv to unpack as nobody' }, async () => {
    const work = join(dir, 'as-nobody');
    await mkdir(work);
    const { stream } = createArchive({ paths: [app], exclude: [], oneFileSystem: true });
    await pipeline(stream, createWriteStream(join(work, 'files.tar')));
    await chown(work, 65534, 65534);
    await chmod(dir, 0o755);
    // The real extraction code, in a process running as nobody.
    const script = [
      `import { createReadStream } from 'node:fs';`,
      `import { extractArchive, scanArchive } from '${join(PROJECT_ROOT, 'src/sources/files/extract.ts')}';`,
      `const options = { root: '${join(work, 'out')}' };`,
      `const open = () => createReadStream('${join(work, 'files.tar')}');`,
      `await extractArchive(open, options, await scanArchive(open(), options));`,
    ].join('\n');
    await writeFile(join(work, 'unpack.ts'), script);
    execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, join(work, 'unpack.ts')], { stdio: 'pipe' });
    const restored = join(work, 'out', app.slice(1));
    for (const [name, mode] of [['run-as-owner', 0o755], ['run-as-group', 0o755], ['empty-setuid', 0o755], ['shared', 0o775]] as const) {
      assert.equal((await lstat(join(restored, name))).mode & 0o7777, mode, name);
    }
  });
});

describe('chunk decoding is bounded', () => {
  const TAG_ZSTD = 0x01;
  let bomb: Buffer;

  before(async () => {
    // 1 GiB of zeros as one zstd frame of a few tens of KiB, compressed as a stream.
    const parts: Buffer[] = [];
    const zeros = Buffer.alloc(1024 * 1024);
    const compressor = zlib.createZstdCompress();
    compressor.on('data', (part: Buffer) => parts.push(part));
    const done = new Promise((resolve) => compressor.on('end', resolve));
    for (let i = 0; i < 1024; i++) if (!compressor.write(zeros)) await new Promise((resolve) => compressor.once('drain', resolve));
    compressor.end();
    await done;
    bomb = Buffer.concat([Buffer.of(TAG_ZSTD), ...parts]);
  });

  const grows = async (decode: () => unknown) => {
    const before = process.memoryUsage().rss;
    await assert.rejects(async () => decode(), /inflates to more than 1048576 bytes \(recorded size 1048576\)/);
    return process.memoryUsage().rss - before;
  };

  test('a zstd bomb fails with a clear error without being inflated, on the thread pool and in the restore worker', async () => {
    assert.ok(bomb.length < 1024 * 1024, `the bomb is ${bomb.length} bytes`);
    const grown = Math.max(await grows(() => decodeObject(bomb, 1024 * 1024, DEFAULT_CHUNKER.maxSize)), await grows(() => decodeObjectSync(bomb, 1024 * 1024, DEFAULT_CHUNKER.maxSize)));
    assert.ok(grown < 128 * 1024 * 1024, `memory grew by ${grown} bytes`);
  });

  test('a recorded size above the largest chunk does not lift the cap', async () => {
    await assert.rejects(decodeObject(bomb, 2 ** 30, DEFAULT_CHUNKER.maxSize), /inflates to more than 4194304 bytes/);
    await assert.rejects(decodeObject(bomb, 2 ** 30, 2 * 1024 * 1024), /inflates to more than 2097152 bytes/, 'the repository\'s own largest chunk is the cap');
  });

  test('a restore from a repository whose chunk was swapped for a bomb fails clearly', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stackback-bomb-'));
    const sandbox = await makeSandbox('', { filesYaml: filesSourceYaml([join(dir, 'tree')]), repository: 'encryption: none' });
    try {
      await mkdir(join(dir, 'tree'));
      await writeFile(join(dir, 'tree', 'small.txt'), 'small');
      const result = await sandbox.run(['backup', '--full', '--json']);
      assert.equal(result.code, 0, result.stderr);
      const name = (JSON.parse(result.stdout) as { backup: string }).backup;
      // A crafted repository (format 1: plain JSON manifests): the object and what the manifest says of its stored bytes agree.
      const file = join(sandbox.repoPath, 'manifests', `${name}.json`);
      const manifest = JSON.parse(await readFile(file, 'utf8')) as { chain: string; artifacts: { kind: string; chunks: { id: string; stored_size: number; stored_sha256: string }[] }[] };
      const ref = manifest.artifacts.find((a) => a.kind === 'files_tar')!.chunks[0]!;
      const chunk = ref.id;
      const object = join(sandbox.repoPath, 'chains', manifest.chain, chunk.slice(0, 2), chunk);
      await chmod(object, 0o644);
      await writeFile(object, bomb);
      Object.assign(ref, { stored_size: bomb.length, stored_sha256: createHash('sha256').update(bomb).digest('hex') });
      await writeFile(file, JSON.stringify(manifest));
      const restore = await sandbox.run(['restore', name, '--target-dir', join(dir, 'out')]);
      assert.notEqual(restore.code, 0);
      assert.match(restore.stderr, new RegExp(`chunk ${chunk} .*cannot be decoded: it inflates to more than`));
    } finally {
      await sandbox.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** A tar of `paths` made by the backup's own archive code. */
async function tarOf(paths: string[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of createArchive({ paths, exclude: [], oneFileSystem: true }).stream) parts.push(Buffer.from(part as Uint8Array));
  return Buffer.concat(parts);
}

/** The archive in 64 KiB slices; before each slice, `act` may do something to the tree on disk (once it returns true it is not called again). */
function slowly(tarball: Buffer, act: () => boolean): () => AsyncIterable<Uint8Array> {
  return () =>
    (async function* () {
      let done = false;
      for (let at = 0; at < tarball.length; at += 64 * 1024) {
        if (!done) done = act();
        yield tarball.subarray(at, at + 64 * 1024);
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
}

/** A shell command run as nobody: the user who owns a folder inside the restored tree. */
const asNobody = (command: string) => execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', command], { stdio: 'pipe' });

describe('files restores as root, racing a user who owns a folder inside the tree', { skip: isRoot && existsSync('/usr/bin/setpriv') ? false : 'needs root and setpriv' }, () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stackback-sec-race-'));
    await chmod(dir, 0o755);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a just-restored setuid file swapped for a symlink: the link target does not get its mode', async () => {
    const src = join(dir, 'mode', 'src');
    await mkdir(join(src, 'd'), { recursive: true });
    await writeFile(join(src, 'd', 'evil'), '#!/bin/sh\n');
    await chmod(join(src, 'd', 'evil'), 0o4755);
    await writeFile(join(src, 'd', 'zbig'), Buffer.alloc(16 * 1024 * 1024));
    await chown(join(src, 'd'), 65534, 65534);
    const tarball = await tarOf([src]);
    const victim = join(dir, 'mode', 'victim');
    await writeFile(victim, 'root owns this\n', { mode: 0o644 });
    await chmod(victim, 0o644);
    // The user's folder is there already (a restore into a tree they own a folder of).
    const target = join(dir, 'mode', 'out');
    const d = join(target, src.slice(1), 'd');
    await mkdir(d, { recursive: true });
    await chown(d, 65534, 65534);
    let swapped = false;
    const open = slowly(tarball, () => {
      if (!existsSync(join(d, 'evil'))) return false;
      asNobody(`mv '${d}/evil' '${d}/evil.moved' && ln -s '${victim}' '${d}/evil'`);
      return (swapped = true);
    });
    const options = { root: target };
    await extractArchive(open, options, await scanArchive(slowly(tarball, () => true)(), options)).catch(() => undefined);
    assert.ok(swapped && (await lstat(join(d, 'evil'))).isSymbolicLink(), 'the swap happened while the restore ran');
    assert.equal((await lstat(victim)).mode & 0o7777, 0o644, 'the symlink target keeps its mode');
    assert.equal((await lstat(join(d, 'evil.moved'))).mode & 0o7777, 0o4755, 'the restored file itself got its mode');
  });

  test('in place: a folder checked earlier in the restore, swapped for a symlink by its parent folder owner, is not written through', async () => {
    const app = join(dir, 'inplace', 'srv', 'app');
    const outside = join(dir, 'inplace', 'other');
    const c = join(app, 'u', 'c');
    await mkdir(c, { recursive: true });
    await mkdir(outside);
    await writeFile(join(c, 'a.txt'), 'a');
    await writeFile(join(c, 'big'), Buffer.alloc(16 * 1024 * 1024));
    await writeFile(join(c, 'big2'), Buffer.alloc(4 * 1024 * 1024));
    await writeFile(join(c, 'z.txt'), 'written after the swap');
    await chown(join(app, 'u'), 65534, 65534);
    await chown(c, 65534, 65534);
    await chown(outside, 65534, 65534);
    const tarball = await tarOf([app]);
    // The files were deleted; the folders are still there. Restore them in place.
    for (const name of ['a.txt', 'big', 'big2', 'z.txt']) await rm(join(c, name));
    const options = { root: '/', recorded: [app] };
    let swapped = false;
    const open = slowly(tarball, () => {
      // Once big is written: c was checked for every entry so far.
      if (!existsSync(join(c, 'big')) || statSync(join(c, 'big')).size < 16 * 1024 * 1024) return false;
      asNobody(`mv '${c}' '${c}.old' && ln -s '${outside}' '${c}'`);
      return (swapped = true);
    });
    const scan = await scanArchive(slowly(tarball, () => true)(), options);
    assert.deepEqual(scan.problems, []);
    // Refused where tar would write the next entry through the link (or, for a file tar had opened before the swap, where its owner and mode were to be set).
    await assert.rejects(extractArchive(open, options, scan), new RegExp(`through ${c}, a symlink on disk|${c}/[^:]+: .*swapped while it was written`));
    assert.ok(swapped, 'the swap happened while the restore ran');
    assert.deepEqual(await readdir(outside), [], 'nothing was written through the link');
  });
});
