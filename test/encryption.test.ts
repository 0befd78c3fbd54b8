// Encryption at rest (repository format 2), end to end through the CLI: nothing of the data
// shows in the repository's files, all three sources round-trip, damage and a swapped object
// are found, a wrong or broken key stops everything before a byte is written, the key is
// exported and imported as text, and passphrases change without touching a chunk.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { zstdDecompressSync } from 'node:zlib';
import { QdrantClient } from '@qdrant/js-client-rest';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { snapshotDatabase } from './support/pg-fixture.ts';
import { startQdrantStandin, type QdrantStandin } from './support/qdrant-standin.ts';
import { filesSourceYaml, makeSandbox, postgresSourceYaml, qdrantSourceYaml, type Sandbox } from './support/stackback.ts';

// Distinctive strings, each of which must appear nowhere in the repository.
const SECRETS = {
  table: 'zitronenfalter_kontobuch',
  column: 'iban_geheimnummer',
  value: 'Kontostand-Überweisung-7b3f9e',
  nonAscii: 'Ωμέγα-秘密のデータ-ßüñ',
  fileName: 'vertrag-quartalsbericht-5521.txt',
  fileContent: 'VERTRAULICH: Fusion mit Nordwind AG am 14. Mai',
  collection: 'leuchtturm_vektoren',
  payload: 'payload-Hafenkran-4471',
};

async function* walk(folder: string): AsyncGenerator<string> {
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    const full = join(folder, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else if (entry.isFile()) yield full;
  }
}

/** Every file under `folder` by relative path, with its bytes' sha256. */
async function fileDigests(folder: string): Promise<Map<string, string>> {
  const digests = new Map<string, string>();
  for await (const file of walk(folder)) digests.set(relative(folder, file), createHash('sha256').update(await readFile(file)).digest('hex'));
  return digests;
}

/** The readings of a stored object an attacker would try: as it is, and zstd-inflated (whole, or after a one-byte tag). */
function readings(bytes: Buffer): Buffer[] {
  const out = [bytes];
  for (const start of [0, 1]) {
    try {
      out.push(zstdDecompressSync(bytes.subarray(start)));
    } catch {
      // not a zstd frame
    }
  }
  return out;
}

async function chunkFiles(repo: string): Promise<string[]> {
  const files: string[] = [];
  for await (const file of walk(join(repo, 'chains'))) files.push(file);
  return files;
}

async function pointsOf(client: QdrantClient, collection: string): Promise<unknown[]> {
  return (await client.scroll(collection, { limit: 1000, with_payload: true, with_vector: true })).points.map((p) => ({ id: p.id, vector: p.vector, payload: p.payload }));
}

describe('an encrypted repository', () => {
  let cluster: PgCluster;
  let standin: QdrantStandin;
  let client: QdrantClient;
  let sandbox: Sandbox;
  let dir: string;
  let tree: string;
  let full: string;
  let originalDb: Awaited<ReturnType<typeof snapshotDatabase>>;
  let originalPoints: unknown[];

  before(async () => {
    cluster = await startPgCluster();
    standin = await startQdrantStandin({ version: '1.19.0' });
    client = new QdrantClient({ url: standin.url, checkCompatibility: false });
    dir = await mkdtemp(join(tmpdir(), 'stackback-encrypted-'));
    tree = join(dir, 'tree');
    await mkdir(join(tree, 'docs'), { recursive: true });
    await writeFile(join(tree, 'docs', SECRETS.fileName), `${SECRETS.fileContent}\n${SECRETS.nonAscii}\n`.repeat(50), { mode: 0o640 });
    await writeFile(join(tree, 'notes.txt'), `${SECRETS.nonAscii} ${SECRETS.value}\n`, { mode: 0o600 });
    await cluster.psql('postgres', 'CREATE DATABASE ledger');
    await cluster.psql('ledger', `CREATE TABLE ${SECRETS.table} (id int PRIMARY KEY, ${SECRETS.column} text, note text);
      INSERT INTO ${SECRETS.table} SELECT i, '${SECRETS.value}-' || i, '${SECRETS.nonAscii}' FROM generate_series(1, 5000) i;`);
    await client.createCollection(SECRETS.collection, { vectors: { size: 4, distance: 'Cosine' } });
    await client.upsert(SECRETS.collection, {
      wait: true,
      points: Array.from({ length: 30 }, (_, i) => ({ id: i + 1, vector: [1, i, 0.5, -i], payload: { label: `${SECRETS.payload}-${i}`, text: SECRETS.nonAscii } })),
    });
    originalDb = await snapshotDatabase(cluster, 'ledger');
    originalPoints = await pointsOf(client, SECRETS.collection);
    sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['ledger'], globals: false }), {
      qdrantYaml: qdrantSourceYaml(standin.url),
      filesYaml: filesSourceYaml([tree]),
    });
  });

  after(async () => {
    await sandbox?.cleanup();
    await standin?.stop();
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('init makes the key (mode 0600) and a format 2 repository that names the key but does not hold it', async () => {
    const init = await sandbox.run(['init']);
    assert.equal(init.code, 0, init.stderr);
    const keyFile = `${sandbox.repoPath}.key`;
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const key = JSON.parse(await readFile(keyFile, 'utf8')) as { key_id: string; secret: string };
    const info = JSON.parse(await readFile(join(sandbox.repoPath, 'repo.json'), 'utf8')) as { format: number; encryption: { key_id: string; check: string }; chunker: { seed?: string } };
    assert.equal(info.format, 2);
    assert.equal(info.encryption.key_id, key.key_id);
    assert.equal(info.chunker.seed, undefined, 'the chunker is seeded from the key');
    assert.ok(!(await readFile(join(sandbox.repoPath, 'repo.json'), 'utf8')).includes(key.secret));
  });

  test('full and incremental backups of all three sources leave no known plaintext in any file of the repository', async () => {
    const first = await sandbox.json<{ backup: string; status: string }>(['backup', '--full']);
    assert.equal(first.code, 0, first.stderr);
    full = first.value.backup;
    await cluster.psql('ledger', `INSERT INTO ${SECRETS.table} VALUES (9999, '${SECRETS.value}-late', 'late')`);
    const second = await sandbox.json<{ backup: string; stats: { bytes_read: number; bytes_stored: number } }>(['backup', '--incremental']);
    assert.equal(second.code, 0, second.stderr);
    assert.ok(second.value.stats.bytes_stored < second.value.stats.bytes_read / 4, `the incremental dedups against the chain: ${second.value.stats.bytes_stored} of ${second.value.stats.bytes_read} bytes stored`);
    await cluster.psql('ledger', `DELETE FROM ${SECRETS.table} WHERE id = 9999`);

    const needles = Object.entries(SECRETS).map(([what, text]) => ({ what, bytes: Buffer.from(text, 'utf8') }));
    let files = 0;
    for await (const file of walk(sandbox.repoPath)) {
      files += 1;
      assert.ok(!file.includes(SECRETS.fileName) && !file.includes(SECRETS.collection) && !file.includes(SECRETS.table), `a file name gives data away: ${file}`);
      for (const reading of readings(await readFile(file))) {
        for (const { what, bytes } of needles) assert.equal(reading.indexOf(bytes), -1, `${what} found in ${relative(sandbox.repoPath, file)}`);
      }
    }
    assert.ok(files >= 8, `${files} files looked at`);
    // The same search finds them in a plain (format 1) repository: the search itself works.
    const plain = await makeSandbox('', { filesYaml: filesSourceYaml([tree]), repository: 'encryption: none' });
    try {
      assert.equal((await plain.run(['backup', '--full'])).code, 0);
      let found = false;
      for await (const file of walk(join(plain.repoPath, 'chains'))) for (const reading of readings(await readFile(file))) found ||= reading.includes(Buffer.from(SECRETS.fileContent));
      assert.ok(found, 'the file content is visible in a plain repository');
    } finally {
      await plain.cleanup();
    }
  });

  test('each source restores from the encrypted repository exactly as it was', async () => {
    const db = await sandbox.run(['restore', full, '--source', 'main', '--target-db', 'ledger_restored']);
    assert.equal(db.code, 0, db.stderr);
    assert.deepEqual(await snapshotDatabase(cluster, 'ledger_restored'), originalDb);
    await client.deleteCollection(SECRETS.collection);
    const vectors = await sandbox.run(['restore', full, '--source', 'vectors', '--yes']);
    assert.equal(vectors.code, 0, vectors.stderr);
    assert.deepEqual(await pointsOf(client, SECRETS.collection), originalPoints);
    const target = join(dir, 'restored-tree');
    const files = await sandbox.run(['restore', full, '--source', 'app-files', '--target-dir', target]);
    assert.equal(files.code, 0, files.stderr);
    for (const name of [join('docs', SECRETS.fileName), 'notes.txt']) {
      const restored = join(target, relative('/', tree), name);
      assert.deepEqual(await readFile(restored), await readFile(join(tree, name)), name);
      assert.equal((await stat(restored)).mode & 0o777, (await stat(join(tree, name))).mode & 0o777, `mode of ${name}`);
    }
  });

  test('a chunk copied over another one\'s name, and a flipped bit, are found by verify --deep, and restore refuses before touching anything', async () => {
    const chunks = await chunkFiles(sandbox.repoPath);
    const saved = new Map<string, Buffer>();
    for (const file of chunks) saved.set(file, await readFile(file));
    // A chunk the full backup uses, and another object — of the same size where there is one, so no size check can tell.
    const manifest = await sandbox.readManifest<{ artifacts: { chunks: { id: string }[] }[] }>(full);
    const inFull = new Set(manifest.artifacts.flatMap((a) => a.chunks.map((c) => c.id)));
    const candidates = chunks.filter((file) => inFull.has(file.split('/').at(-1)!));
    const sameSize = (a: string, b: string) => a !== b && saved.get(a)!.length === saved.get(b)!.length;
    const victim = candidates.find((c) => chunks.some((o) => sameSize(c, o))) ?? candidates[0]!;
    const other = chunks.find((o) => sameSize(victim, o)) ?? chunks.find((o) => o !== victim)!;
    try {
      await chmod(victim, 0o644);
      await copyFile(other, victim);
      const deep = await sandbox.run(['verify', '--all', '--deep']);
      assert.equal(deep.code, 1, deep.stdout);
      const victimId = victim.split('/').at(-1)!;
      assert.match(deep.stdout, new RegExp(victimId.slice(0, 12)), 'the swapped object is named');

      await writeFile(victim, saved.get(victim)!);
      const flipped = Buffer.from(saved.get(victim)!);
      flipped[flipped.length >> 1] = flipped[flipped.length >> 1]! ^ 0x08;
      await writeFile(victim, flipped);
      assert.equal((await sandbox.run(['verify', '--all', '--deep'])).code, 1);
      const before = await snapshotDatabase(cluster, 'ledger');
      const restore = await sandbox.run(['restore', full, '--yes']);
      assert.notEqual(restore.code, 0);
      assert.match(restore.stderr, new RegExp(`cannot restore ${full}; nothing was touched:[^]*${victimId.slice(0, 12)}… damaged`));
      assert.deepEqual(await snapshotDatabase(cluster, 'ledger'), before, 'the database was not touched');
    } finally {
      await writeFile(victim, saved.get(victim)!);
    }
    assert.equal((await sandbox.run(['verify', '--all', '--deep'])).code, 0, 'repaired, it verifies again');
  });

  test('a flipped bit in a manifest is named by quick verify; in the catalog copy, by --deep', async () => {
    const manifestFile = join(sandbox.repoPath, 'manifests', `${full}.json`);
    const original = await readFile(manifestFile);
    const damaged = Buffer.from(original);
    damaged[40] = damaged[40]! ^ 0x01;
    await writeFile(manifestFile, damaged);
    try {
      const quick = await sandbox.run(['verify', full]);
      assert.notEqual(quick.code, 0);
      assert.match(`${quick.stdout}${quick.stderr}`, new RegExp(`manifest of backup ${full} .*cannot be decrypted`));
    } finally {
      await writeFile(manifestFile, original);
    }
    const manifest = await sandbox.readManifest<{ chain: string; artifacts: { kind: string; chunks: { id: string }[] }[] }>(full);
    const catalogChunk = manifest.artifacts.find((a) => a.kind === 'catalog')!.chunks[0]!.id;
    const chunkFile = (await chunkFiles(sandbox.repoPath)).find((f) => f.endsWith(catalogChunk))!;
    const saved = await readFile(chunkFile);
    const flipped = Buffer.from(saved);
    flipped[saved.length - 5] = flipped[saved.length - 5]! ^ 0x80;
    await chmod(chunkFile, 0o644);
    await writeFile(chunkFile, flipped);
    try {
      const deep = await sandbox.run(['verify', full, '--deep']);
      assert.equal(deep.code, 1);
      assert.match(deep.stdout, new RegExp(catalogChunk.slice(0, 12)));
    } finally {
      await writeFile(chunkFile, saved);
    }
  });

  test('a wrong key, a truncated key file, a key file readable by others, or none: exit 2 naming the key file, nothing written', async () => {
    const keyFile = `${sandbox.repoPath}.key`;
    const good = await readFile(keyFile);
    const { secret } = JSON.parse(good.toString('utf8')) as { secret: string };
    const before = await fileDigests(sandbox.repoPath);
    const backupsBefore = (await sandbox.json<unknown[]>(['list'])).value.length;
    const other = await makeSandbox('', { filesYaml: filesSourceYaml([tree]) });
    try {
      assert.equal((await other.run(['init'])).code, 0);
      const cases: [string, () => Promise<void>, RegExp][] = [
        ['another repository\'s key', () => copyFile(`${other.repoPath}.key`, keyFile), new RegExp(`key file ${keyFile} holds key [0-9a-f]{16}, but repository .* is encrypted with key [0-9a-f]{16}`)],
        ['a truncated key file', async () => {
          await writeFile(keyFile, good.subarray(0, good.length >> 1), { mode: 0o600 });
        }, new RegExp(`key file ${keyFile} is not a valid stackback key: not JSON — truncated or damaged\\?$`, 'm')],
        ['mode 0644', async () => {
          await writeFile(keyFile, good);
          await chmod(keyFile, 0o644);
        }, new RegExp(`key file ${keyFile} is readable by others than its owner \\(mode 0644\\)`)],
        ['no key file', () => rm(keyFile), new RegExp(`key file ${keyFile} does not exist`)],
      ];
      for (const [what, breakIt, message] of cases) {
        await breakIt();
        for (const args of [['backup', '--full'], ['restore', full, '--target-dir', join(dir, 'never')], ['verify', '--all', '--deep']]) {
          const result = await sandbox.run(args);
          assert.equal(result.code, 2, `${what}, ${args[0]}: ${result.stderr}`);
          assert.match(result.stderr, message, `${what}, ${args[0]}`);
          assert.ok(!result.stderr.includes(secret.slice(0, 12)), `${what}, ${args[0]}: no part of the secret in the message`);
        }
        await rm(keyFile, { force: true });
        await writeFile(keyFile, good, { mode: 0o600 });
      }
    } finally {
      await other.cleanup();
      await writeFile(keyFile, good, { mode: 0o600 });
      await chmod(keyFile, 0o600);
    }
    assert.deepEqual(await fileDigests(sandbox.repoPath), before, 'not a byte of the repository changed');
    assert.equal((await sandbox.json<unknown[]>(['list'])).value.length, backupsBefore);
    assert.equal((await sandbox.run(['backup', '--incremental'])).code, 0, 'with the right key it works again');
  });

  test('status warns until the key is exported; the exported text brings a lost key back, and a mistyped one is refused by line', async () => {
    const warning = /the repository key exists only on this server: run `stackback key export`/;
    const before = await sandbox.json<{ warnings: string[] }>(['status']);
    assert.ok(before.value.warnings.some((w) => warning.test(w)), before.value.warnings.join('\n'));
    const exported = await sandbox.run(['key', 'export']);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /BEGIN STACKBACK KEY/);
    const after = await sandbox.json<{ warnings: string[] }>(['status']);
    assert.ok(!after.value.warnings.some((w) => warning.test(w)), after.value.warnings.join('\n'));

    const keyFile = `${sandbox.repoPath}.key`;
    const original = await readFile(keyFile);
    await rm(keyFile);
    const lost = await sandbox.run(['backup']);
    assert.equal(lost.code, 2);
    // One character of the third key line changed, as a person copying it might.
    const lines = exported.stdout.split('\n');
    const third = lines.findIndex((l) => l === 'BEGIN STACKBACK KEY') + 3;
    lines[third] = lines[third]!.replace(/[A-Z2-7]/, (c) => (c === 'A' ? 'B' : 'A'));
    const typo = await sandbox.run(['key', 'import'], { input: lines.join('\n') });
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /line 3 of the key does not match its check/);
    const imported = await sandbox.run(['key', 'import'], { input: exported.stdout });
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /written to .* and it opens the repository/);
    assert.deepEqual(JSON.parse(await readFile(keyFile, 'utf8')), JSON.parse(original.toString('utf8')));
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const again = await sandbox.run(['key', 'import'], { input: exported.stdout });
    assert.equal(again.code, 0, 'importing the same key twice is harmless');
    assert.equal((await sandbox.run(['backup'])).code, 0);
  });
});

describe('a repository key under passphrases', () => {
  let dir: string;
  let sandbox: Sandbox;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stackback-passphrase-'));
    await mkdir(join(dir, 'tree'));
    for (let i = 0; i < 20; i++) await writeFile(join(dir, 'tree', `file-${i}.txt`), `contents of file ${i}\n`.repeat(1000 + i));
    await writeFile(join(dir, 'first'), 'correct horse battery staple\n', { mode: 0o600 });
    await writeFile(join(dir, 'second'), 'Tr0ub4dor&3 — zweite Passphrase\n', { mode: 0o600 });
    sandbox = await makeSandbox('', { filesYaml: filesSourceYaml([join(dir, 'tree')]), repository: `passphrase_file: ${join(dir, 'first')}` });
  });

  after(async () => {
    await sandbox?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  test('add a second passphrase, remove the first, restore with the second: no chunk file changes', async () => {
    const backup = await sandbox.json<{ backup: string }>(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    const keyFile = `${sandbox.repoPath}.key`;
    const key = JSON.parse(await readFile(keyFile, 'utf8')) as { secret?: string; passphrases: { kdf: { N: number; r: number } }[] };
    assert.equal(key.secret, undefined, 'the key file holds no bare secret');
    assert.ok(128 * key.passphrases[0]!.kdf.N * key.passphrases[0]!.kdf.r >= 64 * 1024 * 1024, 'scrypt uses at least 64 MiB');
    const chunksBefore = await fileDigests(join(sandbox.repoPath, 'chains'));

    const add = await sandbox.run(['key', 'add', '--passphrase-file', join(dir, 'second')]);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /the key file has 2 passphrase\(s\)/);
    // The operator switches the daemon to the new passphrase, then removes the old one.
    const withFirst = await readFile(sandbox.configPath, 'utf8');
    const withSecond = withFirst.replace(join(dir, 'first'), join(dir, 'second'));
    await writeFile(sandbox.configPath, withSecond);
    const remove = await sandbox.run(['key', 'remove', '--passphrase-file', join(dir, 'first')]);
    assert.equal(remove.code, 0, remove.stderr);
    assert.match(remove.stdout, /the key file has 1 passphrase\(s\)/);
    const onlyOne = await sandbox.run(['key', 'remove', '--passphrase-file', join(dir, 'second')]);
    assert.equal(onlyOne.code, 2);
    assert.match(onlyOne.stderr, /that is the only passphrase/);

    // The first passphrase no longer opens the key.
    await writeFile(sandbox.configPath, withFirst);
    const refused = await sandbox.run(['verify', '--all']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, new RegExp(`the passphrase in ${join(dir, 'first')} opens none of the wrappings in key file ${keyFile}`));
    await writeFile(sandbox.configPath, withSecond);
    const target = join(dir, 'out');
    const restore = await sandbox.run(['restore', backup.value.backup, '--target-dir', target]);
    assert.equal(restore.code, 0, restore.stderr);
    for (let i = 0; i < 20; i++) assert.deepEqual(await readFile(join(target, relative('/', dir), 'tree', `file-${i}.txt`)), await readFile(join(dir, 'tree', `file-${i}.txt`)));
    assert.deepEqual(await fileDigests(join(sandbox.repoPath, 'chains')), chunksBefore, 'the chunk files are byte-identical');
  });

  test('a passphrase file readable by others is refused', async () => {
    await chmod(join(dir, 'second'), 0o640);
    try {
      const result = await sandbox.run(['verify', '--all']);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /passphrase file .*second is readable by others than its owner \(mode 0640\)/);
    } finally {
      await chmod(join(dir, 'second'), 0o600);
    }
  });
});

describe('a plain repository (format 1) from before encryption', () => {
  test('keeps working when the config says aes-256-gcm, and has no key to export', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stackback-plain-'));
    await writeFile(join(dir, 'a.txt'), 'plain data\n');
    const plain = await makeSandbox('', { filesYaml: filesSourceYaml([dir]), repository: 'encryption: none' });
    try {
      assert.equal((await plain.run(['backup', '--full'])).code, 0);
      // The operator turns encryption on later: the existing repository stays as it was.
      await writeFile(plain.configPath, (await readFile(plain.configPath, 'utf8')).replace('encryption: none', 'encryption: aes-256-gcm'));
      const backup = await plain.json<{ backup: string }>(['backup', '--full']);
      assert.equal(backup.code, 0, backup.stderr);
      assert.equal(JSON.parse(await readFile(join(plain.repoPath, 'repo.json'), 'utf8')).format, 1);
      assert.ok(JSON.parse(await readFile(join(plain.repoPath, 'manifests', `${backup.value.backup}.json`), 'utf8')), 'manifests stay plain JSON');
      const target = join(dir, 'out');
      assert.equal((await plain.run(['restore', backup.value.backup, '--target-dir', target])).code, 0);
      assert.equal(await readFile(join(target, relative('/', dir), 'a.txt'), 'utf8'), 'plain data\n');
      const exported = await plain.run(['key', 'export']);
      assert.equal(exported.code, 2);
      assert.match(exported.stderr, /is not encrypted \(format 1\): it has no key/);
    } finally {
      await plain.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
