// Prometheus metrics (issue 17) as a monitoring system sees them: GET /metrics on the control
// sockets and on the TCP listener, checked by Prometheus' own parser (`promtool check metrics`,
// Debian's prometheus package, which .ci/run installs), values compared with the catalog
// after a backup, a failed backup and a verify; the textfile replaced atomically after every
// job; the listener bound to loopback only unless metrics.allow_non_loopback; the example alert
// rules in docs/alerts.yml accepted by `promtool check rules`.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { followJob } from '../src/daemon/client.ts';
import type { JobView } from '../src/daemon/queue.ts';
import type { StatusDocument } from '../src/daemon/status.ts';
import { STACKBACK_VERSION } from '../src/version.ts';
import { controlSockets, controlYaml, type DaemonProcess, startDaemon } from './support/daemon.ts';
import { filesSourceYaml, makeSandbox, PROJECT_ROOT, type Sandbox } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';
import { freePort } from './support/free-port.ts';

interface Submitted {
  job: JobView;
  collapsed: boolean;
}

const OFF = 'full: "off", incremental: "off", verify: "off", prune: "off", copy: "off", catch_up: false';
const SOURCE = 'app-files';

/** promtool's path, or why there is none (a failure in CI, where .ci/run installs it; a skip elsewhere). */
const PROMTOOL = await execa('sh', ['-c', 'command -v promtool'], { reject: false }).then((r) => (r.exitCode === 0 ? String(r.stdout).trim() : undefined));
const NO_PROMTOOL = 'promtool is missing: install Debian\'s prometheus package (apt-get install prometheus; .ci/run does)';
if (!PROMTOOL && process.env.CI) throw new Error(`${NO_PROMTOOL} — the metrics tests need Prometheus' own parser`);
const skip = PROMTOOL ? false : `${NO_PROMTOOL}; skipped outside CI`;
if (skip) console.log(`# metrics tests: ${skip}`);

/** `promtool check metrics` on the text (stdin): exit 0 means it parses and has no lint problem. */
async function promtoolCheck(text: string): Promise<void> {
  const result = await execa(PROMTOOL!, ['check', 'metrics'], { input: text, reject: false });
  assert.equal(result.exitCode, 0, `promtool check metrics failed:\n${String(result.stdout)}\n${String(result.stderr)}\n--- exposition ---\n${text}`);
}

/** Samples by series, `name{a="x",b="y"}` with labels sorted by name. */
type Samples = Map<string, number>;

function parseSamples(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `not a sample line: ${line}`);
    const labels = [...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort();
    samples.set(`${match[1]}${labels.length ? `{${labels.join(',')}}` : ''}`, Number(match[3]));
  }
  return samples;
}

function series(name: string, labels: Record<string, string> = {}): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort();
  return `${name}${parts.length ? `{${parts.join(',')}}` : ''}`;
}

function value(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  const key = series(name, labels);
  const found = samples.get(key);
  assert.ok(found !== undefined, `no series ${key} in:\n${[...samples.keys()].join('\n')}`);
  return found;
}

const seconds = (iso: string) => Date.parse(iso) / 1000;

/** GET over a Unix socket or TCP; the raw answer. */
function get(target: { socketPath: string } | { host: string; port: number }, path: string, method = 'GET'): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request({ ...target, path, method, timeout: 10_000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, type: String(response.headers['content-type']), text: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`no answer to ${method} ${path}`)));
    request.on('error', reject);
    request.end();
  });
}

async function scrape(socketPath: string): Promise<{ text: string; samples: Samples }> {
  const answer = await get({ socketPath }, '/metrics');
  assert.equal(answer.status, 200, answer.text);
  assert.equal(answer.type, 'text/plain; version=0.0.4; charset=utf-8');
  return { text: answer.text, samples: parseSamples(answer.text) };
}

/** An IPv4 address of this machine that is not loopback, if it has one. */
function externalAddress(): string | undefined {
  return Object.values(os.networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
}

/** Whether a TCP connection to host:port is accepted. */
function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 2000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

describe('Prometheus metrics', { skip, timeout: 180_000 }, () => {
  const cleanups: (() => Promise<void>)[] = [];

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  /** A sandbox backing up one small folder, with `metrics` set as given (YAML flow mapping body). */
  async function sandboxWith(metrics: string, extraYaml = ''): Promise<{ sandbox: Sandbox; data: string }> {
    const sandbox = await makeSandbox('', { filesYaml: filesSourceYaml(['/DATA']) });
    cleanups.push(() => sandbox.cleanup());
    const data = join(sandbox.dir, 'data');
    await mkdir(data);
    await writeFile(join(data, 'a.txt'), 'some application file\n'.repeat(2000));
    await writeFile(join(data, 'b.txt'), 'another one\n'.repeat(500));
    const yaml = ['timezone: UTC', `schedule: { ${OFF} }`, controlYaml(controlSockets(sandbox.dir), 'socket_mode: "0640"'), `metrics: { ${metrics} }`, extraYaml].join('\n');
    const config = (await readFile(sandbox.configPath, 'utf8')).replace('sources:', `${yaml}\nsources:`).replace('["/DATA"]', JSON.stringify([data]));
    await writeFile(sandbox.configPath, config);
    return { sandbox, data };
  }

  async function start(sandbox: Sandbox): Promise<DaemonProcess> {
    const daemon = await startDaemon(sandbox.configPath, controlSockets(sandbox.dir));
    cleanups.push(() => daemon.stop());
    return daemon;
  }

  async function run(daemon: DaemonProcess, method: string, path: string, body?: unknown): Promise<JobView> {
    const submitted = (await daemon.request(method, path, body)).body as Submitted;
    assert.ok(submitted.job, JSON.stringify(submitted));
    await followJob(daemon.socket, submitted.job.id, () => undefined);
    return ((await daemon.request('GET', `/api/jobs/${submitted.job.id}`)).body as JobView);
  }

  /** The catalog's rows, read directly (the metrics must say what it holds). */
  function catalogRows(sandbox: Sandbox) {
    const db = new Database(sandbox.catalogPath, { readonly: true });
    try {
      return {
        backups: db.prepare('SELECT name, kind, status, finished_at, bytes_read, bytes_stored FROM backups ORDER BY started_at').all() as { name: string; kind: string; status: string; finished_at: string; bytes_read: number; bytes_stored: number }[],
        runs: db.prepare('SELECT kind, status, started_at, finished_at FROM runs ORDER BY id').all() as { kind: string; status: string; started_at: string; finished_at: string }[],
        verifications: db.prepare('SELECT backup, level, at, ok FROM verifications ORDER BY id').all() as { backup: string; level: string; at: string; ok: number }[],
        repositoryBytes: db.prepare('SELECT COALESCE(SUM(stored_size), 0) FROM chunks').pluck().get() as number,
      };
    } finally {
      db.close();
    }
  }

  test('GET /metrics on both sockets parses with promtool; every series is there before any run; values follow the catalog through a backup, a failed backup and a drill', async () => {
    // A remote nothing answers at, and no copy schedule: backups wait for it, and a copy fails fast.
    const { sandbox, data } = await sandboxWith('listen: null', [
      'remotes:',
      '  - name: offsite',
      '    type: s3',
      `    endpoint: http://127.0.0.1:${await freePort()}`,
      '    region: us-east-1',
      '    bucket: nowhere',
      '    force_path_style: true',
      '    credentials_file: /CREDENTIALS',
      '    retry_for: 2s',
    ].join('\n'));
    await writeFile(join(sandbox.dir, 's3.credentials'), '[default]\naws_access_key_id = test\naws_secret_access_key = testtesttest\n', { mode: 0o600 });
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('/CREDENTIALS', join(sandbox.dir, 's3.credentials')));
    const daemon = await start(sandbox);
    const { socket, adminSocket } = controlSockets(sandbox.dir);

    // Before any run: parses, lints clean, and the series alerts rely on exist already.
    const first = await scrape(socket);
    await promtoolCheck(first.text);
    assert.equal((await scrape(adminSocket)).samples.get('stackback_up'), 1, 'the admin socket serves it too');
    let s = first.samples;
    assert.equal(value(s, 'stackback_up'), 1);
    assert.equal(value(s, 'stackback_build_info', { version: STACKBACK_VERSION }), 1);
    for (const job of ['backup', 'verify', 'copy', 'prune']) {
      for (const result of ['ok', 'partial', 'failed', 'interrupted', 'stalled']) assert.equal(value(s, 'stackback_runs_total', { job, result }), 0);
    }
    for (const kind of ['full', 'incremental']) assert.equal(value(s, 'stackback_last_success_timestamp_seconds', { job: 'backup', kind, source: SOURCE }), 0);
    assert.equal(value(s, 'stackback_drill_last_success_timestamp_seconds', { source: SOURCE }), 0);
    assert.equal(value(s, 'stackback_backups', { status: 'ok' }), 0);
    assert.equal(value(s, 'stackback_backups', { status: 'partial' }), 0);
    assert.equal(value(s, 'stackback_repository_bytes'), 0);
    assert.equal(value(s, 'stackback_remote_pending_backups', { remote: 'offsite' }), 0);
    assert.equal(value(s, 'stackback_remote_last_copy_timestamp_seconds', { remote: 'offsite' }), 0);
    assert.ok(!s.has(series('stackback_last_run_success', { job: 'backup' })), 'no last run before the first one');
    assert.ok(first.text.includes('# TYPE stackback_notification_failures_total counter'));

    // A full backup.
    const full = await run(daemon, 'POST', '/api/backup/create', { type: 'full' });
    assert.equal(full.state, 'ok', JSON.stringify(full));
    let rows = catalogRows(sandbox);
    const backup = rows.backups.at(-1)!;
    const backupRun = rows.runs.at(-1)!;
    const afterBackup = await scrape(socket);
    await promtoolCheck(afterBackup.text);
    s = afterBackup.samples;
    assert.equal(value(s, 'stackback_last_success_timestamp_seconds', { job: 'backup', kind: 'full', source: SOURCE }), seconds(backup.finished_at));
    assert.equal(value(s, 'stackback_last_success_timestamp_seconds', { job: 'backup', kind: 'incremental', source: SOURCE }), 0);
    assert.equal(value(s, 'stackback_runs_total', { job: 'backup', result: 'ok' }), 1);
    assert.equal(value(s, 'stackback_last_run_success', { job: 'backup' }), 1);
    assert.equal(value(s, 'stackback_last_run_timestamp_seconds', { job: 'backup' }), seconds(backupRun.finished_at));
    assert.equal(value(s, 'stackback_last_run_duration_seconds', { job: 'backup' }), (Date.parse(backupRun.finished_at) - Date.parse(backupRun.started_at)) / 1000);
    assert.equal(value(s, 'stackback_backup_bytes_read'), backup.bytes_read);
    assert.equal(value(s, 'stackback_backup_bytes_stored'), backup.bytes_stored);
    assert.ok(backup.bytes_read > 50_000 && backup.bytes_stored > 0);
    assert.equal(value(s, 'stackback_repository_bytes'), rows.repositoryBytes);
    assert.ok(rows.repositoryBytes > 0);
    assert.equal(value(s, 'stackback_backups', { status: 'ok' }), 1);
    assert.equal(value(s, 'stackback_remote_pending_backups', { remote: 'offsite' }), 1, 'the backup is not off-site');

    // A copy that fails (nothing listens at the endpoint): the remote is still behind.
    const copy = await run(daemon, 'POST', '/api/copy', {});
    assert.notEqual(copy.state, 'ok', JSON.stringify(copy));
    const afterCopy = await scrape(socket);
    await promtoolCheck(afterCopy.text);
    s = afterCopy.samples;
    const remote = ((await daemon.request('GET', '/api/backup/status')).body as StatusDocument).remotes[0]!;
    assert.ok(remote.last_attempt_at && remote.last_copy_at === null, JSON.stringify(remote));
    assert.equal(value(s, 'stackback_remote_pending_backups', { remote: 'offsite' }), remote.missing);
    assert.equal(remote.missing, 1);
    assert.equal(value(s, 'stackback_remote_last_copy_timestamp_seconds', { remote: 'offsite' }), 0);
    assert.equal(value(s, 'stackback_remote_last_attempt_timestamp_seconds', { remote: 'offsite' }), seconds(remote.last_attempt_at));
    assert.equal(value(s, 'stackback_last_run_success', { job: 'copy' }), 0);
    const copyRuns = catalogRows(sandbox).runs.filter((r) => r.kind === 'copy');
    assert.equal(copyRuns.length, 1, 'copies are off: only the one asked for ran');
    assert.equal(value(s, 'stackback_runs_total', { job: 'copy', result: copyRuns.at(-1)!.status }), copyRuns.length, JSON.stringify(catalogRows(sandbox).runs));
    assert.equal(value(s, 'stackback_last_success_timestamp_seconds', { job: 'copy' }), 0);

    // A backup that fails: the folder is gone.
    await rename(data, `${data}.away`);
    const failed = await run(daemon, 'POST', '/api/backup/create', { type: 'incremental' });
    assert.equal(failed.state, 'failed', JSON.stringify(failed));
    const afterFailure = await scrape(socket);
    await promtoolCheck(afterFailure.text);
    s = afterFailure.samples;
    rows = catalogRows(sandbox);
    assert.equal(rows.runs.at(-1)!.status, 'failed');
    assert.equal(value(s, 'stackback_runs_total', { job: 'backup', result: 'ok' }), 1);
    assert.equal(value(s, 'stackback_runs_total', { job: 'backup', result: 'failed' }), 1);
    assert.equal(value(s, 'stackback_last_run_success', { job: 'backup' }), 0);
    assert.equal(value(s, 'stackback_last_run_timestamp_seconds', { job: 'backup' }), seconds(rows.runs.at(-1)!.finished_at));
    // The last success is still the full; the byte counts still those of the newest backup.
    assert.equal(value(s, 'stackback_last_success_timestamp_seconds', { job: 'backup', kind: 'full', source: SOURCE }), seconds(backup.finished_at));
    assert.equal(value(s, 'stackback_backup_bytes_stored'), backup.bytes_stored);
    assert.equal(value(s, 'stackback_backups', { status: 'ok' }), 1);
    await rename(`${data}.away`, data);

    // A restore drill of the backup.
    const drill = await run(daemon, 'GET', `/api/backup/verify/${backup.name}?level=drill`);
    assert.equal(drill.state, 'ok', JSON.stringify(drill));
    const afterDrill = await scrape(socket);
    await promtoolCheck(afterDrill.text);
    s = afterDrill.samples;
    rows = catalogRows(sandbox);
    const verdict = rows.verifications.at(-1)!;
    assert.deepEqual([verdict.backup, verdict.level, verdict.ok], [backup.name, 'drill', 1]);
    assert.equal(value(s, 'stackback_drill_last_success_timestamp_seconds', { source: SOURCE }), seconds(verdict.at));
    assert.equal(value(s, 'stackback_drill_last_timestamp_seconds', { source: SOURCE }), seconds(verdict.at));
    assert.equal(value(s, 'stackback_last_success_timestamp_seconds', { job: 'verify', kind: 'drill', source: SOURCE }), seconds(verdict.at));
    assert.equal(value(s, 'stackback_last_success_timestamp_seconds', { job: 'verify', kind: 'quick', source: SOURCE }), 0);
    assert.equal(value(s, 'stackback_runs_total', { job: 'verify', result: 'ok' }), 1);
    assert.equal(value(s, 'stackback_last_run_success', { job: 'verify' }), 1);
    assert.equal(value(s, 'stackback_last_run_timestamp_seconds', { job: 'verify' }), seconds(rows.runs.at(-1)!.finished_at));
  });

  test('metrics.textfile: written after every job, replaced whole (renamed over, never rewritten in place, never a partial file), readable by node_exporter', async () => {
    const { sandbox } = await sandboxWith('textfile: /TEXTFILE');
    const textfile = join(sandbox.dir, 'textfile', 'stackback.prom');
    await mkdir(join(sandbox.dir, 'textfile'));
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('/TEXTFILE', textfile));
    const daemon = await start(sandbox);

    const full = await run(daemon, 'POST', '/api/backup/create', { type: 'full' });
    assert.equal(full.state, 'ok');
    const written = await waitFor('the textfile after the backup', async () => {
      if (!existsSync(textfile)) return undefined;
      const text = await readFile(textfile, 'utf8');
      return parseSamples(text).get(series('stackback_runs_total', { job: 'backup', result: 'ok' })) === 1 ? text : undefined;
    });
    await promtoolCheck(written);
    assert.equal((await stat(textfile)).mode & 0o777, 0o644, 'node_exporter runs as another user');
    // A reader that has the file open keeps what it opened: the next write is a new file renamed over it.
    const held = await open(textfile, 'r');
    cleanups.push(() => held.close());
    const heldText = await held.readFile('utf8');

    // A reader polling the file while jobs rewrite it sees whole expositions only.
    const seen: string[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        let text: string;
        try {
          text = await readFile(textfile, 'utf8');
        } catch (error) {
          throw new Error(`the textfile was missing for a moment: ${(error as Error).message}`);
        }
        assert.ok(text.startsWith('# HELP stackback_up ') && text.endsWith('\n') && text.includes('# TYPE stackback_notification_failures_total counter'), `a partial textfile was visible:\n${text}`);
        seen.push(text);
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    for (let i = 0; i < 4; i++) {
      const verify = await run(daemon, 'GET', `/api/backup/verify/all?level=quick`);
      assert.equal(verify.state, 'ok');
    }
    await waitFor('the textfile after the fourth verify', async () => parseSamples(await readFile(textfile, 'utf8')).get(series('stackback_runs_total', { job: 'verify', result: 'ok' })) === 4);
    polling = false;
    await poller;
    assert.ok(seen.length > 10, `the poller read the file ${seen.length} times`);
    assert.ok(new Set(seen).size >= 3, `the poller saw the file change: ${new Set(seen).size} version(s)`);
    for (const text of new Set(seen)) parseSamples(text);
    // The file held open was replaced, not rewritten: unlinked (no name left), its bytes as they were.
    assert.equal((await held.stat()).nlink, 0, 'the old file was renamed over');
    const again = Buffer.alloc(Buffer.byteLength(heldText) + 1);
    const { bytesRead } = await held.read(again, 0, again.length, 0);
    assert.equal(again.subarray(0, bytesRead).toString('utf8'), heldText);
    await promtoolCheck(await readFile(textfile, 'utf8'));
    // No temp file left beside it.
    assert.deepEqual(await readdir(join(sandbox.dir, 'textfile')), ['stackback.prom']);
  });

  test('metrics.listen: a TCP listener on loopback serves GET /metrics and nothing else', async () => {
    const port = await freePort();
    const { sandbox } = await sandboxWith(`listen: "127.0.0.1:${port}"`);
    await start(sandbox);
    const answer = await get({ host: '127.0.0.1', port }, '/metrics');
    assert.equal(answer.status, 200);
    assert.equal(answer.type, 'text/plain; version=0.0.4; charset=utf-8');
    await promtoolCheck(answer.text);
    assert.equal(parseSamples(answer.text).get('stackback_up'), 1);
    assert.equal((await get({ host: '127.0.0.1', port }, '/api/backup/status')).status, 404, 'the control routes are not on the TCP listener');
    assert.equal((await get({ host: '127.0.0.1', port }, '/metrics', 'POST')).status, 405);
    const external = externalAddress();
    if (external) assert.equal(await connects(external, port), false, `bound to loopback only: ${external}:${port} must refuse`);
  });

  test('a non-loopback metrics.listen is refused unless metrics.allow_non_loopback; with it the listener binds there', async () => {
    const port = await freePort();
    const { sandbox } = await sandboxWith(`listen: "0.0.0.0:${port}"`);
    const refused = await execa(process.execPath, [join(PROJECT_ROOT, 'src/cli/main.ts'), 'daemon', '--config', sandbox.configPath], { reject: false, all: true, timeout: 20_000 });
    assert.notEqual(refused.exitCode, 0, String(refused.all));
    assert.match(String(refused.all), /allow_non_loopback/);
    assert.equal(await connects('127.0.0.1', port), false, 'nothing listens');
    assert.ok(!existsSync(controlSockets(sandbox.dir).adminSocket), 'the daemon did not start');

    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace(`listen: "0.0.0.0:${port}"`, `listen: "0.0.0.0:${port}", allow_non_loopback: true`));
    await start(sandbox);
    const answer = await get({ host: '127.0.0.1', port }, '/metrics');
    assert.equal(answer.status, 200);
    const external = externalAddress();
    if (external) assert.equal((await get({ host: external, port }, '/metrics')).status, 200, `served on ${external} too`);
  });

  test('docs/alerts.yml: promtool check rules accepts the example alert rules', async () => {
    const result = await execa(PROMTOOL!, ['check', 'rules', join(PROJECT_ROOT, 'docs/alerts.yml')], { reject: false });
    assert.equal(result.exitCode, 0, `${String(result.stdout)}\n${String(result.stderr)}`);
    assert.match(String(result.stdout), /SUCCESS: \d+ rules found/);
    const rules = await readFile(join(PROJECT_ROOT, 'docs/alerts.yml'), 'utf8');
    for (const metric of ['stackback_up', 'stackback_last_success_timestamp_seconds', 'stackback_drill_last_success_timestamp_seconds', 'stackback_remote_pending_backups']) assert.ok(rules.includes(metric), metric);
  });
});
