// Off-site copies to an S3-compatible bucket, end to end through the built CLI (dist/stackback.js):
// s3rver on loopback, often behind the fault-injecting proxy (test/support/fault-proxy.ts), which
// also counts every request. What is proven here:
//   1. faults (dropped uploads, 503 SlowDown, 500, a stall) are retried and the copy completes,
//      byte-identical on restore; faults outlasting retry_for fail the copy clearly and never
//      leave a manifest whose packs are not all there; a later copy completes;
//   2. kill -9 mid-copy, then copy again: nothing sent twice, everything there;
//   3. an incremental copy sends only the new chunks (in packs) and one manifest;
//   4. retention on the remote (remotes[].retention), gc_grace respected;
//   5. object lock: locked objects kept and reported by prune; a bucket without object lock named;
//   6. credentials, missing bucket, clock, region, unknown remote: clear failures, no secret shown;
//   7. one bucket, two servers (prefixes a/ and b/): never see nor prune each other's objects,
//      and a server pointed at the other's prefix is refused with nothing written.
// Run `npm run build` first.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, cp, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { controlSockets, controlYaml } from './support/daemon.ts';
import { type FaultProxy, type RecordedRequest, startFaultProxy } from './support/fault-proxy.ts';
import { type ListedObject, type S3Handle, startS3, writeCredentialsFile } from './support/s3.ts';
import { BUILT_CLI, type CliResult, filesSourceYaml, makeSandbox, PROJECT_ROOT, type Sandbox } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';

const MiB = 1024 * 1024;
const SHARED_BUCKET = 'shared-bucket';

/** Every retention rule but keep_last off, so keep_last alone decides (the defaults keep everything younger than 2 days). */
const RETENTION_RULES_OFF = 'keep_hourly: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0, keep_yearly: 0, keep_within: 0s, keep_full: 0';

interface RemoteOptions {
  endpoint: string;
  bucket: string;
  prefix: string;
  /** The credentials file (default: the right one, written in the sandbox). */
  credentialsFile?: string;
  retryFor?: string;
  requestTimeout?: string;
  uploadConcurrency?: number;
  /** Further keys of the remote, each a line without indentation, e.g. 'object_lock: { mode: GOVERNANCE, days: 1 }'. */
  extra?: string[];
}

interface Server {
  sandbox: Sandbox;
  /** The folder the files source backs up. */
  data: string;
  /** The right credentials, mode 0600. */
  credentialsFile: string;
  /** Rewrites the remote's config (and the top-level YAML, when given). */
  configure(remote: Partial<RemoteOptions>, topYaml?: string): Promise<void>;
  run(args: string[]): Promise<CliResult>;
  json<T>(args: string[]): Promise<{ code: number; value: T; stderr: string; stdout: string }>;
}

interface CopyReportJson {
  remote: string;
  ok: boolean;
  error?: string;
  copied: { backup: string; chunks_sent: number; bytes_sent: number }[];
  already_there: number;
  packs_sent: number;
  bytes_sent: number;
  requests: { put: number; get: number; head: number; list: number; delete: number; retries: number };
}

interface RemoteListed {
  name: string;
  kind: string;
  status: string;
  chain: string;
  local: boolean;
}

interface PruneJson {
  removed: string[];
  remotes: { remote: string; ok: boolean; error?: string; removed: string[]; packs_removed: number; freed_bytes: number; locked: { key: string; until: string }[] }[];
}

const BEGIN = '# >>> offsite test block';
const END = '# <<< offsite test block';

function remoteYaml(r: RemoteOptions, credentialsFile: string): string {
  return [
    'remotes:',
    '  - name: offsite',
    '    type: s3',
    `    endpoint: ${r.endpoint}`,
    '    region: us-east-1',
    `    bucket: ${r.bucket}`,
    `    prefix: ${r.prefix}`,
    '    force_path_style: true',
    `    credentials_file: ${r.credentialsFile ?? credentialsFile}`,
    '    pack_size: 1MiB',
    `    retry_for: ${r.retryFor ?? '30s'}`,
    `    request_timeout: ${r.requestTimeout ?? '10s'}`,
    `    upload_concurrency: ${r.uploadConcurrency ?? 4}`,
    ...(r.extra ?? []).map((line) => `    ${line}`),
  ].join('\n');
}

/** Random (incompressible) data, text that compresses, and files with particular modes in a subfolder. */
async function writeData(dir: string, randomMiB: number): Promise<void> {
  await mkdir(join(dir, 'bin'), { recursive: true });
  await mkdir(join(dir, 'etc'), { recursive: true });
  await writeFile(join(dir, 'random.bin'), randomBytes(Math.round(randomMiB * MiB)));
  const lines: string[] = [];
  for (let i = 0; i < 12_000; i++) lines.push(`${i.toString(36)} job ${i % 97} finished in ${(i * 7919) % 1000} ms status=${i % 13 === 0 ? 'retry' : 'ok'}`);
  await writeFile(join(dir, 'jobs.log'), `${lines.join('\n')}\n`);
  await writeFile(join(dir, 'bin', 'run.sh'), '#!/bin/sh\necho hello\n');
  await chmod(join(dir, 'bin', 'run.sh'), 0o755);
  await writeFile(join(dir, 'etc', 'app.conf'), 'password = not-really\n');
  await chmod(join(dir, 'etc', 'app.conf'), 0o600);
}

/** Files, folders and modes of `original` and of its restored copy under `restored` are the same, byte for byte. */
async function assertSameTree(original: string, restored: string): Promise<number> {
  let files = 0;
  const walk = async (relative: string) => {
    const here = join(original, relative);
    const there = join(restored, relative);
    const a = await lstat(here);
    const b = await lstat(there);
    assert.equal(b.isDirectory(), a.isDirectory(), `${relative}: same type`);
    assert.equal((b.mode & 0o7777).toString(8), (a.mode & 0o7777).toString(8), `${relative || '.'}: same mode`);
    if (a.isDirectory()) {
      const names = (await readdir(here)).sort();
      assert.deepEqual((await readdir(there)).sort(), names, `${relative || '.'}: same entries`);
      for (const name of names) await walk(join(relative, name));
    } else {
      files += 1;
      assert.ok((await readFile(there)).equals(await readFile(here)), `${relative}: same bytes`);
    }
  };
  await walk('');
  return files;
}

/** The sum of the sizes of every chunk object in the local repository (what a complete remote holds in its packs, once each). */
async function localChunkFiles(repoPath: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else sizes.set(path, (await stat(path)).size);
    }
  };
  if (existsSync(join(repoPath, 'chains'))) await walk(join(repoPath, 'chains'));
  return sizes;
}

/**
 * A private copy of the built CLI (dist/ and the package.json it reads its version from), taken
 * once it is complete: other people rebuild dist/ while tests run, and a bundle whose shared-*.js
 * files are swapped halfway fails to load. It lives under node_modules/.cache so the bundle's
 * external packages still resolve.
 */
async function snapshotBuiltCli(): Promise<{ cli: string; remove: () => Promise<void> }> {
  const cache = join(PROJECT_ROOT, 'node_modules', '.cache');
  await mkdir(cache, { recursive: true });
  const deadline = Date.now() + 120_000;
  for (;;) {
    const install = await mkdtemp(join(cache, 'stackback-offsite-'));
    const dir = join(install, 'dist');
    try {
      await cp(join(PROJECT_ROOT, 'package.json'), join(install, 'package.json'));
      await cp(dirname(BUILT_CLI), dir, { recursive: true });
      const files = await readdir(dir);
      let complete = ['stackback.js', 'chunk-worker.js', 'write-worker.js'].every((file) => files.includes(file));
      for (const file of files.filter((f) => f.endsWith('.js'))) {
        for (const match of (await readFile(join(dir, file), 'utf8')).matchAll(/["']\.\/((?:shared|chunk|write|restore)-[A-Za-z0-9-]+\.js)["']/g)) {
          if (!files.includes(match[1]!)) complete = false;
        }
      }
      if (complete) return { cli: join(dir, 'stackback.js'), remove: () => rm(install, { recursive: true, force: true }) };
    } catch {
      // dist/ changed under the copy: try again.
    }
    await rm(install, { recursive: true, force: true });
    if (Date.now() > deadline) throw new Error(`${dirname(BUILT_CLI)} stays incomplete: run \`npm run build\``);
    await sleep(1000);
  }
}

const sum = (values: Iterable<number>) => [...values].reduce((a, b) => a + b, 0);
const output = (r: CliResult) => `${r.stdout}\n${r.stderr}`;
const isPackPut = (r: RecordedRequest) => r.op === 'PutObject' && /\/packs\//.test(`/${r.key ?? ''}`);

describe('off-site copies to S3 (s3rver, fault proxy, built CLI)', () => {
  let s3: S3Handle;
  let cli: string;
  const cleanups: (() => Promise<unknown>)[] = [];

  before(async () => {
    assert.ok(existsSync(BUILT_CLI), `${BUILT_CLI} is missing: run \`npm run build\` first`);
    const built = await snapshotBuiltCli();
    cli = built.cli;
    cleanups.push(built.remove);
    s3 = await startS3({ buckets: ['stackback-test', SHARED_BUCKET] });
    cleanups.push(() => s3.stop());
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  async function proxyFor(options: Parameters<typeof startFaultProxy>[1] = {}): Promise<FaultProxy> {
    const proxy = await startFaultProxy(s3.endpoint, options);
    cleanups.push(() => proxy.stop());
    return proxy;
  }

  /** A "server": a sandbox backing up a data folder (`randomMiB` of random data plus text), with remote `offsite`. */
  async function makeServer(remote: RemoteOptions, options: { randomMiB?: number; topYaml?: string; repository?: string } = {}): Promise<Server> {
    const data = await mkdtemp(join(tmpdir(), 'stackback-offsite-data-'));
    cleanups.push(() => rm(data, { recursive: true, force: true }));
    await writeData(data, options.randomMiB ?? 2.5);
    const sandbox = await makeSandbox('', { filesYaml: filesSourceYaml([data]), extraYaml: `${BEGIN}\n${END}`, cli, ...(options.repository ? { repository: options.repository } : {}) });
    cleanups.push(() => sandbox.cleanup());
    const credentialsFile = join(sandbox.dir, 's3.credentials');
    await writeCredentialsFile(credentialsFile, s3);
    // Its own control sockets: never a daemon some other test (or engineer) runs.
    const control = controlYaml(controlSockets(sandbox.dir));
    let current = { ...remote };
    let top = options.topYaml ?? '';
    const write = async () => {
      const text = await readFile(sandbox.configPath, 'utf8');
      const start = text.indexOf(BEGIN);
      const end = text.indexOf(END);
      await writeFile(sandbox.configPath, `${text.slice(0, start + BEGIN.length)}\n${[control, top, remoteYaml(current, credentialsFile)].filter(Boolean).join('\n')}\n${text.slice(end)}`);
    };
    await write();
    const server: Server = {
      sandbox,
      data,
      credentialsFile,
      async configure(changes, topYaml) {
        current = { ...current, ...changes };
        if (topYaml !== undefined) top = topYaml;
        await write();
      },
      run: (args) => sandbox.run(args),
      async json<T>(args: string[]) {
        const result = await sandbox.run([...args, '--json']);
        let value: T;
        try {
          value = JSON.parse(result.stdout) as T;
        } catch {
          throw new Error(`stackback ${args.join(' ')} --json printed no JSON (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
        }
        return { code: result.code, value, stderr: result.stderr, stdout: result.stdout };
      },
    };
    return server;
  }

  async function backup(server: Server, kind: 'full' | 'incremental'): Promise<{ name: string; chain: string; kind: string }> {
    const result = await server.json<{ backup: string; chain: string; kind: string; status: string }>(['backup', `--${kind}`]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.value.status, 'ok');
    return { name: result.value.backup, chain: result.value.chain, kind: result.value.kind };
  }

  async function copy(server: Server, args: string[] = []): Promise<CopyReportJson> {
    const result = await server.json<CopyReportJson[]>(['copy', ...args]);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.equal(result.value.length, 1);
    assert.equal(result.value[0]!.ok, true, result.value[0]!.error);
    return result.value[0]!;
  }

  async function remoteList(server: Server): Promise<RemoteListed[]> {
    const result = await server.json<RemoteListed[]>(['list', '--remote', 'offsite']);
    assert.equal(result.code, 0, result.stderr);
    return result.value;
  }

  async function verifyRemote(server: Server, target: string | '--all', deep: boolean): Promise<void> {
    const result = await server.run(['verify', target, '--remote', 'offsite', ...(deep ? ['--deep'] : [])]);
    assert.equal(result.code, 0, `verify ${target} --remote offsite${deep ? ' --deep' : ''} failed:\n${output(result)}`);
    assert.match(result.stdout, /: OK \((quick|deep), on remote offsite\)/);
    assert.doesNotMatch(result.stdout, /FAILED/);
  }

  /** Keys under `prefix` with their ETag and size (what "unchanged" means for an object). */
  async function snapshot(prefix: string, bucket?: string): Promise<Map<string, string>> {
    return new Map((await s3.list(prefix, bucket)).map((o: ListedObject) => [o.key, `${o.etag} ${o.size}`]));
  }

  const manifestNames = async (prefix: string, bucket?: string) =>
    (await s3.list(`${prefix}manifests/`, bucket)).map((o) => o.key.slice(`${prefix}manifests/`.length).replace(/\.json$/, '')).sort();

  /** The chunk bytes in every pack under `prefix`: each pack's size less its header and sealed index. */
  async function packDataBytes(prefix: string, bucket?: string, only?: (key: string) => boolean): Promise<{ packs: number; bytes: number }> {
    let packs = 0;
    let bytes = 0;
    for (const object of await s3.list(`${prefix}packs/`, bucket)) {
      if (only && !only(object.key)) continue;
      const body = (await s3.read(object.key, bucket))!;
      assert.equal(body.subarray(0, 8).toString('latin1'), 'SBPACK01', `${object.key} is a pack`);
      bytes += body.length - 12 - body.readUInt32BE(8);
      packs += 1;
    }
    return { packs, bytes };
  }

  // ──────────────────────────────────────────────────────────────────────────────────────────
  test('1. faults between stackback and the bucket: retried until the copy completes (byte-identical restore); faults outlasting retry_for fail clearly, no incomplete manifest, a later copy completes', async () => {
    const proxy = await proxyFor();
    const prefix = 'faults/';
    const server = await makeServer({ endpoint: proxy.endpoint, bucket: s3.bucket, prefix, retryFor: '30s', requestTimeout: '1s', uploadConcurrency: 2 });
    const first = await backup(server, 'full');

    // Every kind of fault, each on requests the copy must make.
    const faults = {
      slowDown: proxy.slowDown(2, { op: ['HeadObject', 'GetObject'] }),
      serverError: proxy.serverError(2, { op: 'ListObjectsV2' }),
      dropPack: proxy.dropMidUpload(2, { key: /\/packs\// }),
      stallPack: proxy.stall(1, { op: 'PutObject', key: /\/packs\// }),
      slowManifest: proxy.slowDown(1, { op: 'PutObject', key: /\/manifests\// }),
      dropManifest: proxy.dropMidUpload(1, { key: /\/manifests\// }),
    };
    const started = Date.now();
    const report = await copy(server);
    const seconds = (Date.now() - started) / 1000;
    assert.deepEqual(report.copied.map((c) => c.backup), [first.name]);
    const expectedHits = { slowDown: 2, serverError: 2, dropPack: 2, stallPack: 1, slowManifest: 1, dropManifest: 1 };
    for (const [name, fault] of Object.entries(faults)) assert.equal(fault.hits, expectedHits[name as keyof typeof faults], `${name} was hit`);
    const hits = sum(Object.values(faults).map((f) => f.hits));
    assert.ok(report.requests.retries >= hits, `every fault cost a retry (${report.requests.retries} retries, ${hits} faults)`);
    assert.ok(seconds < 20, `the copy took ${seconds} s`);
    // The dropped and stalled uploads never reached the bucket; every pack PUT that did is there once.
    const storedPackPuts = proxy.filter((r) => isPackPut(r) && r.status === 200).map((r) => r.key!);
    assert.equal(new Set(storedPackPuts).size, storedPackPuts.length, 'no pack stored twice');
    assert.deepEqual((await s3.list(`${prefix}packs/`)).map((o) => o.key).sort(), [...storedPackPuts].sort());
    assert.equal(report.packs_sent, storedPackPuts.length);
    assert.ok(storedPackPuts.length >= 2, `several packs (${storedPackPuts.length})`);
    assert.deepEqual(await manifestNames(prefix), [first.name]);

    await verifyRemote(server, '--all', true);
    const target = join(server.sandbox.dir, 'restored');
    const restored = await server.run(['restore', first.name, '--from', 'offsite', '--target-dir', target, '--yes']);
    assert.equal(restored.code, 0, output(restored));
    assert.ok((await assertSameTree(server.data, join(target, server.data))) >= 4);

    // Faults that outlast retry_for: the copy gives up, says so, and commits nothing incomplete.
    // (A long request_timeout here: only the injected faults may fail a request.)
    await server.configure({ retryFor: '2s', requestTimeout: '10s' });
    await writeFile(join(server.data, 'more.bin'), randomBytes(2 * MiB));
    const second = await backup(server, 'full');
    const firstPackOfCopy = proxy.requests.length;
    // The first pack of this copy goes through; every later one fails for longer than retry_for.
    const persistent = proxy.serverError({ forMs: 120_000 }, { test: (r) => isPackPut(r) && proxy.requests.some((p) => p.seq > firstPackOfCopy && p.seq < r.seq && isPackPut(p)) });
    const failStart = Date.now();
    const failed = await server.run(['copy']);
    const failSeconds = (Date.now() - failStart) / 1000;
    assert.equal(failed.code, 1, output(failed));
    assert.match(failed.stdout, /remote offsite: FAILED after 0 backup\(s\): remote offsite \(.*\): could not upload packs\/\S+: still failing after \d+ attempt\(s\) in \d+ s \(InternalError 500/);
    assert.ok(persistent.hits >= 2, `the fault was retried (${persistent.hits} hits)`);
    assert.ok(failSeconds < 15, `gave up within retry_for (took ${failSeconds} s)`);
    // No manifest of the unfinished backup was even sent, and every manifest on the remote is complete.
    assert.equal(proxy.count({ op: 'PutObject', key: `${prefix}manifests/${second.name}.json` }), 0);
    assert.ok(proxy.count((r) => isPackPut(r) && r.seq > firstPackOfCopy && r.status === 200) >= 1, 'part of the second backup reached the bucket');
    const there = await manifestNames(prefix);
    assert.deepEqual(there, [first.name]);
    for (const name of there) await verifyRemote(server, name, false);
    assert.deepEqual((await remoteList(server)).map((b) => b.name), [first.name]);

    // Without faults, the next copy completes, reusing what the failed one stored.
    persistent.cancel();
    const third = await copy(server);
    assert.deepEqual(third.copied.map((c) => c.backup), [second.name]);
    assert.equal(third.already_there, 1);
    assert.deepEqual((await remoteList(server)).map((b) => b.name), [first.name, second.name]);
    assert.equal((await packDataBytes(prefix)).bytes, sum((await localChunkFiles(server.sandbox.repoPath)).values()), 'each chunk once on the remote');
    await verifyRemote(server, '--all', true);
  });

  // ──────────────────────────────────────────────────────────────────────────────────────────
  test('2. kill -9 in the middle of a copy, then copy again: completes, nothing sent twice, verify --deep passes', async () => {
    const proxy = await proxyFor();
    const prefix = 'killed/';
    // One upload at a time and a long request_timeout: the held upload waits for the kill.
    const server = await makeServer({ endpoint: proxy.endpoint, bucket: s3.bucket, prefix, uploadConcurrency: 1, requestTimeout: '60s' }, { randomMiB: 8 });
    await backup(server, 'full');
    const localBytes = sum((await localChunkFiles(server.sandbox.repoPath)).values());

    // The first two packs go through; the third is held by the proxy, then the copy is killed.
    proxy.stall(1000, { test: (r) => isPackPut(r) && proxy.requests.filter((p) => p.seq < r.seq && isPackPut(p)).length >= 2 });
    const child = execa(process.execPath, [cli, 'copy', '--config', server.sandbox.configPath], { reject: false });
    await waitFor('two packs stored and the third held', () => proxy.count((r) => isPackPut(r) && r.status === 200) === 2 && proxy.stalled === 1, 30_000, 20);
    child.kill('SIGKILL');
    const killed = await child;
    assert.equal(killed.signal, 'SIGKILL');
    // The held upload dies with its client. (Stopping the proxy drops it; releasing it would
    // forward it: a paused socket does not notice that its client is gone.)
    await proxy.stop();
    const firstRun = [...proxy.requests];
    const before = await snapshot(prefix);
    const packsBefore = [...before.keys()].filter((k) => k.includes('/packs/'));
    assert.equal(packsBefore.length, 2);
    assert.deepEqual(await manifestNames(prefix), [], 'no manifest: the backup is not on the remote');

    const proxy2 = await proxyFor();
    await server.configure({ endpoint: proxy2.endpoint });
    assert.deepEqual(await remoteList(server), []);
    proxy2.resetRequests();
    const report = await copy(server);
    assert.equal(report.copied.length, 1);
    const resumed = proxy2.requests;
    const resentPacks = resumed.filter(isPackPut);
    // How many packs the rest makes depends on where the chunker cut (chunks of up to 4 MiB): at least one.
    assert.ok(resentPacks.length >= 1, `the rest was sent (${resentPacks.length} packs)`);
    assert.equal(resumed.filter((r) => r.op === 'PutObject' && r.key === `${prefix}repo.json`).length, 0, 'repo.json not sent again');
    assert.deepEqual(resumed.filter((r) => r.method === 'PUT' && !isPackPut(r)).map((r) => r.key), [`${prefix}manifests/${report.copied[0]!.backup}.json`]);
    // The packs stored before the kill are untouched and were not sent again…
    for (const key of packsBefore) assert.ok(!resentPacks.some((r) => r.key === key), `${key} not sent again`);
    const after = await snapshot(prefix);
    for (const key of packsBefore) assert.equal(after.get(key), before.get(key), `${key} unchanged`);
    // …no key was stored twice over the two runs…
    const stored = [...firstRun, ...resumed].filter((r) => r.op === 'PutObject' && r.status === 200).map((r) => r.key!);
    assert.equal(new Set(stored).size, stored.length, `no key PUT twice: ${stored.join(', ')}`);
    // …and their chunks were not sent again either: the packs hold each local chunk exactly once.
    const packed = await packDataBytes(prefix);
    assert.equal(packed.packs, 2 + resentPacks.length);
    assert.equal(packed.bytes, localBytes, 'the remote holds each chunk once');
    await verifyRemote(server, '--all', true);
  });

  // ──────────────────────────────────────────────────────────────────────────────────────────
  test('3. an incremental copy sends only the new chunks (in packs) and its manifest', async () => {
    const proxy = await proxyFor();
    const prefix = 'incremental/';
    const server = await makeServer({ endpoint: proxy.endpoint, bucket: s3.bucket, prefix }, { randomMiB: 4 });
    const full = await backup(server, 'full');
    const fullCopy = await copy(server);
    const chunksBefore = await localChunkFiles(server.sandbox.repoPath);
    const remoteBefore = await snapshot(prefix);

    await writeFile(join(server.data, 'new.bin'), randomBytes(MiB / 4));
    await writeFile(join(server.data, 'etc', 'app.conf'), 'password = changed\n');
    const incremental = await backup(server, 'incremental');
    assert.equal(incremental.kind, 'incremental');
    assert.equal(incremental.chain, full.chain);
    const newChunks = [...(await localChunkFiles(server.sandbox.repoPath))].filter(([path]) => !chunksBefore.has(path));
    assert.ok(newChunks.length >= 2, `new chunks locally (${newChunks.length})`);
    const row = (await server.json<{ name: string; chunks: number; chunks_new: number }[]>(['list'])).value.find((b) => b.name === incremental.name)!;
    assert.equal(row.chunks_new, newChunks.length);
    assert.ok(row.chunks_new < row.chunks, `the incremental reuses chunks (${row.chunks_new} new of ${row.chunks})`);

    proxy.resetRequests();
    const report = await copy(server);
    assert.deepEqual(report.copied.map((c) => c.backup), [incremental.name]);
    assert.equal(report.already_there, 1);
    assert.equal(report.copied[0]!.chunks_sent, newChunks.length, 'exactly the new chunks');
    const puts = proxy.filter({ method: 'PUT' });
    const packPuts = puts.filter(isPackPut);
    assert.deepEqual(puts.filter((r) => !isPackPut(r)).map((r) => r.key), [`${prefix}manifests/${incremental.name}.json`], 'besides packs, only the manifest (no repo.json)');
    assert.equal(packPuts.length, report.packs_sent);
    assert.ok(packPuts.length >= 1);
    assert.ok(packPuts.every((r) => r.key!.startsWith(`${prefix}packs/${full.chain}/`)), 'in the chain of the full backup');
    assert.equal(puts.at(-1)!.key, `${prefix}manifests/${incremental.name}.json`, 'the manifest last');
    assert.equal(proxy.count({ op: 'DeleteObject' }), 0);
    const newPackKeys = new Set(packPuts.map((r) => r.key!));
    const newBytes = sum(newChunks.map(([, size]) => size));
    assert.equal((await packDataBytes(prefix, undefined, (key) => newPackKeys.has(key))).bytes, newBytes, 'the new packs hold exactly the new chunks');
    assert.ok(newBytes < fullCopy.bytes_sent, `less than the full copy (${newBytes} of ${fullCopy.bytes_sent} bytes)`);
    const remoteAfter = await snapshot(prefix);
    for (const [key, value] of remoteBefore) assert.equal(remoteAfter.get(key), value, `${key} untouched`);

    // A copy with nothing new sends nothing.
    proxy.resetRequests();
    const idle = await copy(server);
    assert.equal(idle.copied.length, 0);
    assert.equal(idle.already_there, 2);
    assert.equal(proxy.count({ method: 'PUT' }), 0);
    await verifyRemote(server, '--all', false);
  });

  // ──────────────────────────────────────────────────────────────────────────────────────────
  test('4. retention on the remote: keep_last 1 there, everything kept locally; unused packs collected after gc_grace', async () => {
    const prefix = 'retention/';
    const server = await makeServer(
      { endpoint: s3.endpoint, bucket: s3.bucket, prefix, extra: ['retention: { keep_last: 1 }'] },
      { topYaml: `retention: { keep_last: 10, ${RETENTION_RULES_OFF}, gc_grace: 1d }`, randomMiB: 1.5 },
    );
    // A copy after each backup (as schedule.copy: after_backup does): a copy sends only what the remote's policy keeps.
    const backups = [];
    for (let i = 0; i < 3; i++) {
      await writeFile(join(server.data, 'round.txt'), `round ${i}\n`);
      backups.push(await backup(server, 'full'));
      await copy(server);
    }
    assert.equal(new Set(backups.map((b) => b.chain)).size, 3, 'three chains');
    assert.deepEqual((await remoteList(server)).map((b) => b.name), backups.map((b) => b.name));
    const packsOf = (objects: Map<string, string>, chain: string) => [...objects.keys()].filter((k) => k.startsWith(`${prefix}packs/${chain}/`));
    const before = await snapshot(prefix);
    for (const b of backups) assert.ok(packsOf(before, b.chain).length >= 2, `packs of ${b.chain}`);

    // A long gc_grace: the manifests go, no pack does.
    let pruned = await server.json<PruneJson>(['prune']);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.deepEqual(pruned.value.removed, [], 'nothing removed locally');
    assert.equal(pruned.value.remotes.length, 1);
    const remote = pruned.value.remotes[0]!;
    assert.equal(remote.ok, true, remote.error);
    assert.deepEqual([...remote.removed].sort(), backups.slice(0, 2).map((b) => b.name).sort());
    assert.equal(remote.packs_removed, 0, 'gc_grace keeps young packs');
    assert.deepEqual((await remoteList(server)).map((b) => b.name), [backups[2]!.name]);
    const graced = await snapshot(prefix);
    assert.deepEqual([...graced.keys()].filter((k) => k.includes('/packs/')).sort(), [...before.keys()].filter((k) => k.includes('/packs/')).sort());
    const locals = await server.json<{ name: string }[]>(['list']);
    assert.deepEqual(locals.value.map((b) => b.name), backups.map((b) => b.name), 'all three kept locally');

    // gc_grace 0s: the packs only the removed backups used are deleted, the kept backup's stay.
    await server.configure({}, `retention: { keep_last: 10, ${RETENTION_RULES_OFF}, gc_grace: 0s }`);
    pruned = await server.json<PruneJson>(['prune']);
    assert.equal(pruned.code, 0, pruned.stderr);
    const collected = pruned.value.remotes[0]!;
    assert.equal(collected.ok, true, collected.error);
    assert.deepEqual(collected.removed, []);
    const gone = [...packsOf(before, backups[0]!.chain), ...packsOf(before, backups[1]!.chain)];
    assert.equal(collected.packs_removed, gone.length);
    assert.equal(collected.freed_bytes, sum(gone.map((k) => Number(before.get(k)!.split(' ')[1]))));
    const afterGc = await snapshot(prefix);
    assert.deepEqual([...afterGc.keys()].filter((k) => k.includes('/packs/')).sort(), packsOf(before, backups[2]!.chain).sort());
    for (const key of packsOf(before, backups[2]!.chain)) assert.equal(afterGc.get(key), before.get(key));
    assert.ok(afterGc.has(`${prefix}repo.json`));
    assert.equal((await server.sandbox.manifests()).length, 3, 'still three backups locally');
    await verifyRemote(server, '--all', true);
  });

  // ──────────────────────────────────────────────────────────────────────────────────────────
  describe('5. object lock', () => {
    let server: Server;
    let proxy: FaultProxy;
    const prefix = 'locked/';
    let lockFailure: CliResult;
    let third: { name: string };

    before(async () => {
      proxy = await proxyFor();
      server = await makeServer(
        { endpoint: proxy.endpoint, bucket: s3.bucket, prefix, extra: ['object_lock: { mode: GOVERNANCE, days: 1 }', 'retention: { keep_last: 1 }'] },
        { topYaml: `retention: { keep_last: 10, ${RETENTION_RULES_OFF}, gc_grace: 0s }`, randomMiB: 1.5 },
      );
    });

    test('every object is uploaded locked; prune keeps what is still locked (a dropped backup\'s manifest, orphan packs) and reports it with its date, exit 0', async () => {
      const copyStarted = Date.now();
      const first = await backup(server, 'full');
      await copy(server);
      const second = await backup(server, 'full');
      await copy(server);
      const puts = proxy.filter({ op: 'PutObject', status: 200 });
      assert.ok(puts.length >= 5);
      for (const put of puts) {
        assert.equal(put.headers['x-amz-object-lock-mode'], 'GOVERNANCE', `${put.key} locked`);
        const until = Date.parse(String(put.headers['x-amz-object-lock-retain-until-date']));
        assert.ok(Math.abs(until - (copyStarted + 86_400_000)) < 120_000, `${put.key} locked for a day`);
      }
      // A copy whose manifest is refused leaves packs no backup uses (orphans, what gc collects).
      await writeFile(join(server.data, 'later.bin'), randomBytes(MiB / 2));
      third = await backup(server, 'incremental');
      const orphansFrom = proxy.requests.length;
      const refusal = proxy.respond(1000, 403, 'AccessDenied', 'Access Denied', { op: 'PutObject', key: /\/manifests\// });
      const refused = await server.run(['copy']);
      refusal.cancel();
      assert.equal(refused.code, 1, output(refused));
      const orphans = proxy.requests.slice(orphansFrom).filter((r) => isPackPut(r) && r.status === 200).map((r) => r.key!);
      assert.ok(orphans.length >= 1, 'the third backup\'s packs are on the bucket');

      const before = await snapshot(prefix);
      const uploaded = new Map((await s3.list(prefix)).map((o) => [o.key, o.lastModified.getTime()]));
      const pruned = await server.json<PruneJson>(['prune']);
      assert.equal(pruned.code, 0, `${pruned.stdout}\n${pruned.stderr}`);
      const remote = pruned.value.remotes[0]!;
      assert.equal(remote.ok, true, remote.error);
      assert.deepEqual(remote.removed, [], 'the old backup is still locked');
      assert.equal(remote.packs_removed, 0);
      // The first backup's manifest (its packs stay in use while it does) and the orphans.
      assert.deepEqual(remote.locked.map((l) => `${prefix}${l.key}`).sort(), [`${prefix}manifests/${first.name}.json`, ...orphans].sort());
      for (const l of remote.locked) {
        const until = Date.parse(l.until);
        assert.ok(Math.abs(until - (uploaded.get(`${prefix}${l.key}`)! + 86_400_000)) < 5_000, `${l.key} locked until a day after its upload (${l.until})`);
      }
      assert.deepEqual(await snapshot(prefix), before, 'nothing deleted');
      assert.equal(proxy.count({ op: 'DeleteObject' }), 0);
      assert.deepEqual((await remoteList(server)).map((b) => b.name), [first.name, second.name]);
      await verifyRemote(server, '--all', false);
      const text = await server.run(['prune']);
      assert.equal(text.code, 0, output(text));
      assert.match(text.stdout, new RegExp(`kept manifests/${first.name}\\.json: object lock until \\d{4}-`));
    });

    test('a bucket without object lock: the copy fails naming the remote and the cause', async () => {
      const fault = proxy.respond(1000, 400, 'InvalidRequest', 'Bucket is missing Object Lock Configuration', { method: 'PUT' });
      lockFailure = await server.run(['copy']);
      fault.cancel();
      assert.ok(fault.hits >= 1);
      assert.equal(lockFailure.code, 1, output(lockFailure));
      assert.match(lockFailure.stdout, /remote offsite: FAILED after 0 backup\(s\): remote offsite \(.*\): object lock is not enabled on bucket stackback-test \(InvalidRequest 400: Bucket is missing Object Lock Configuration\)/);
      assert.ok(!(await manifestNames(prefix)).includes(third.name));
    });

    test('…and says what to do about it (the hint names remotes[].object_lock)', () => {
      assert.match(output(lockFailure), /object_lock/);
    });
  });

  // ──────────────────────────────────────────────────────────────────────────────────────────
  describe('6. wrong credentials, missing bucket, clock, region, unknown remote', () => {
    let server: Server;
    let verifying: FaultProxy;
    const SECRET = 'wJalrXUtnWRONGsecret0000QQQ9876zz';
    const OTHER_SECRET = 'otherSECRETnobodyHas1234567890xyz';
    const results = new Map<string, CliResult>();
    let written: string[] = [];

    before(async () => {
      // A proxy that checks SigV4 signatures as S3 does (s3rver checks only the access key id).
      verifying = await proxyFor({ verifySignatures: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
      server = await makeServer({ endpoint: verifying.endpoint, bucket: s3.bucket, prefix: 'errors/', retryFor: '2s' }, { randomMiB: 0.5 });
      await backup(server, 'full');
      const wrongSecret = join(server.sandbox.dir, 'wrong-secret.credentials');
      await writeCredentialsFile(wrongSecret, { accessKeyId: s3.accessKeyId, secretAccessKey: SECRET });
      const unknownId = join(server.sandbox.dir, 'unknown-id.credentials');
      await writeCredentialsFile(unknownId, { accessKeyId: 'AKIANOSUCHKEY0000000', secretAccessKey: OTHER_SECRET });
      const attempt = async (label: string, changes: Partial<RemoteOptions>) => {
        await server.configure(changes);
        results.set(label, await server.run(['copy']));
      };
      await attempt('wrong secret', { credentialsFile: wrongSecret });
      await attempt('unknown key id', { credentialsFile: unknownId });
      await attempt('unknown key id, straight to s3rver', { credentialsFile: unknownId, endpoint: s3.endpoint });
      await attempt('missing bucket', { credentialsFile: server.credentialsFile, endpoint: verifying.endpoint, bucket: 'no-such-bucket' });
      await server.configure({ bucket: s3.bucket });
      const fault = async (label: string, status: number, code: string, message: string, match?: Parameters<FaultProxy['respond']>[4]) => {
        const f = verifying.respond(1000, status, code, message, match);
        results.set(label, await server.run(['copy']));
        f.cancel();
      };
      const skew = 'The difference between the request time and the current time is too large.';
      const malformed = "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-central-1'";
      await fault('skew', 403, 'RequestTimeTooSkewed', skew);
      await fault('skew, on requests with a body', 403, 'RequestTimeTooSkewed', skew, { method: ['GET', 'PUT'] });
      await fault('301', 301, 'PermanentRedirect', 'The bucket you are attempting to access must be addressed using the specified endpoint.');
      await fault('malformed', 400, 'AuthorizationHeaderMalformed', malformed);
      await fault('malformed, on requests with a body', 400, 'AuthorizationHeaderMalformed', malformed, { method: ['GET', 'PUT'] });
      results.set('unknown remote', await server.run(['copy', '--remote', 'nope']));
      written = (await s3.list('errors/')).map((o) => o.key);
    });

    const failedCopy = (label: string) => {
      const result = results.get(label)!;
      assert.equal(result.code, 1, `${label}: ${output(result)}`);
      assert.match(result.stdout, /^remote offsite: FAILED after 0 backup\(s\): remote offsite \(http:\/\/127\.0\.0\.1:\d+, bucket [a-z-]+\)/, label);
      return output(result);
    };

    test('wrong secret, unknown access key id: exit 1, the remote named, the request refused, the secret never shown', () => {
      for (const label of ['wrong secret', 'unknown key id', 'unknown key id, straight to s3rver']) {
        const text = failedCopy(label);
        assert.match(text, /refused/, label);
        assert.ok(!text.includes(SECRET) && !text.includes(OTHER_SECRET), `${label}: no secret in the output`);
      }
      assert.deepEqual(written, [], 'no failed attempt wrote anything to the bucket');
    });

    test('wrong credentials: the message says the credentials were refused', () => {
      for (const label of ['wrong secret', 'unknown key id', 'unknown key id, straight to s3rver']) assert.match(failedCopy(label), /refused the credentials/, label);
    });

    test('a missing bucket: says the bucket does not exist', () => {
      assert.match(failedCopy('missing bucket'), /bucket no-such-bucket does not exist/);
    });

    test('301 PermanentRedirect: says the bucket is in another region', () => {
      assert.match(failedCopy('301'), /the bucket is not in region us-east-1/);
    });

    test('RequestTimeTooSkewed and AuthorizationHeaderMalformed on requests with a body: clock and region named', () => {
      assert.match(failedCopy('skew, on requests with a body'), /this machine's clock differs too much from the server's \(RequestTimeTooSkewed 403/);
      assert.match(failedCopy('malformed, on requests with a body'), /the bucket is not in region us-east-1 \(AuthorizationHeaderMalformed 400/);
    });

    test('RequestTimeTooSkewed / AuthorizationHeaderMalformed on every request (as S3 answers a skewed clock or a wrong region): clock and region named', () => {
      assert.match(failedCopy('skew'), /clock/);
      assert.match(failedCopy('malformed'), /not in region us-east-1/);
    });

    test('an unknown remote name: exit 2, the configured remotes named', () => {
      const result = results.get('unknown remote')!;
      assert.equal(result.code, 2, output(result));
      assert.match(result.stderr, /no remote named "nope"/);
      assert.match(result.stderr, /configured remotes: offsite/);
    });
  });

  // ──────────────────────────────────────────────────────────────────────────────────────────
  describe('8. upload_concurrency, bandwidth_limit and storage_class shape the uploads', () => {
    /** Pack PUTs the proxy holds at once while every PUT is stalled for a moment: the copy's concurrency. */
    async function packPutsHeldAtOnce(uploadConcurrency: number): Promise<number> {
      const proxy = await proxyFor();
      const server = await makeServer({ endpoint: proxy.endpoint, bucket: s3.bucket, prefix: `concurrency-${uploadConcurrency}/`, uploadConcurrency }, { randomMiB: 6 });
      await backup(server, 'full');
      const pending = () => proxy.requests.filter((r) => isPackPut(r) && !r.done).length;
      proxy.stall({ forMs: 5_000 }, { op: 'PutObject', key: /\/packs\// });
      const running = server.run(['copy']);
      await waitFor('the first pack PUT to be held', async () => (pending() > 0 ? true : undefined));
      // Counted once the copy has had time to start every upload its concurrency allows (packs are built in milliseconds).
      await sleep(1_500);
      const held = pending();
      const result = await running;
      assert.equal(result.code, 0, output(result));
      return held;
    }

    test('upload_concurrency bounds the pack PUTs in flight', async () => {
      assert.equal(await packPutsHeldAtOnce(1), 1);
      assert.equal(await packPutsHeldAtOnce(3), 3);
    });

    test('bandwidth_limit holds the upload rate down; storage_class goes with every PUT', async () => {
      const proxy = await proxyFor();
      const server = await makeServer({ endpoint: proxy.endpoint, bucket: s3.bucket, prefix: 'throttled/', extra: ['bandwidth_limit: 2MiB', 'storage_class: STANDARD_IA'] }, { randomMiB: 6 });
      await backup(server, 'full');
      const started = Date.now();
      const report = await copy(server);
      const seconds = (Date.now() - started) / 1000;
      // Every pack but the first waits for its share of the rate: at least (bytes − one pack) / rate.
      const floor = (report.bytes_sent - MiB) / (2 * MiB);
      assert.ok(report.bytes_sent > 5 * MiB, `sent ${report.bytes_sent} bytes`);
      assert.ok(seconds >= floor * 0.9, `a ${report.bytes_sent}-byte copy at 2 MiB/s took ${seconds} s (at least ${floor.toFixed(1)} s expected)`);
      const puts = proxy.requests.filter((r) => r.op === 'PutObject');
      assert.ok(puts.length >= 6);
      for (const put of puts) assert.equal(put.headers['x-amz-storage-class'], 'STANDARD_IA', put.key);
    });
  });

  // ──────────────────────────────────────────────────────────────────────────────────────────
  describe('7. one bucket, two servers (prefixes a/ and b/)', () => {
    const topYaml = `retention: { keep_last: 10, ${RETENTION_RULES_OFF}, gc_grace: 0s }`;
    let refusal: { copy: CliResult; prune: CliResult; pruneJson: CliResult };

    test('each lists and prunes only its own backups; B pointed at A\'s prefix is refused, nothing written or deleted', async () => {
      const a = await makeServer({ endpoint: s3.endpoint, bucket: SHARED_BUCKET, prefix: 'a/', extra: ['retention: { keep_last: 1 }'] }, { topYaml, randomMiB: 1 });
      const b = await makeServer({ endpoint: s3.endpoint, bucket: SHARED_BUCKET, prefix: 'b/', extra: ['retention: { keep_last: 1 }'] }, { topYaml, randomMiB: 1 });
      const a1 = await backup(a, 'full');
      await copy(a);
      const b1 = await backup(b, 'full');
      await copy(b);
      const a2 = await backup(a, 'full');
      await copy(a);
      const listedA = await remoteList(a);
      const listedB = await remoteList(b);
      assert.deepEqual(listedA.map((x) => [x.name, x.chain, x.local]), [a1, a2].map((x) => [x.name, x.chain, true]));
      assert.deepEqual(listedB.map((x) => [x.name, x.chain, x.local]), [[b1.name, b1.chain, true]]);
      const keysB = await snapshot('b/', SHARED_BUCKET);
      assert.ok([...keysB.keys()].some((k) => k.startsWith(`b/packs/${b1.chain}/`)));
      assert.ok(![...keysB.keys()].some((k) => k.includes(a1.chain) || k.includes(a2.chain)));

      // A's prune removes its older backup and its packs; none of B's objects.
      const pruned = await a.json<PruneJson>(['prune']);
      assert.equal(pruned.code, 0, pruned.stderr);
      assert.deepEqual(pruned.value.remotes[0]!.removed, [a1.name]);
      assert.ok(pruned.value.remotes[0]!.packs_removed >= 1);
      assert.equal((await s3.list(`a/packs/${a1.chain}/`, SHARED_BUCKET)).length, 0);
      assert.deepEqual(await snapshot('b/', SHARED_BUCKET), keysB, "B's objects untouched");
      assert.deepEqual((await remoteList(b)).map((x) => x.name), [b1.name]);

      // B pointed at A's prefix: its copy is refused before anything is written, its prune deletes nothing there.
      const everything = await snapshot('', SHARED_BUCKET);
      await b.configure({ prefix: 'a/' });
      refusal = { copy: await b.run(['copy']), prune: await b.run(['prune']), pruneJson: await b.run(['prune', '--json']) };
      assert.equal(refusal.copy.code, 1, output(refusal.copy));
      assert.match(refusal.copy.stdout, /^remote offsite: FAILED after 0 backup\(s\): .*remote offsite \(s3:\/\/shared-bucket\/a\/\)/);
      assert.equal(refusal.prune.code, 1, output(refusal.prune));
      assert.match(refusal.prune.stdout, /remote offsite: prune FAILED: .*remote offsite \(s3:\/\/shared-bucket\/a\/\)/);
      const json = JSON.parse(refusal.pruneJson.stdout) as PruneJson;
      assert.equal(json.remotes[0]!.ok, false);
      assert.deepEqual(json.remotes[0]!.removed, []);
      assert.deepEqual(await snapshot('', SHARED_BUCKET), everything, 'nothing written or deleted in the bucket');
      assert.deepEqual((await remoteList(a)).map((x) => x.name), [a2.name]);
      await verifyRemote(a, '--all', false);
    });

    test('…and the refusal says the prefix holds another repository (REMOTE_MISMATCH), not that the key is wrong', () => {
      assert.match(refusal.copy.stdout, /holds repository \S+, not this server's repository/);
      assert.match(refusal.prune.stdout, /holds repository \S+, not this server's/);
    });

    test('prune --json exits 1 when the prune of a remote failed, as prune does', () => {
      assert.equal(refusal.pruneJson.code, 1);
    });

    test('plain (unencrypted) repositories: B pointed at A\'s prefix is refused with REMOTE_MISMATCH, nothing written', async () => {
      const plain = 'encryption: none';
      const c = await makeServer({ endpoint: s3.endpoint, bucket: SHARED_BUCKET, prefix: 'c/' }, { topYaml, randomMiB: 0.25, repository: plain });
      const d = await makeServer({ endpoint: s3.endpoint, bucket: SHARED_BUCKET, prefix: 'c/' }, { topYaml, randomMiB: 0.25, repository: plain });
      await backup(c, 'full');
      await copy(c);
      await backup(d, 'full');
      const everything = await snapshot('', SHARED_BUCKET);
      const refused = await d.json<CopyReportJson[]>(['copy']);
      assert.equal(refused.code, 1);
      assert.equal(refused.value[0]!.ok, false);
      assert.match(refused.value[0]!.error!, /^remote offsite \(s3:\/\/shared-bucket\/c\/\) holds repository \S+, not this server's repository \S+$/);
      assert.deepEqual(await snapshot('', SHARED_BUCKET), everything, 'nothing written');
    });
  });
});
