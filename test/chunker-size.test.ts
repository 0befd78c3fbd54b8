// A repository keeps the chunker it was made with (repo.json). Its chunks decode up to its
// own largest chunk, whatever stackback's default chunker is today: a repository made with
// larger chunks (or before the default was re-tuned) restores in process and through the
// restore thread alike.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openArtifact, readArtifact } from '../src/repository/artifact-reader.ts';
import { onePiece, storeData } from './support/store.ts';
import { DEFAULT_CHUNKER } from '../src/repository/chunker.ts';
import { Repository, readRepoInfo } from '../src/repository/repository.ts';

describe('chunks of a repository whose chunker is not the default', () => {
  let dir: string;
  let repo: Repository;
  const maxSize = 2 * DEFAULT_CHUNKER.maxSize;
  // Compressible, and longer than the default's largest chunk: one chunk of the repository's own size.
  const data = Buffer.alloc(DEFAULT_CHUNKER.maxSize + 3 * 1024 * 1024, 'stackback ');
  let artifact: Parameters<typeof readArtifact>[2];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stackback-chunker-'));
    const root = join(dir, 'repo');
    const key = { keyFile: join(dir, 'repo.key'), passphraseFile: undefined };
    await Repository.create(root, { key, encrypt: true });
    const info = readRepoInfo(root);
    info.chunker = { ...info.chunker, minSize: DEFAULT_CHUNKER.maxSize + 1024 * 1024, avgSize: DEFAULT_CHUNKER.maxSize + 2 * 1024 * 1024, maxSize };
    await writeFile(join(root, 'repo.json'), `${JSON.stringify(info, null, 2)}\n`);
    repo = await Repository.open(root, key);
    const { stored } = await storeData(repo, 'big-chunks', onePiece(data), { compressionLevel: 1 });
    artifact = { id: 'x/files', source: 'x', kind: 'files_tar' as const, target: 't', meta: {}, ...stored };
    assert.equal(stored.chunks.length, 1);
    assert.ok(stored.chunks[0]!.size > DEFAULT_CHUNKER.maxSize && stored.chunks[0]!.stored_size < stored.chunks[0]!.size, 'one compressed chunk larger than the default maximum');
  });

  after(() => rm(dir, { recursive: true, force: true }));

  test('read back in process', async () => {
    for (const check of ['content', 'stored'] as const) {
      assert.deepEqual(Buffer.concat(await Array.fromAsync(readArtifact(repo, 'big-chunks', artifact, check))), data);
    }
  });

  test('written into a named pipe by the restore thread', async () => {
    const pipe = join(dir, 'feed');
    const out = join(dir, 'out');
    execFileSync('mkfifo', [pipe]);
    const reader = spawn('sh', ['-c', 'cat "$1" > "$2"', 'sh', pipe, out]);
    await openArtifact(repo, 'big-chunks', artifact, 'stored').writeToPipe(pipe, { nice: 0 });
    await once(reader, 'exit');
    assert.equal(createHash('sha256').update(await readFile(out)).digest('hex'), artifact.sha256);
  });
});
