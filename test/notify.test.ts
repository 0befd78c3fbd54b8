// Notifications (issue 17) against a real HTTP receiver on loopback: the Notifier driven with a
// real catalog and JobView-shaped jobs, each channel's wire format, retries, secrecy of URLs and
// headers, the command channel, stale detection, and `stackback notify test` through the built CLI.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import pino from 'pino';
import { createNotifier, type Notifier, sendTestEvent } from '../src/alerts/notifier.ts';
import type { AlertEvent } from '../src/alerts/event.ts';
import { Catalog } from '../src/catalog/catalog.ts';
import { type Config, loadConfig } from '../src/config/load.ts';
import type { JobView } from '../src/daemon/queue.ts';
import { RecentLines, type Logger } from '../src/log.ts';
import { MANIFEST_FORMAT, type Manifest } from '../src/repository/manifest.ts';
import { BUILT_CLI, PROJECT_ROOT } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';

interface Received {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/** A real HTTP server on 127.0.0.1 that records every request; `status` decides each answer. */
class Receiver {
  readonly requests: Received[] = [];
  status: (request: Received) => number = () => 200;
  private server: Server | undefined;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const request: Received = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: performance.now() };
        this.requests.push(request);
        res.statusCode = this.status(request);
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Requests whose path starts with `prefix` (the query string is part of the path). */
  to(prefix: string): Received[] {
    return this.requests.filter((r) => r.path.startsWith(prefix));
  }

  events(prefix: string): AlertEvent[] {
    return this.to(prefix).map((r) => JSON.parse(r.body) as AlertEvent);
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }
}

const TOKEN = 'hooktoken-7f3a9c';
const QUERY_SECRET = 'querysecret-51be';
const HC_TOKEN = 'hc-uuid-0d2e8b';
const HEADER_SECRET = 'Bearer headersecret-c4a1';

let dir: string;
const receiver = new Receiver();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stackback-notify-'));
  await receiver.start();
});

after(async () => {
  await receiver.stop();
  await rm(dir, { recursive: true, force: true });
});

async function privateFile(name: string, text: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, text, { mode: 0o600 });
  await chmod(file, 0o600);
  return file;
}

let configCount = 0;
/** A config file with this notify section (YAML lines under `notify:`), loaded as the daemon would. */
async function makeConfig(notifyYaml: string, extra = ''): Promise<Config> {
  const n = ++configCount;
  const file = join(dir, `stackback-${n}.yaml`);
  await writeFile(
    file,
    [
      `repository: { path: ${join(dir, `repo-${n}`)}, key_file: ${join(dir, `repo-${n}.key`)} }`,
      `catalog: { path: ${join(dir, `catalog-${n}.db`)} }`,
      `work_dir: ${join(dir, 'tmp')}`,
      'log: { level: info }',
      extra,
      'sources:',
      '  files:',
      `    - name: app-files`,
      `      paths: [${dir}]`,
      `    - name: uploads`,
      `      paths: [${dir}]`,
      'notify:',
      notifyYaml,
      '',
    ].join('\n'),
  );
  return loadConfig(file);
}

/** A logger whose every line is kept (to search for secrets) and fed to `recent` (the healthchecks body). */
function captureLogger(): { log: Logger; lines: string[]; recent: RecentLines } {
  const lines: string[] = [];
  const recent = new RecentLines();
  const log = pino({ level: 'debug', base: { pid: process.pid } }, {
    write(line: string) {
      lines.push(line);
      recent.push(line);
    },
  });
  return { log, lines, recent };
}

let jobIds = 100;
function job(kind: JobView['kind'], state: JobView['state'], fields: Partial<JobView> = {}): JobView {
  const now = new Date().toISOString();
  return { id: jobIds++, kind, params: kind === 'backup' ? { type: 'incremental' } : {}, origin: 'schedule', state, created_at: now, started_at: now, finished_at: now, progress: null, result: null, error: null, ...fields };
}

const failedBackup = (message = 'cannot connect to PostgreSQL at /run/postgresql:5432 (connection refused)') =>
  job('backup', 'failed', { error: { code: 'PG_CONNECT', message, hint: 'check that the server runs and listens there' } });

function backupResult(name: string, failed: string[] = []) {
  return {
    backup: name,
    kind: 'incremental',
    chain: 'c1',
    status: failed.length ? 'partial' : 'ok',
    promoted_to_full: false,
    stats: { bytes_read: 10, bytes_stored: 5, chunks: 1, chunks_new: 1 },
    sources: [
      { name: 'app-files', kind: 'files', status: failed.includes('app-files') ? 'failed' : 'ok', ...(failed.includes('app-files') ? { error: 'permission denied: /srv/app' } : {}) },
      { name: 'uploads', kind: 'files', status: failed.includes('uploads') ? 'failed' : 'ok', ...(failed.includes('uploads') ? { error: 'no such folder /srv/uploads' } : {}) },
    ],
    artifacts: 2,
  };
}

/** Runs a job through the notifier as the daemon does: started, some log lines, ended. */
function run(notifier: Notifier, log: Logger, ended: JobView, lines: string[] = []): void {
  notifier.jobStarted({ id: ended.id, kind: ended.kind, params: ended.params });
  for (const line of lines) log.info(line);
  notifier.jobEnded(ended);
}

function manifest(name: string, finishedAt: Date, sources = ['app-files', 'uploads']): Manifest {
  const started = new Date(finishedAt.getTime() - 1000).toISOString();
  return {
    format: MANIFEST_FORMAT,
    name,
    kind: 'full',
    chain: `chain-${name}`,
    status: 'ok',
    started_at: started,
    finished_at: finishedAt.toISOString(),
    host: 'test',
    stackback_version: '0',
    sources: sources.map((s) => ({ name: s, kind: 'files', status: 'ok' as const })),
    artifacts: [],
    stats: { bytes_read: 0, bytes_stored: 0, chunks: 0, chunks_new: 0 },
  };
}

/** A loopback port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function assertNoSecrets(texts: string[], where: string): void {
  for (const text of texts) {
    for (const secret of [TOKEN, QUERY_SECRET, HC_TOKEN, HEADER_SECRET, 'headersecret']) {
      assert.ok(!text.includes(secret), `${where} leaks ${secret}: ${text}`);
    }
  }
}

describe('incidents: one incident, one message', () => {
  test('failure once, nothing within repeat, a reminder after it, recovered once; partial names the failed sources; state survives a restart', async () => {
    const hook = await privateFile('incident.url', `${receiver.url(`/incident/${TOKEN}?key=${QUERY_SECRET}`)}\n`);
    let config = await makeConfig(['  webhooks:', `    - name: ops`, `      url_file: ${hook}`, '  repeat: 1h'].join('\n'));
    const catalog = new Catalog(config.catalog.path);
    const { log, lines } = captureLogger();
    const notifier = createNotifier({ config: () => config, catalog, log, host: 'db1' });
    const events = () => receiver.events('/incident/');

    run(notifier, log, failedBackup());
    await waitFor('the failure event', () => events().length === 1, 5000, 10);
    const [failure] = events();
    assert.equal(failure!.kind, 'failure');
    assert.equal(failure!.stackback_event, 1);
    assert.equal(failure!.host, 'db1');
    assert.equal(failure!.job?.kind, 'backup');
    assert.equal(failure!.error?.code, 'PG_CONNECT');
    assert.match(failure!.error!.message, /connection refused/);
    assert.equal(failure!.error?.hint, 'check that the server runs and listens there');
    assert.match(failure!.summary, /backup \(incremental\) failed: cannot connect/);
    assert.ok(failure!.look_further.includes('stackback history'));

    // Keeps failing within notify.repeat: nothing more.
    run(notifier, log, failedBackup());
    run(notifier, log, failedBackup('another reason'));
    assert.equal(await notifier.idle(5000), true);
    await sleep(100);
    assert.equal(events().length, 1, 'one incident, one message');

    // A tiny repeat: the next failing run is a reminder.
    config = { ...config, notify: { ...config.notify, repeatMs: 50 } };
    await sleep(60);
    run(notifier, log, failedBackup());
    await waitFor('the reminder', () => events().length === 2, 5000, 10);
    assert.equal(events()[1]!.kind, 'failure');
    assert.equal(events()[1]!.reminder, true);
    config = { ...config, notify: { ...config.notify, repeatMs: 3_600_000 } };

    // A new Notifier on the same catalog (a daemon restart) knows the incident is open.
    const restarted = createNotifier({ config: () => config, catalog, log, host: 'db1' });
    run(restarted, log, failedBackup());
    assert.equal(await restarted.idle(5000), true);
    await sleep(100);
    assert.equal(events().length, 2, 'no new failure after a restart');
    assert.ok(catalog.fact('alert.job.backup')?.includes('"open":true'));

    // The next success: recovered, once; the one after it: nothing (success is off by default).
    run(restarted, log, job('backup', 'ok', { result: backupResult('b-ok-1') }));
    await waitFor('recovered', () => events().length === 3, 5000, 10);
    const recovered = events()[2]!;
    assert.equal(recovered.kind, 'recovered');
    assert.equal(recovered.backup, 'b-ok-1');
    assert.ok(recovered.look_further.includes('stackback show b-ok-1'));
    run(restarted, log, job('backup', 'ok', { result: backupResult('b-ok-2') }));
    assert.equal(await restarted.idle(5000), true);
    await sleep(100);
    assert.equal(events().length, 3);

    // Partial: the failed sources are named.
    run(restarted, log, job('backup', 'partial', { result: backupResult('b-partial', ['uploads']) }));
    await waitFor('partial', () => events().length === 4, 5000, 10);
    const partial = events()[3]!;
    assert.equal(partial.kind, 'partial');
    assert.deepEqual(partial.sources, ['uploads']);
    assert.equal(partial.backup, 'b-partial');
    assert.match(partial.error!.message, /source uploads: no such folder/);
    assert.match(partial.summary, /partial.*source uploads failed/);

    // Other job kinds are incidents of their own.
    run(restarted, log, job('verify', 'failed', { params: { level: 'drill' }, result: { level: 'drill', ok: false, backups: [{ backup: 'b-ok-2', ok: false, artifacts: [{ artifact: 'pg/app', ok: false, detail: 'row count differs: 10 vs 9' }] }], damaged_chunks: [] } }));
    await waitFor('the verify failure', () => events().length === 5, 5000, 10);
    const verify = events()[4]!;
    assert.equal(verify.kind, 'failure');
    assert.equal(verify.job?.kind, 'verify');
    assert.equal(verify.backup, 'b-ok-2');
    assert.match(verify.summary, /verify \(drill\) failed/);
    assert.match(verify.error!.message, /row count differs/);

    assert.deepEqual(notifier.channels(), [{ name: 'ops', kind: 'webhook', failing_since: null, last_error: null }]);
    assertNoSecrets(lines, 'a log line');
    await notifier.drain(1000);
    await restarted.drain(1000);
    catalog.close();
  });

  test('success and start are sent only when notify.on lists them', async () => {
    const hook = await privateFile('onoff.url', receiver.url('/onoff'));
    let config = await makeConfig(['  webhooks:', `    - url_file: ${hook}`].join('\n'));
    const catalog = new Catalog(config.catalog.path);
    const { log } = captureLogger();
    const notifier = createNotifier({ config: () => config, catalog, log, host: 'db1' });
    run(notifier, log, job('prune', 'ok', { result: { remotes: [] } }));
    assert.equal(await notifier.idle(5000), true);
    await sleep(100);
    assert.equal(receiver.to('/onoff').length, 0, 'the default notify.on has neither success nor start');

    config = { ...config, notify: { ...config.notify, on: [...config.notify.on, 'success', 'start'] } };
    run(notifier, log, job('copy', 'ok', { params: { remotes: ['r1'] }, result: [{ remote: 'r1', ok: true }] }));
    await waitFor('start and success', () => receiver.to('/onoff').length === 2, 5000, 10);
    assert.deepEqual(receiver.events('/onoff').map((e) => e.kind), ['start', 'success']);
    assert.equal(receiver.events('/onoff')[1]!.job?.kind, 'copy');
    assert.deepEqual(notifier.channels().map((c) => c.name), ['webhook-1']);
    await notifier.drain(1000);
    catalog.close();
  });
});

describe('healthchecks', () => {
  test('/start, then /fail with the error and the run\'s log lines in the body, then a success ping; jobs not listed ping nothing', async () => {
    const hc = await privateFile('hc.url', receiver.url(`/ping/${HC_TOKEN}`));
    const config = await makeConfig(['  healthchecks:', `    - name: hc-backup`, `      url_file: ${hc}`, '      jobs: [backup]'].join('\n'));
    const catalog = new Catalog(config.catalog.path);
    const { log, lines, recent } = captureLogger();
    const notifier = createNotifier({ config: () => config, catalog, log, host: 'db1', recentLines: recent });
    const pings = () => receiver.to(`/ping/${HC_TOKEN}`);

    log.info('a line before the run');
    run(notifier, log, failedBackup(), ['dumping database app', 'pg_dump: error: connection to server failed']);
    await waitFor('/start and /fail', () => pings().length === 2, 5000, 10);
    assert.deepEqual(pings().map((p) => [p.method, p.path]), [['POST', `/ping/${HC_TOKEN}/start`], ['POST', `/ping/${HC_TOKEN}/fail`]]);
    const body = pings()[1]!.body;
    assert.match(body, /backup \(incremental\) failed/);
    assert.match(body, /error: cannot connect to PostgreSQL .* \[PG_CONNECT\]/);
    assert.match(body, /hint: check that the server runs/);
    assert.match(body, /INFO dumping database app/);
    assert.match(body, /pg_dump: error: connection to server failed/);
    assert.ok(!body.includes('a line before the run'), 'only the lines of this run');

    run(notifier, log, job('backup', 'ok', { result: backupResult('b-hc') }), ['stored 2 artifacts']);
    await waitFor('/start and success', () => pings().length === 4, 5000, 10);
    assert.deepEqual(pings().slice(2).map((p) => p.path), [`/ping/${HC_TOKEN}/start`, `/ping/${HC_TOKEN}`]);
    assert.match(pings()[3]!.body, /succeeded: backup b-hc/);
    assert.match(pings()[3]!.body, /stored 2 artifacts/);

    run(notifier, log, job('verify', 'failed', { error: { code: 'VERIFY_FAILED', message: 'x' } }));
    assert.equal(await notifier.idle(5000), true);
    await sleep(100);
    assert.equal(pings().length, 4, 'verify is not in this check\'s jobs');
    assertNoSecrets(lines, 'a log line');
    await notifier.drain(1000);
    catalog.close();
  });

  test('a body over 100 kB keeps its end', async () => {
    const hc = await privateFile('hc-big.url', receiver.url('/bigping'));
    const config = await makeConfig(['  healthchecks:', `    - url_file: ${hc}`].join('\n'));
    const catalog = new Catalog(config.catalog.path);
    const { log, recent } = captureLogger();
    const notifier = createNotifier({ config: () => config, catalog, log, recentLines: recent });
    run(notifier, log, failedBackup(), [...Array.from({ length: 3000 }, (_, i) => `line ${i} ${'x'.repeat(60)}`), 'the very last line']);
    await waitFor('/fail', () => receiver.to('/bigping/fail').length === 1, 5000, 10);
    const body = receiver.to('/bigping/fail')[0]!.body;
    assert.ok(Buffer.byteLength(body) <= 100_000, `${Buffer.byteLength(body)} bytes`);
    assert.match(body, /the very last line/);
    assert.match(body, /earlier lines cut/);
    await notifier.drain(1000);
    catalog.close();
  });
});

describe('delivery', () => {
  test('a receiver answering 500 for a while gets the event after retries; status shows the channel failing meanwhile', async () => {
    const hook = await privateFile('flaky.url', receiver.url(`/flaky/${TOKEN}?key=${QUERY_SECRET}`));
    const config = await makeConfig(['  webhooks:', `    - name: flaky`, `      url_file: ${hook}`, '  retry_for: 1m'].join('\n'));
    const catalog = new Catalog(config.catalog.path);
    const { log, lines } = captureLogger();
    const failed: string[] = [];
    const notifier = createNotifier({ config: () => config, catalog, log, retryBaseMs: 100, onDeliveryFailed: (c) => failed.push(c) });
    let answered = 0;
    receiver.status = (r) => (r.path.startsWith('/flaky/') && ++answered <= 3 ? 500 : 200);
    try {
      const started = performance.now();
      run(notifier, log, failedBackup());
      await waitFor('a failed attempt', () => notifier.channels()[0]!.failing_since !== null, 5000, 5);
      assert.match(notifier.channels()[0]!.last_error!, /flaky: http:\/\/127\.0\.0\.1:\d+ answered HTTP 500/);
      await waitFor('the delivery after retries', () => receiver.to('/flaky/').length === 4, 20_000, 10);
      console.log(`# delivered on the 4th attempt, ${Math.round(performance.now() - started)} ms after the job ended`);
      assert.equal(await notifier.idle(5000), true);
      assert.equal(new Set(receiver.events('/flaky/').map((e) => e.at)).size, 1, 'the same event each time');
      assert.deepEqual(notifier.channels()[0], { name: 'flaky', kind: 'webhook', failing_since: null, last_error: null });
      assert.deepEqual(failed, []);
      assertNoSecrets(lines, 'a log line');
    } finally {
      receiver.status = () => 200;
      await notifier.drain(1000);
      catalog.close();
    }
  });

  test('a delivery that outlasts retry_for is given up: logged, reported, shown in channels() without the token', async () => {
    const hook = await privateFile('dead.url', receiver.url(`/dead/${TOKEN}?key=${QUERY_SECRET}`));
    const headers = await privateFile('dead.headers', `# the receiver's key\nAuthorization: ${HEADER_SECRET}\nX-Team: ops\n`);
    const config = await makeConfig(['  webhooks:', `    - name: dead`, `      url_file: ${hook}`, `      headers_file: ${headers}`, '  retry_for: 1s'].join('\n'));
    const catalog = new Catalog(config.catalog.path);
    const { log, lines } = captureLogger();
    const failed: string[] = [];
    const notifier = createNotifier({ config: () => config, catalog, log, retryBaseMs: 100, onDeliveryFailed: (c) => failed.push(c) });
    receiver.status = (r) => (r.path.startsWith('/dead/') ? 503 : 200);
    try {
      run(notifier, log, failedBackup());
      await waitFor('given up', () => failed.length === 1, 10_000, 10);
      assert.deepEqual(failed, ['dead']);
      assert.ok(receiver.to('/dead/').length >= 2, 'retried');
      assert.equal(receiver.to('/dead/')[0]!.headers.authorization, HEADER_SECRET, 'headers_file is sent');
      assert.equal(receiver.to('/dead/')[0]!.headers['x-team'], 'ops');
      const [state] = notifier.channels();
      assert.ok(state!.failing_since !== null);
      assert.match(state!.last_error!, /answered HTTP 503/);
      assertNoSecrets([JSON.stringify(notifier.channels())], 'channels()');
      assert.ok(lines.some((l) => l.includes('was not delivered')));
      assertNoSecrets(lines, 'a log line');
    } finally {
      receiver.status = () => 200;
      await notifier.drain(1000);
      catalog.close();
    }
  });

  test('a headers_file readable by others is refused, without quoting it', async () => {
    const hook = await privateFile('open.url', receiver.url('/openheaders'));
    const headers = join(dir, 'open.headers');
    await writeFile(headers, `Authorization: ${HEADER_SECRET}\n`);
    await chmod(headers, 0o644);
    const config = await makeConfig(['  webhooks:', `    - name: open`, `      url_file: ${hook}`, `      headers_file: ${headers}`].join('\n'));
    const results = await sendTestEvent(config, captureLogger().log);
    assert.equal(results[0]!.ok, false);
    assert.match(results[0]!.error!, /accessible to others \(mode 0644\)/);
    assertNoSecrets([results[0]!.error!], 'the error');
    assert.equal(receiver.to('/openheaders').length, 0);
  });

  test('the webhook reaches the receiver within 2 s of the job\'s end', async () => {
    const hook = await privateFile('latency.url', receiver.url('/latency'));
    const config = await makeConfig(['  webhooks:', `    - url_file: ${hook}`].join('\n'));
    const catalog = new Catalog(config.catalog.path);
    const { log } = captureLogger();
    const notifier = createNotifier({ config: () => config, catalog, log });
    const measured: number[] = [];
    for (let i = 0; i < 5; i++) {
      const before = receiver.to('/latency').length;
      const ended = i % 2 === 0 ? failedBackup() : job('backup', 'ok', { result: backupResult(`b-lat-${i}`) });
      notifier.jobStarted({ id: ended.id, kind: ended.kind, params: ended.params });
      const t0 = performance.now();
      notifier.jobEnded(ended);
      await waitFor('the webhook', () => receiver.to('/latency').length > before, 5000, 1);
      measured.push(receiver.to('/latency').at(-1)!.at - t0);
    }
    const sorted = [...measured].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    console.log(`# jobEnded → webhook received: ${measured.map((m) => `${m.toFixed(1)} ms`).join(', ')} (median ${median.toFixed(1)} ms)`);
    assert.ok(Math.max(...measured) <= 2000, `${Math.max(...measured)} ms`);
    await notifier.drain(1000);
    catalog.close();
  });
});

describe('formats', () => {
  test('ntfy: plain text body with Title, Priority and Tags headers; slack: {"text": …}', async () => {
    const ntfy = await privateFile('ntfy.url', receiver.url('/ntfy/backups'));
    const slack = await privateFile('slack.url', receiver.url(`/services/T000/B000/${TOKEN}`));
    const config = await makeConfig(['  webhooks:', `    - { name: phone, url_file: ${ntfy}, format: ntfy }`, `    - { name: chat, url_file: ${slack}, format: slack }`].join('\n'));
    const catalog = new Catalog(config.catalog.path);
    const { log, lines } = captureLogger();
    const notifier = createNotifier({ config: () => config, catalog, log, host: 'db1' });
    run(notifier, log, failedBackup());
    await waitFor('both', () => receiver.to('/ntfy/').length === 1 && receiver.to('/services/').length === 1, 5000, 10);

    const n = receiver.to('/ntfy/')[0]!;
    assert.equal(n.method, 'POST');
    assert.equal(n.headers.title, 'stackback on db1: backup FAILED');
    assert.equal(n.headers.priority, '4');
    assert.equal(n.headers.tags, 'rotating_light');
    assert.match(String(n.headers['content-type']), /^text\/plain/);
    assert.match(n.body, /^backup \(incremental\) failed: cannot connect to PostgreSQL/);
    assert.match(n.body, /hint: check that the server runs/);
    assert.match(n.body, /look further: .*stackback history/);

    const s = receiver.to('/services/')[0]!;
    assert.equal(s.headers['content-type'], 'application/json');
    const payload = JSON.parse(s.body) as Record<string, unknown>;
    assert.deepEqual(Object.keys(payload), ['text']);
    assert.match(String(payload.text), /^:rotating_light: \*stackback on db1: backup FAILED\*\nbackup \(incremental\) failed/);
    assertNoSecrets(lines, 'a log line');
    await notifier.drain(1000);
    catalog.close();
  });
});

describe('command channel', () => {
  test('runs the program without a shell, the event JSON on stdin; a non-zero exit is a failed delivery', async () => {
    const out = join(dir, 'command-event.json');
    const script = 'require("fs").writeFileSync(process.argv[1], require("fs").readFileSync(0)); process.exit(process.env.STACKBACK_EVENT_KIND === "recovered" ? 3 : 0)';
    const config = await makeConfig(`  command: ${JSON.stringify([process.execPath, '-e', script, out])}\n  retry_for: 0s`);
    const catalog = new Catalog(config.catalog.path);
    const { log } = captureLogger();
    const failed: string[] = [];
    const notifier = createNotifier({ config: () => config, catalog, log, host: 'db1', onDeliveryFailed: (c) => failed.push(c) });
    run(notifier, log, failedBackup('$(touch /tmp/should-not-exist) `reboot`; rm -rf /'));
    await waitFor('the command output', () => existsSync(out), 10_000, 10);
    assert.equal(await notifier.idle(10_000), true);
    const event = JSON.parse(await readFile(out, 'utf8')) as AlertEvent;
    assert.equal(event.kind, 'failure');
    assert.equal(event.host, 'db1');
    assert.match(event.error!.message, /^\$\(touch/);

    run(notifier, log, job('backup', 'ok', { result: backupResult('b-cmd') }));
    await waitFor('the failed delivery', () => failed.length === 1, 10_000, 10);
    assert.deepEqual(failed, ['command']);
    assert.match(notifier.channels()[0]!.last_error!, /exited with status 3/);
    assert.equal((JSON.parse(await readFile(out, 'utf8')) as AlertEvent).kind, 'recovered');
    await notifier.drain(1000);
    catalog.close();
  });
});

describe('stale', () => {
  test('a backup older than the schedule allows: exactly one stale event; a newer backup: exactly one recovered', async () => {
    const hook = await privateFile('stale.url', receiver.url('/stale'));
    const config = await makeConfig(['  webhooks:', `    - url_file: ${hook}`].join('\n'), 'schedule: { full: "0 * * * *", incremental: "off", verify: "off", prune: "off" }');
    const catalog = new Catalog(config.catalog.path);
    const now = Date.now();
    catalog.recordBackup(manifest('old-1', new Date(now - 3 * 3_600_000)));
    const { log } = captureLogger();
    const notifier = createNotifier({ config: () => config, catalog, log, host: 'db1' });
    for (let i = 0; i < 5; i++) notifier.checkStale(new Date(now + i * 1000));
    await waitFor('stale events', () => receiver.to('/stale').length >= 2, 5000, 10);
    assert.equal(await notifier.idle(5000), true);
    await sleep(100);
    const stale = receiver.events('/stale');
    // One per source: both sources are in that backup.
    assert.deepEqual(stale.map((e) => [e.kind, e.sources]), [['stale', ['app-files']], ['stale', ['uploads']]]);
    assert.match(stale[0]!.summary, /source app-files: last successful backup is 3 h old, schedule expects 1 h/);
    assert.equal(stale[0]!.backup, 'old-1');

    // A restarted daemon does not announce it again.
    const restarted = createNotifier({ config: () => config, catalog, log, host: 'db1' });
    restarted.checkStale(new Date(now + 10_000));
    assert.equal(await restarted.idle(5000), true);

    catalog.recordBackup(manifest('new-1', new Date(now)));
    for (let i = 0; i < 5; i++) restarted.checkStale(new Date(now + 20_000 + i * 1000));
    await waitFor('recovered events', () => receiver.to('/stale').length >= 4, 5000, 10);
    assert.equal(await restarted.idle(5000), true);
    await sleep(100);
    const all = receiver.events('/stale');
    assert.deepEqual(all.slice(2).map((e) => [e.kind, e.sources, e.backup]), [['recovered', ['app-files'], 'new-1'], ['recovered', ['uploads'], 'new-1']]);
    assert.equal(all.length, 4);
    await notifier.drain(1000);
    await restarted.drain(1000);
    catalog.close();
  });

  test('a remote that lacks the newest backup a copy period after it finished: one stale event; once it is there: one recovered', async () => {
    const hook = await privateFile('remote-stale.url', receiver.url('/remote-stale'));
    const config = await makeConfig(
      ['  webhooks:', `    - url_file: ${hook}`].join('\n'),
      ['schedule: { full: "0 * * * *", incremental: "off", verify: "off", prune: "off", copy: after_backup }', 'remotes:', '  - { name: offsite, type: s3, endpoint: "http://127.0.0.1:9", bucket: nowhere, force_path_style: true }'].join('\n'),
    );
    const catalog = new Catalog(config.catalog.path);
    const now = Date.now();
    catalog.recordBackup(manifest('late-1', new Date(now - 25 * 3_600_000)));
    const { log } = captureLogger();
    const notifier = createNotifier({ config: () => config, catalog, log, host: 'db1' });
    const aboutRemote = () => receiver.events('/remote-stale').filter((e) => e.remote === 'offsite');
    for (let i = 0; i < 3; i++) notifier.checkStale(new Date(now + i * 1000));
    await waitFor('the remote stale event', () => aboutRemote().length >= 1, 5000, 10);
    assert.equal(await notifier.idle(5000), true);
    assert.deepEqual(aboutRemote().map((e) => [e.kind, e.backup]), [['stale', 'late-1']]);
    assert.equal(aboutRemote()[0]!.error?.code, 'REMOTE_BEHIND');

    catalog.remote('offsite').recordBackup('late-1', new Date(now));
    for (let i = 0; i < 3; i++) notifier.checkStale(new Date(now + 10_000 + i * 1000));
    await waitFor('the remote recovered event', () => aboutRemote().length >= 2, 5000, 10);
    assert.equal(await notifier.idle(5000), true);
    await sleep(100);
    assert.deepEqual(aboutRemote().map((e) => e.kind), ['stale', 'recovered']);
    await notifier.drain(1000);
    catalog.close();
  });

  test('a source that never had a backup is stale only once the schedule had time for one', async () => {
    const hook = await privateFile('never.url', receiver.url('/never'));
    const config = await makeConfig(['  webhooks:', `    - url_file: ${hook}`].join('\n'), 'schedule: { full: "0 * * * *", incremental: "off", verify: "off", prune: "off" }');
    const catalog = new Catalog(config.catalog.path);
    const { log } = captureLogger();
    const notifier = createNotifier({ config: () => config, catalog, log });
    const now = Date.now();
    notifier.checkStale(new Date(now));
    notifier.checkStale(new Date(now + 3_600_000));
    assert.equal(await notifier.idle(5000), true);
    assert.equal(receiver.to('/never').length, 0, 'a fresh install starts without an alert');
    notifier.checkStale(new Date(now + 2 * 3_600_000 + 60_000));
    await waitFor('stale events', () => receiver.to('/never').length === 2, 5000, 10);
    assert.match(receiver.events('/never')[0]!.summary, /no successful backup yet/);
    await notifier.drain(1000);
    catalog.close();
  });
});

describe('stackback notify test (the built CLI)', () => {
  let configPath: string;

  before(async () => {
    if (!existsSync(BUILT_CLI)) await execa('npm', ['run', 'build'], { cwd: PROJECT_ROOT });
    const hc = await privateFile('cli-hc.url', receiver.url(`/cli-hc/${HC_TOKEN}`));
    const hook = await privateFile('cli-hook.url', receiver.url(`/cli-hook/${TOKEN}?key=${QUERY_SECRET}`));
    const dead = await privateFile('cli-dead.url', `http://127.0.0.1:${await closedPort()}/nothing-listens`);
    const headers = await privateFile('cli.headers', `Authorization: ${HEADER_SECRET}\n`);
    const config = await makeConfig(
      ['  healthchecks:', `    - { name: hc, url_file: ${hc} }`, '  webhooks:', `    - { name: ops, url_file: ${hook}, headers_file: ${headers} }`, `    - { name: broken, url_file: ${dead}, format: slack }`].join('\n'),
    );
    configPath = config.file;
  });

  const cli = (args: string[]) => execa(process.execPath, [BUILT_CLI, ...args, '--config', configPath], { reject: false, cwd: PROJECT_ROOT, env: {} });

  test('--channel NAME sends one test event through that channel', async () => {
    const before = receiver.to('/cli-hook/').length;
    const result = await cli(['notify', 'test', '--channel', 'ops']);
    assert.equal(result.exitCode, 0, String(result.stderr));
    assert.match(String(result.stdout), /^ok\s+ops\s+webhook\s+\d+ ms/m);
    assert.equal(receiver.to('/cli-hook/').length, before + 1);
    const request = receiver.to('/cli-hook/').at(-1)!;
    assert.equal(request.headers.authorization, HEADER_SECRET);
    const event = JSON.parse(request.body) as AlertEvent;
    assert.equal(event.test, true);
    assert.match(event.summary, /test message/);
    assertNoSecrets([String(result.stdout), String(result.stderr)], 'the CLI output');
  });

  test('every channel, one line each; one failing → exit 1; --json', async () => {
    const result = await cli(['notify', 'test', '--json']);
    assert.equal(result.exitCode, 1, String(result.stderr));
    const results = JSON.parse(String(result.stdout)) as { channel: string; kind: string; ok: boolean; error?: string; ms: number }[];
    assert.deepEqual(results.map((r) => [r.channel, r.kind, r.ok]), [['hc', 'healthchecks', true], ['ops', 'webhook', true], ['broken', 'webhook', false]]);
    assert.match(results[2]!.error!, /webhook broken: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    assert.ok(receiver.to(`/cli-hc/${HC_TOKEN}/log`).length >= 1, 'the healthcheck gets a /log ping, which changes no check state');
    const text = await cli(['notify', 'test']);
    assert.equal(text.exitCode, 1);
    const lines = String(text.stdout).trim().split('\n');
    assert.equal(lines.length, 4, String(text.stdout));
    assert.match(lines[3]!, /^FAILED\s+broken\s+webhook/);
    assertNoSecrets([String(result.stdout), String(result.stderr), String(text.stdout), String(text.stderr)], 'the CLI output');
  });

  test('an unknown --channel: exit 2, naming the channels', async () => {
    const result = await cli(['notify', 'test', '--channel', 'nope']);
    assert.equal(result.exitCode, 2);
    assert.match(String(result.stderr), /no notification channel is named "nope": the channels are hc, ops, broken/);
  });
});
