// The repository layer on its own: chunking, storing and reading back, integrity checks, locks.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { execa } from 'execa';
import { type ArtifactData, checkStoredChunks, openArtifact, readArtifact } from '../src/repository/artifact-reader.ts';
import { BackupWriter } from '../src/repository/backup-writer.ts';
import { Chunker, DEFAULT_CHUNKER } from '../src/repository/chunker.ts';
import { SEAL_OVERHEAD } from '../src/repository/crypto.ts';
import { acquireReaderLock, acquireWriterLock } from '../src/repository/lock.ts';
import { newBackupName, validateBackupName } from '../src/repository/manifest.ts';
import { releaseMemory } from '../src/repository/release-memory.ts';
import { Repository } from '../src/repository/repository.ts';
import { chunkKey } from '../src/repository/storage.ts';
import { WRITE_THREAD_NICE } from '../src/repository/write-threads.ts';
import { LocalStorage } from '../src/repository/storage/local.ts';
import { type FeedOptions, runTool, startArtifactFeed, type ToolOptions } from '../src/sources/tool.ts';
import { storeData } from './support/store.ts';
import { QUESTION, swapCase, TRAILER } from './support/swapcase-sink.ts';

/** Text-like data with repetition, like a dump: compresses, and has no accidental structure. */
function dumpLikeData(bytes: number, seed = 1): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = seed; size < bytes; i++) {
    const line = `${i}\t${createHash('md5').update(String(i)).digest('hex')}\tstatus-${i % 7}\t${(i * 7919) % 100000}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

function chunkAll(data: Buffer, seed: string, feed = 65536): Buffer[] {
  const chunker = new Chunker({ ...DEFAULT_CHUNKER, seed });
  const chunks: Buffer[] = [];
  // The chunker lends views of its own buffer: copies are kept.
  for (let offset = 0; offset < data.length; offset += feed) for (const chunk of chunker.push(data.subarray(offset, offset + feed))) chunks.push(Buffer.from(chunk));
  const last = chunker.finish();
  return last ? [...chunks, Buffer.from(last)] : chunks;
}

async function* inPieces(data: Buffer, size = 100_000): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < data.length; offset += size) yield data.subarray(offset, offset + size);
}

describe('chunker', () => {
  const data = dumpLikeData(12 * 1024 * 1024);

  test('chunks reassemble to the input, within the size bounds, whatever the feed size', () => {
    const chunks = chunkAll(data, 'seed');
    assert.deepEqual(Buffer.concat(chunks), data);
    for (const chunk of chunks.slice(0, -1)) {
      assert.ok(chunk.length >= DEFAULT_CHUNKER.minSize && chunk.length <= DEFAULT_CHUNKER.maxSize, `chunk of ${chunk.length}`);
    }
    const avg = data.length / chunks.length;
    assert.ok(avg > 512 * 1024 && avg < 2.5 * 1024 * 1024, `average chunk ${avg}`);
    assert.deepEqual(chunkAll(data, 'seed', 7777).map((c) => c.length), chunks.map((c) => c.length), 'cut points do not depend on how bytes arrive');
  });

  test('an insertion near the start changes only the chunks around it', () => {
    const before = new Set(chunkAll(data, 'seed').map((c) => createHash('sha256').update(c).digest('hex')));
    const edited = Buffer.concat([data.subarray(0, 1000), Buffer.from('INSERTED ROW\n'), data.subarray(1000)]);
    const after = chunkAll(edited, 'seed').map((c) => createHash('sha256').update(c).digest('hex'));
    const changed = after.filter((id) => !before.has(id)).length;
    assert.ok(changed <= 2, `${changed} of ${after.length} chunks changed`);
  });

  test('the seed changes the cut points', () => {
    assert.notDeepEqual(chunkAll(data, 'a').map((c) => c.length), chunkAll(data, 'b').map((c) => c.length));
  });
});

/** A fresh repository (encrypted unless `encrypt` is false) in a temp folder for the enclosing describe block, removed after it. */
function tempRepository(prefix: string, encrypt = true): { dir: string; repo: Repository; chunkFile: (chain: string, id: string) => string } {
  const temp = {
    /** The file behind a chunk, to damage it. */
    chunkFile: (chain: string, id: string) => new LocalStorage(join(temp.dir, 'repo')).fileOf(chunkKey(chain, id)),
  } as { dir: string; repo: Repository; chunkFile: (chain: string, id: string) => string };
  before(async () => {
    temp.dir = await mkdtemp(join(tmpdir(), prefix));
    temp.repo = await Repository.create(join(temp.dir, 'repo'), { key: { keyFile: join(temp.dir, 'repo.key'), passphraseFile: undefined }, encrypt });
  });
  after(() => rm(temp.dir, { recursive: true, force: true }));
  return temp;
}

for (const encrypt of [true, false]) describe(`repository store and read back (${encrypt ? 'encrypted, format 2' : 'plain, format 1'})`, () => {
  const temp = tempRepository('stackback-repo-', encrypt);

  test('an artifact round-trips byte for byte, compressed, with each chunk stored once', async () => {
    // The same 4 MiB four times: content-defined cuts realign within the repeats (whatever the repository's seed).
    const block = dumpLikeData(4 * 1024 * 1024);
    const data = Buffer.concat([block, block, block, block]);
    const { stored, stats } = await storeData(temp.repo, 'chain-a', inPieces(data), { compressionLevel: 3 });
    assert.equal(stored.size, data.length);
    assert.equal(stored.sha256, createHash('sha256').update(data).digest('hex'));
    assert.ok(stats.bytesStored < data.length / 2, `compressed and deduplicated: ${stats.bytesStored} of ${data.length}`);
    assert.ok(stats.chunksNew < stored.chunks.length, 'the repeats reuse chunks');
    const artifact = { id: 'x', source: 's', kind: 'pg_dump' as const, target: 't', meta: {}, ...stored };
    assert.deepEqual(Buffer.concat(await Array.fromAsync(readArtifact(temp.repo, 'chain-a', artifact, 'content'))), data);
    assert.deepEqual(await checkStoredChunks(temp.repo, 'chain-a', stored.chunks, { hash: true }), []);
  });

  test('incompressible data is stored raw, never larger than it was (plus one tag byte, and nonce and tag when sealed)', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const { stored, stats } = await storeData(temp.repo, 'chain-b', inPieces(data), { compressionLevel: 3 });
    assert.equal(stats.bytesStored, data.length + stored.chunks.length * (1 + (encrypt ? SEAL_OVERHEAD : 0)));
  });

  test('a flipped byte is found by the stored-bytes check and by reading back', async () => {
    const data = dumpLikeData(2 * 1024 * 1024, 99);
    const { stored } = await storeData(temp.repo, 'chain-c', inPieces(data), { compressionLevel: 1 });
    const victim = stored.chunks[0]!;
    const file = temp.chunkFile('chain-c', victim.id);
    const bytes = await readFile(file);
    bytes[10] = bytes[10]! ^ 0x40;
    await writeFile(file, bytes);
    const problems = await checkStoredChunks(temp.repo, 'chain-c', stored.chunks, { hash: true });
    assert.deepEqual(problems.map((p) => [p.chunk, p.problem]), [[victim.id, 'damaged']]);
    const artifact = { id: 'x', source: 's', kind: 'pg_dump' as const, target: 't', meta: {}, ...stored };
    await assert.rejects(Array.fromAsync(readArtifact(temp.repo, 'chain-c', artifact, 'content')), /damaged|cannot be decoded/);
    // Sealed objects are authenticated as they are decrypted: that is the stored-bytes check there.
    await assert.rejects(Array.fromAsync(readArtifact(temp.repo, 'chain-c', artifact, 'stored')), encrypt ? /chain-c cannot be decoded: it fails authentication/ : /stored bytes do not match/);
    await rm(file);
    const missing = await checkStoredChunks(temp.repo, 'chain-c', stored.chunks, { hash: false });
    assert.equal(missing[0]!.problem, 'missing');
  });

  test('a hash check stopped through its signal ends with the signal\'s reason', async () => {
    const { stored } = await storeData(temp.repo, 'chain-e', inPieces(dumpLikeData(4 * 1024 * 1024, 14)), { compressionLevel: 1 });
    const controller = new AbortController();
    const checking = checkStoredChunks(temp.repo, 'chain-e', stored.chunks, { hash: true, signal: controller.signal });
    controller.abort(new Error('restore abandoned'));
    await assert.rejects(checking, /restore abandoned/);
    // An already stopped signal starts nothing.
    await assert.rejects(checkStoredChunks(temp.repo, 'chain-e', stored.chunks, { hash: true, signal: controller.signal }), /restore abandoned/);
  });

  test('a chunk the chain already holds is not written again', async () => {
    const data = dumpLikeData(3 * 1024 * 1024, 5);
    const { stored } = await storeData(temp.repo, 'chain-d', inPieces(data), { compressionLevel: 3 });
    const known = new Map(stored.chunks.map((c) => [c.id, c]));
    const second = await storeData(temp.repo, 'chain-d', inPieces(data), { compressionLevel: 3, index: { lookup: (_chain, id) => known.get(id) } });
    assert.equal(second.stats.chunksNew, 0);
    assert.equal(second.stats.bytesStored, 0);
  });
});

describe('releasing memory early', () => {
  test('frees what owns its memory, and leaves pooled Buffers and shared memory alone', () => {
    const owned = Buffer.alloc(4 * Buffer.poolSize, 1);
    const pooled = Buffer.from('small, from the pool');
    const shared = new Uint8Array(new SharedArrayBuffer(64 * 1024));
    const before = pooled.toString();
    releaseMemory(owned, pooled, shared);
    assert.equal(owned.length, 0, 'its ArrayBuffer is detached: the memory is gone');
    assert.equal(pooled.toString(), before);
    assert.equal(shared.length, 64 * 1024);
    releaseMemory(owned); // twice is harmless
  });
});

describe('the write threads', () => {
  const temp = tempRepository('stackback-threads-');

  test('with three write threads an artifact is stored whole and reads back byte for byte', async () => {
    const data = dumpLikeData(12 * 1024 * 1024, 21);
    const { stored, stats } = await storeData(temp.repo, 'threads-3', inPieces(data), { compressionLevel: 1, threads: 3 });
    assert.equal(stats.chunksNew, stored.chunks.length);
    const artifact = { id: 'x', source: 's', kind: 'pg_dump' as const, target: 't', meta: {}, ...stored };
    assert.deepEqual(Buffer.concat(await Array.fromAsync(readArtifact(temp.repo, 'threads-3', artifact, 'content'))), data);
    assert.deepEqual(await checkStoredChunks(temp.repo, 'threads-3', stored.chunks, { hash: true }), []);
  });

  test('the write threads run below the main thread\'s CPU priority', async () => {
    const nices: number[] = [];
    // Past the first chunk the threads are at work: note the nice value of every thread of this process.
    async function* input(): AsyncGenerator<Uint8Array> {
      yield dumpLikeData(6 * 1024 * 1024, 31);
      for (const task of await readdir('/proc/self/task')) {
        const stat = await readFile(`/proc/self/task/${task}/stat`, 'utf8');
        nices.push(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
      }
      yield dumpLikeData(1024 * 1024, 32);
    }
    await storeData(temp.repo, 'nice', input(), { compressionLevel: 1 });
    assert.ok(nices.includes(WRITE_THREAD_NICE) && nices.includes(0), `threads at nice ${nices.join(' ')}`);
  });

  test('a thread never raises its own priority (a process started nicer may not): it only lowers it', async () => {
    const module = new URL('../src/repository/thread-priority.ts', import.meta.url).href;
    // In a thread of its own: the priority it changes is that thread's alone.
    const code = `const { parentPort } = require('node:worker_threads'); const os = require('node:os');
      os.setPriority(15);
      import(${JSON.stringify(module)}).then(({ lowerThreadPriority }) => {
        lowerThreadPriority(10); const kept = os.getPriority();
        lowerThreadPriority(18); parentPort.postMessage([kept, os.getPriority()]);
      });`;
    const worker = new Worker(code, { eval: true });
    try {
      assert.deepEqual(await new Promise((resolve) => worker.once('message', resolve)), [15, 18]);
    } finally {
      await worker.terminate();
    }
  });

  test('a chunk the thread cannot write fails the artifact with the thread\'s own error, and the writer still settles and closes', async () => {
    // A file where the chain's folder should be: the thread's mkdir fails.
    await writeFile(join(temp.dir, 'repo', 'chains', 'blocked'), 'not a folder');
    const writer = new BackupWriter(temp.repo, 'blocked', { lookup: () => undefined }, { compressionLevel: 1 });
    try {
      await assert.rejects(writer.storeArtifact(inPieces(dumpLikeData(3 * 1024 * 1024, 5))), (error: NodeJS.ErrnoException) => error.code === 'ENOTDIR' && /chains\/blocked/.test(error.message));
      assert.equal(writer.failed, true);
      await writer.settle();
    } finally {
      await writer.close();
    }
  });

  test('a full disk reaches the backup as DISK_SPACE with its hint, across the thread', async (t) => {
    const mountPoint = await mkdtemp(join(tmpdir(), 'stackback-full-'));
    const mounted = (await execa('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mountPoint], { reject: false })).exitCode === 0;
    try {
      if (!mounted) return t.skip('mounting a tmpfs needs root (CAP_SYS_ADMIN); this machine refused it');
      const repo = await Repository.create(join(mountPoint, 'repo'), { key: { keyFile: join(mountPoint, 'repo.key'), passphraseFile: undefined }, encrypt: true });
      const writer = new BackupWriter(repo, 'full', { lookup: () => undefined }, { compressionLevel: 1 });
      try {
        await assert.rejects(writer.storeArtifact(inPieces(randomBytes(8 * 1024 * 1024))), (error: Error & { code?: string; hint?: string }) => error.code === 'DISK_SPACE' && /disk is full \(ENOSPC\)/.test(error.message) && /free space/.test(error.hint ?? ''));
        await writer.settle();
      } finally {
        await writer.close();
      }
    } finally {
      if (mounted) await execa('umount', [mountPoint]);
      await rm(mountPoint, { recursive: true, force: true });
    }
  });
});

describe('an artifact fed to a tool through a named pipe (the restore path)', () => {
  const temp = tempRepository('stackback-pipe-');

  /** As a restore does it: the feed first (its thread starts and waits for a reader), then the tool. */
  async function runToolOnArtifact(data: ArtifactData, dir: string, file: string, args: string[], options: ToolOptions & FeedOptions & { bigPipe?: boolean }): Promise<unknown> {
    const { feederNice, sink, ...toolOptions } = options;
    const feed = await startArtifactFeed(data, dir, { feederNice, ...(sink ? { sink } : {}) });
    return feed.run([{ file, args, what: toolOptions.what }], toolOptions);
  }

  async function storeArtifact(chain: string, data: Buffer) {
    const { stored } = await storeData(temp.repo, chain, inPieces(data), { compressionLevel: 1 });
    return { id: `${chain}/artifact`, source: 's', kind: 'pg_dump' as const, target: 't', meta: {}, ...stored };
  }
  const toolOptions = { env: {}, errorCode: 'PG_RESTORE_FAILED' as const, what: 'the test tool' };
  // Copies stdin to a file 64 KiB at a time with pauses, so the writer fills the pipe and has to wait.
  const SLOW_READER = `const fs = require('node:fs'); const out = fs.openSync(process.argv[1], 'w'); const buffer = Buffer.alloc(65536);
    (function step() { const n = fs.readSync(0, buffer); if (n === 0) return fs.closeSync(out); fs.writeSync(out, buffer, 0, n); setTimeout(step, 1); })();`;
  const workDir = () => join(temp.dir, 'work');

  test('the tool reads the artifact byte for byte, through a 1 MiB pipe or a default one, and the pipe is removed afterwards', async () => {
    const data = Buffer.concat([dumpLikeData(3 * 1024 * 1024, 7), randomBytes(600_000)]);
    const artifact = await storeArtifact('pipe-a', data);
    const out = join(temp.dir, 'out-a');
    for (const [check, bigPipe] of [['stored', true], ['content', true], ['stored', false]] as const) {
      await runToolOnArtifact(openArtifact(temp.repo, 'pipe-a', artifact, check), workDir(), process.execPath, ['-e', SLOW_READER, out], { ...toolOptions, bigPipe });
      assert.deepEqual(await readFile(out), data, `check ${check}, big pipe ${bigPipe}`);
    }
    assert.deepEqual(await readdir(workDir()), []);
  });

  test('the feeding thread runs at the given lower CPU priority, and a sink module takes the plaintext there, asks the main thread and reports', async () => {
    const data = dumpLikeData(2 * 1024 * 1024, 12);
    const artifact = await storeArtifact('pipe-f', data);
    const out = join(temp.dir, 'out-f');
    const priorities = join(temp.dir, 'nice-f');
    // Once the first bytes arrive, the feeder is at work: note the nice value of every thread of the feeding process.
    const tool = `const fs = require('node:fs'); fs.readSync(0, Buffer.alloc(1));
      const nice = fs.readdirSync('/proc/' + process.ppid + '/task').map((t) => fs.readFileSync('/proc/' + process.ppid + '/task/' + t + '/stat', 'utf8').split(') ')[1].split(' ')[16]);
      fs.writeFileSync(process.argv[1], nice.join(' ')); const rest = fs.readFileSync(0); fs.writeFileSync(process.argv[2], rest);`;
    const module = new URL('./support/swapcase-sink.ts', import.meta.url).href;
    const questions: unknown[] = [];
    const answer = async (question: unknown) => {
      questions.push(question);
      return 42;
    };
    const sink = ([pipe]: string[]) => ({ module, options: { pipe }, answer });
    const report = await runToolOnArtifact(openArtifact(temp.repo, 'pipe-f', artifact, 'stored'), workDir(), process.execPath, ['-e', tool, priorities, out], { ...toolOptions, feederNice: 7, sink });
    const seen = (await readFile(priorities, 'utf8')).split(' ').map(Number);
    assert.ok(seen.includes(7), `one thread at nice 7: ${seen.join(' ')}`);
    assert.equal(seen.filter((n) => n === 7).length, 1, 'only the feeding thread');
    const expected = Buffer.concat([swapCase(Buffer.from(data)), Buffer.from(`${TRAILER}42\n`)]);
    assert.deepEqual(await readFile(out), expected.subarray(1));
    assert.deepEqual(questions, [QUESTION]);
    assert.deepEqual(report, { answer: 42 });
  });

  test('a chunk damaged after the restore preflight fails the feed with CHUNK_CORRUPT', async () => {
    const data = dumpLikeData(3 * 1024 * 1024, 8);
    const artifact = await storeArtifact('pipe-b', data);
    const victim = temp.chunkFile('pipe-b', artifact.chunks.at(-1)!.id);
    const bytes = await readFile(victim);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x01;
    await writeFile(victim, bytes);
    await assert.rejects(
      runToolOnArtifact(openArtifact(temp.repo, 'pipe-b', artifact, 'stored'), workDir(), '/bin/sh', ['-c', 'cat > /dev/null'], toolOptions),
      (error: Error & { code?: string }) => error.code === 'CHUNK_CORRUPT' && /pipe-b cannot be decoded: it fails authentication/.test(error.message),
    );
  });

  test('a tool that fails mid-way is reported with its own message, and the writer does not hang', { timeout: 20_000 }, async () => {
    const artifact = await storeArtifact('pipe-c', dumpLikeData(4 * 1024 * 1024, 9));
    await assert.rejects(
      runToolOnArtifact(openArtifact(temp.repo, 'pipe-c', artifact, 'stored'), workDir(), '/bin/sh', ['-c', 'head -c 1000 > /dev/null; echo "gave up" >&2; exit 3'], toolOptions),
      /the test tool failed \(exit status 3\): gave up/,
    );
  });

  test('a writer that fails before opening the pipe stops the tool waiting for it', { timeout: 20_000 }, async () => {
    const artifact = await storeArtifact('pipe-e', dumpLikeData(1024 * 1024, 11));
    const broken = { ...artifact, chunks: [{ ...artifact.chunks[0]!, id: 'not-a-chunk-id' }] };
    await assert.rejects(
      runToolOnArtifact(openArtifact(temp.repo, 'pipe-e', broken, 'stored'), workDir(), '/bin/sh', ['-c', 'cat > /dev/null'], toolOptions),
      (error: Error & { code?: string }) => error.code === 'REPO_CORRUPT',
    );
    assert.deepEqual(await readdir(workDir()), []);
  });

  test('a feed cancelled before any tool runs (the target could not be prepared) ends promptly and removes its pipe', { timeout: 20_000 }, async () => {
    const artifact = await storeArtifact('pipe-g', dumpLikeData(2 * 1024 * 1024, 13));
    const feed = await startArtifactFeed(openArtifact(temp.repo, 'pipe-g', artifact, 'stored'), workDir());
    assert.equal((await readdir(workDir())).length, 1);
    await feed.cancel();
    assert.deepEqual(await readdir(workDir()), []);
  });

  test('a cancelled restore ends promptly, even before the tool opened the pipe', { timeout: 20_000 }, async () => {
    const artifact = await storeArtifact('pipe-d', dumpLikeData(2 * 1024 * 1024, 10));
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await assert.rejects(runToolOnArtifact(openArtifact(temp.repo, 'pipe-d', artifact, 'stored'), workDir(), '/bin/sh', ['-c', 'sleep 30'], { ...toolOptions, signal: controller.signal }), /cancelled/);
    assert.deepEqual(await readdir(workDir()), []);
  });
});

describe('a tool run with big writes (pg_dump under stdbuf)', () => {
  test('writes its output through unchanged, and a tool that is not there is still named as missing', async () => {
    const options = { env: {}, errorCode: 'PG_DUMP_FAILED' as const, what: 'the test tool', bigWrites: true };
    const run = runTool('/bin/sh', ['-c', 'head -c 300000 /dev/zero | tr "\\0" x; printf end'], options);
    const out = Buffer.concat(await Array.fromAsync(run.stdout!));
    await run.exited;
    assert.equal(out.length, 300_003);
    assert.equal(out.subarray(-3).toString(), 'end');
    const missing = runTool('/nonexistent/pg_dump', ['--version'], options);
    await assert.rejects(missing.exited, /\/nonexistent\/pg_dump not found/);
  });
});

describe('backup names', () => {
  test('names that could leave the manifests folder are refused', () => {
    for (const bad of ['', '..', '../x', 'a/b', '/abs', '.hidden', 'a..b', 'x'.repeat(200), 'sp ace']) {
      assert.throws(() => validateBackupName(bad), /invalid backup name/, JSON.stringify(bad));
    }
    assert.equal(validateBackupName('full-20261126T021132Z'), 'full-20261126T021132Z');
  });

  test('new names are time stamps, made unique with a suffix', () => {
    const at = new Date('2026-11-26T02:11:32.123Z');
    const taken = new Set(['full-20261126T021132Z']);
    assert.equal(newBackupName('incremental', at, () => false), 'incr-20261126T021132Z');
    assert.equal(newBackupName('full', at, (n) => taken.has(n)), 'full-20261126T021132Z-2');
  });
});

describe('writer lock', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stackback-lock-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('a second writer fails with who holds the lock', async () => {
    const lock = await acquireWriterLock(dir, { command: 'backup --full', timeoutMs: 0 });
    try {
      await assert.rejects(acquireWriterLock(dir, { command: 'delete x', timeoutMs: 300 }), (error: Error) => {
        assert.match(error.message, new RegExp(`repository locked by pid ${process.pid} on ${os.hostname()} since \\d{4}-.* \\(backup --full\\)`));
        return true;
      });
    } finally {
      await lock.release();
    }
    const again = await acquireWriterLock(dir, { command: 'delete x', timeoutMs: 0 });
    await again.release();
  });

  test('a lock left by a dead process on this host is taken over', async () => {
    const dead = await execa(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    await writeFile(join(dir, 'writer.lock'), JSON.stringify({ pid: Number(dead.stdout), host: os.hostname(), started_at: '2026-01-01T00:00:00Z', command: 'backup' }));
    const lock = await acquireWriterLock(dir, { command: 'backup', timeoutMs: 0 });
    assert.equal(JSON.parse(await readFile(lock.file, 'utf8')).pid, process.pid);
    await lock.release();
  });

  test('a reader waits for a writer that removes chunks, and is refused when it waited too long', async () => {
    const remover = await acquireWriterLock(dir, { command: 'prune', timeoutMs: 0, exclusiveOfReaders: true });
    await assert.rejects(acquireReaderLock(dir, 'restore x', 300), /repository is having backups removed by pid \d+ .*\(prune\)/);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('read-')), [], 'the refused reader left no lock');
    setTimeout(() => void remover.release(), 300);
    const reader = await acquireReaderLock(dir, 'restore x', 5000);
    await reader.release();
    // A writer that only adds (a backup) does not hold readers up.
    const adder = await acquireWriterLock(dir, { command: 'backup', timeoutMs: 0 });
    const alongside = await acquireReaderLock(dir, 'verify', 0);
    await alongside.release();
    await adder.release();
  });

  test('a waiting writer gets the lock once it is released', async () => {
    const first = await acquireWriterLock(dir, { command: 'first', timeoutMs: 0 });
    setTimeout(() => void first.release(), 300);
    const second = await acquireWriterLock(dir, { command: 'second', timeoutMs: 5000 });
    await second.release();
  });
});
