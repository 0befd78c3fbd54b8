// The storage interface's contract (src/repository/storage.ts), tested against the local folder.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chainPrefix, CHAINS, chunkKey, manifestKey, MANIFESTS, type ObjectStorage, ReadScratch } from '../src/repository/storage.ts';
import { LocalStorage } from '../src/repository/storage/local.ts';
import { openStorage } from '../src/repository/storage/open.ts';

const idOf = (text: string) => createHash('sha256').update(text).digest('hex');

describe('local storage', () => {
  let dir: string;
  let storage: LocalStorage;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stackback-storage-'));
    storage = new LocalStorage(join(dir, 'repo'));
    await storage.ensureFolders();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('an absent object: get, getStream and stat answer undefined, remove is not an error', async () => {
    const key = chunkKey('absent', idOf('nothing'));
    assert.equal(await storage.get(key), undefined);
    assert.equal(await storage.get(key, new ReadScratch()), undefined);
    assert.equal(await storage.getStream(key), undefined);
    assert.equal(await storage.stat(key), undefined);
    await storage.remove(key);
    await storage.remove(chainPrefix('absent'));
    assert.deepEqual(await Array.fromAsync(storage.list(chainPrefix('absent'))), []);
  });

  test('a put object is there whole: get, stat, and a stream of the same bytes', async () => {
    const data = Buffer.from('the whole object');
    const key = chunkKey('present', idOf('the whole object'));
    await storage.put(key, data);
    await storage.sync();
    assert.deepEqual(await storage.get(key), data);
    const info = await storage.stat(key);
    assert.equal(info?.size, data.length);
    assert.ok(Math.abs(info!.mtimeMs - Date.now()) < 60_000);
    assert.deepEqual(Buffer.concat(await Array.fromAsync((await storage.getStream(key))!)), data);
  });

  test('get with a scratch reuses one buffer from object to object', async () => {
    const scratch = new ReadScratch();
    const big = Buffer.alloc(100_000, 'b');
    const small = Buffer.from('small');
    await storage.put(chunkKey('scratch', idOf('big')), big);
    await storage.put(chunkKey('scratch', idOf('small')), small);
    assert.deepEqual(await storage.get(chunkKey('scratch', idOf('big')), scratch), big);
    const buffer = scratch.buffer;
    const read = await storage.get(chunkKey('scratch', idOf('small')), scratch);
    assert.deepEqual(read, small);
    assert.equal(scratch.buffer, buffer, 'no new buffer for a smaller object');
    assert.equal(read!.buffer, buffer.buffer, 'the result is a view of the scratch buffer');
  });

  test('a key put again is replaced whole (objects are write-once in meaning: same key, same content)', async () => {
    const key = manifestKey('full-20250101T000000Z');
    await storage.put(key, Buffer.from('{"first":true}\n'));
    await storage.put(key, Buffer.from('{"second":true}\n'));
    await storage.sync();
    assert.equal((await storage.get(key))!.toString(), '{"second":true}\n');
    assert.deepEqual(await readdir(storage.tempDir), [], 'no temp file left behind');
  });

  test('list by prefix: keys below it once each, chains as prefixes, many keys over many folders', async () => {
    const ids = Array.from({ length: 1000 }, (_, i) => idOf(`chunk ${i}`));
    for (let at = 0; at < ids.length; at += 50) await Promise.all(ids.slice(at, at + 50).map((id) => storage.put(chunkKey('many', id), Buffer.from(id))));
    await storage.sync();
    const listed = await Array.fromAsync(storage.list(chainPrefix('many')));
    assert.equal(listed.length, ids.length);
    assert.deepEqual(new Set(listed), new Set(ids.map((id) => chunkKey('many', id))));
    const chains = await Array.fromAsync(storage.list(CHAINS));
    assert.ok(chains.includes(chainPrefix('many')) && chains.includes(chainPrefix('present')), chains.join(' '));
    assert.ok((await Array.fromAsync(storage.list(MANIFESTS))).includes(manifestKey('full-20250101T000000Z')));
  });

  test('removing while listing, twice, and a whole prefix', async () => {
    let removed = 0;
    for await (const key of storage.list(chainPrefix('many'))) {
      if (removed++ % 2 === 0) {
        await storage.remove(key);
        await storage.remove(key);
      }
    }
    await storage.sync();
    assert.equal((await Array.fromAsync(storage.list(chainPrefix('many')))).length, 500);
    await storage.remove(chainPrefix('many'));
    await storage.remove(chainPrefix('many'));
    await storage.sync();
    assert.deepEqual(await Array.fromAsync(storage.list(chainPrefix('many'))), []);
    assert.ok(!(await Array.fromAsync(storage.list(CHAINS))).includes(chainPrefix('many')));
  });

  test('a crash between put and sync leaves no half object: a temp file is never listed, and removeUnfinished clears it', async () => {
    const id = idOf('interrupted');
    // What a put that died before its rename leaves behind.
    await writeFile(join(storage.tempDir, `${id}.0123456789ab.tmp`), 'half an obj');
    assert.equal(await storage.stat(chunkKey('present', id)), undefined);
    const listed = await Array.fromAsync(storage.list(chainPrefix('present')));
    assert.deepEqual(listed, [chunkKey('present', idOf('the whole object'))]);
    assert.equal(await storage.removeUnfinished(), 1);
    assert.deepEqual(await readdir(storage.tempDir), []);
  });

  test('sync after a folder it would have synced is gone is not an error', async () => {
    await storage.put(chunkKey('gone', idOf('gone')), Buffer.from('x'));
    await rm(join(storage.root, 'chains', 'gone'), { recursive: true });
    await storage.sync();
  });

  test('keys that are not the repository format are refused, never turned into paths', async () => {
    for (const key of ['../etc/passwd', 'chains/../../x/' + idOf('x'), `chains/a/${'g'.repeat(64)}`, 'manifests/../repo.json', 'manifests/x', 'locks/writer.lock', 'tmp/x', '']) {
      await assert.rejects(storage.get(key), { code: 'REPO_CORRUPT' }, key);
      await assert.rejects(storage.put(key, Buffer.from('x')), { code: 'REPO_CORRUPT' }, key);
      await assert.rejects(storage.remove(key), { code: 'REPO_CORRUPT' }, key);
    }
    await assert.rejects(Array.fromAsync(storage.list('chains/../')), { code: 'REPO_CORRUPT' });
    await assert.rejects(storage.remove('chains/../'), { code: 'REPO_CORRUPT' });
  });

  test('free space is known locally; a spec opens the same storage elsewhere (a worker thread)', async () => {
    assert.ok(((await storage.freeBytes()) ?? 0) > 0);
    const other: ObjectStorage = openStorage(structuredClone(await storage.specFor()));
    assert.equal(other.location, storage.location);
    assert.deepEqual(await other.get(chunkKey('present', idOf('the whole object'))), Buffer.from('the whole object'));
  });
});
