// Alerts end to end through the real daemon: a backup that fails and then recovers reaches a real
// HTTP receiver as healthchecks pings (/start, /fail with the error, success) and webhook events
// (one failure, one recovered — nothing twice), through a receiver that answers 500 for a while;
// an SMTP server refusing the password shows in status without touching the backups; and a
// seconds-level schedule with its source gone yields exactly one stale and one recovered event.
import assert from 'node:assert/strict';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SMTPServer } from 'smtp-server';
import type { AlertEvent } from '../src/alerts/event.ts';
import { followJob } from '../src/daemon/client.ts';
import type { JobView } from '../src/daemon/queue.ts';
import type { StatusDocument } from '../src/daemon/status.ts';
import { controlSockets, controlYaml, type DaemonProcess, startDaemon } from './support/daemon.ts';
import { filesSourceYaml, makeSandbox, type Sandbox } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';

interface Received {
  path: string;
  body: string;
  at: number;
  status: number;
}

/** A plain HTTP receiver on loopback that records every request; `failNext` answers 500 to that many webhook requests first. */
async function startReceiver(): Promise<{ url: string; requests: Received[]; failNext: number; events(): AlertEvent[]; close(): Promise<void> }> {
  const state = { url: '', requests: [] as Received[], failNext: 0 };
  const server: Server = createServer((req: IncomingMessage, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const hook = req.url!.startsWith('/hook');
      const status = hook && state.failNext > 0 ? (state.failNext--, 500) : 200;
      state.requests.push({ path: req.url!, body: Buffer.concat(parts).toString('utf8'), at: Date.now(), status });
      res.writeHead(status).end(status === 200 ? 'OK' : 'try again');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(state, {
    events: () => state.requests.filter((r) => r.path.startsWith('/hook') && r.status === 200).map((r) => JSON.parse(r.body) as AlertEvent),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

describe('alerts from the daemon', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  async function setup(schedule: string, notifyExtra: string[] = []): Promise<{ sandbox: Sandbox; daemon: DaemonProcess; data: string; receiver: Awaited<ReturnType<typeof startReceiver>> }> {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const sandbox = await makeSandbox('', { filesYaml: filesSourceYaml(['/DATA']) });
    cleanups.push(() => sandbox.cleanup());
    const data = join(sandbox.dir, 'data');
    await mkdir(data);
    await writeFile(join(data, 'a.txt'), 'precious\n'.repeat(1000));
    const files = { hc: join(sandbox.dir, 'hc.url'), hook: join(sandbox.dir, 'hook.url') };
    await writeFile(files.hc, `${receiver.url}/hc/secret-check-uuid\n`, { mode: 0o600 });
    await writeFile(files.hook, `${receiver.url}/hook?token=secret-hook-token\n`, { mode: 0o600 });
    const yaml = [
      'timezone: UTC',
      `schedule: { ${schedule} }`,
      controlYaml(controlSockets(sandbox.dir)),
      'notify:',
      '  retry_for: 30s',
      '  healthchecks:',
      `    - { name: hc, url_file: ${files.hc}, jobs: [backup] }`,
      '  webhooks:',
      `    - { name: ops-hook, url_file: ${files.hook}, format: json }`,
      ...notifyExtra,
    ].join('\n');
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('sources:', `${yaml}\nsources:`).replace('["/DATA"]', JSON.stringify([data])));
    const daemon = await startDaemon(sandbox.configPath, controlSockets(sandbox.dir));
    cleanups.push(() => daemon.stop());
    return { sandbox, daemon, data, receiver };
  }

  async function backup(daemon: DaemonProcess): Promise<JobView> {
    const submitted = (await daemon.request('POST', '/api/backup/create', { type: 'full' })).body as { job: JobView };
    await followJob(daemon.socket, submitted.job.id, () => undefined);
    return (await daemon.request('GET', `/api/jobs/${submitted.job.id}`)).body as JobView;
  }

  test('a failing backup pings /start and /fail and sends one failure; recovery sends one recovered, through a receiver that fails for a while', async () => {
    const smtp = new SMTPServer({ authOptional: false, disabledCommands: ['STARTTLS'], onAuth: (_auth, _session, callback) => callback(new Error('Invalid username or password')) });
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => smtp.close(() => resolve())));
    const smtpPort = (smtp.server.address() as AddressInfo).port;
    const passwordFile = join(tmpdir(), `stackback-alerts-${process.pid}.pw`);
    await writeFile(passwordFile, 'not-the-password\n', { mode: 0o600 });
    cleanups.push(() => rm(passwordFile, { force: true }));
    const { sandbox, daemon, data, receiver } = await setup('full: "off", incremental: "off", verify: "off", prune: "off", catch_up: false', [
      '  email:',
      `    smtp: { host: 127.0.0.1, port: ${smtpPort}, starttls: false, user: alerts, password_file: ${passwordFile} }`,
      '    from: backup@example.com',
      '    to: [ops@example.com]',
    ]);

    // The source's data is gone: the backup fails.
    await rename(data, `${data}.away`);
    const failed = await backup(daemon);
    assert.equal(failed.state, 'failed');
    await waitFor('the /fail ping and the failure event', () => receiver.requests.some((r) => r.path === '/hc/secret-check-uuid/fail') && receiver.events().length === 1);
    const pings = receiver.requests.filter((r) => r.path.startsWith('/hc/'));
    assert.deepEqual(pings.map((r) => r.path), ['/hc/secret-check-uuid/start', '/hc/secret-check-uuid/fail']);
    assert.match(pings[1]!.body, /backup/);
    const [failure] = receiver.events();
    assert.equal(failure!.kind, 'failure');
    assert.equal(failure!.job?.kind, 'backup');
    assert.ok(failure!.error?.message, 'the error travels with the event');
    assert.ok(failure!.look_further.length > 0);
    // Delivered within 2 s of the job's end.
    const ended = Date.parse(failed.finished_at!);
    const delivered = receiver.requests.find((r) => r.path.startsWith('/hook'))!.at;
    console.log(`failure event delivered ${delivered - ended} ms after the job ended`);
    assert.ok(delivered - ended <= 2000, `${delivered - ended} ms`);

    // Failing again: pings again, but no second event (one incident, one message).
    assert.equal((await backup(daemon)).state, 'failed');
    await waitFor('the second /fail ping', () => receiver.requests.filter((r) => r.path === '/hc/secret-check-uuid/fail').length === 2);

    // Back, through a receiver that answers 500 twice first: delivered after retries, the backup unaffected.
    await rename(`${data}.away`, data);
    receiver.failNext = 2;
    const ok = await backup(daemon);
    assert.equal(ok.state, 'ok');
    await waitFor('the recovered event after retries', () => receiver.events().length === 2, 30_000);
    assert.equal(receiver.events()[1]!.kind, 'recovered');
    assert.equal(receiver.requests.filter((r) => r.path.startsWith('/hook') && r.status === 500).length, 2);
    assert.equal(receiver.requests.filter((r) => r.path === '/hc/secret-check-uuid').length, 1, 'one success ping');
    // Nothing sent twice, and no token in any log line or status.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(receiver.events().length, 2);

    // The email channel cannot log in: status names it; the backups went on regardless.
    const status = await waitFor('the email channel to show as failing', async () => {
      const { value } = await sandbox.json<StatusDocument>(['status']);
      return value.notifications.find((c) => c.name === 'email' && c.failing_since) ? value : undefined;
    });
    assert.ok(status.warnings.some((w) => /email email failing since .*535|email email failing since .*refused the login/.test(w)), status.warnings.join('\n'));
    const everything = JSON.stringify(status) + daemon.output();
    for (const secret of ['secret-hook-token', 'secret-check-uuid', 'not-the-password']) assert.ok(!everything.includes(secret), `${secret} leaked`);
  });

  test('a seconds-level schedule with its source gone: one stale event, then one recovered', async () => {
    const { daemon, data, receiver } = await setup('incremental: "*/2 * * * * *", full: "off", verify: "off", prune: "off", catch_up: false');
    assert.equal((await backup(daemon)).state, 'ok');
    await rename(data, `${data}.away`);
    const stale = await waitFor('the stale event', () => receiver.events().find((e) => e.kind === 'stale'), 30_000);
    assert.deepEqual(stale.sources, ['app-files']);
    await rename(`${data}.away`, data);
    await waitFor('the recovered event of the source', () => receiver.events().find((e) => e.kind === 'recovered' && e.sources?.includes('app-files')), 30_000);
    // A few more runs: nothing more about the source.
    await new Promise((r) => setTimeout(r, 6000));
    const aboutSource = receiver.events().filter((e) => e.sources?.includes('app-files') && (e.kind === 'stale' || e.kind === 'recovered'));
    assert.deepEqual(aboutSource.map((e) => e.kind), ['stale', 'recovered']);
  });
});
