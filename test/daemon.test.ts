// The daemon as operators run it: a real child process with schedules that fire every few
// seconds, a real PostgreSQL, the control socket, signals.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { followJob } from '../src/daemon/client.ts';
import type { JobEvent, JobView } from '../src/daemon/queue.ts';
import { controlSockets, controlYaml, type DaemonProcess, startDaemon } from './support/daemon.ts';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { makeSandbox, postgresSourceYaml, PROJECT_ROOT, type Sandbox } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';

interface Submitted {
  job: JobView;
  collapsed: boolean;
}

function daemonYaml(sandbox: { dir: string }, schedule: string): string {
  return [`timezone: UTC`, `schedule: { ${schedule} }`, controlYaml(controlSockets(sandbox.dir), 'socket_mode: "0640"')].join('\n');
}

const OFF = 'full: "off", incremental: "off", verify: "off", prune: "off", catch_up: false';

async function finished(daemon: DaemonProcess, id: number): Promise<JobEvent> {
  return followJob(daemon.socket, id, () => undefined);
}

describe('the daemon', () => {
  let cluster: PgCluster;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    cluster = await startPgCluster();
    await cluster.psql('postgres', 'CREATE DATABASE small');
    await cluster.psql('small', "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g");
    await cluster.psql('postgres', 'CREATE DATABASE big');
    await cluster.psql('big', "CREATE TABLE rows AS SELECT g AS id, md5(g::text) || md5((g * 31)::text) || md5((g * 7)::text) AS body FROM generate_series(1, 700000) g;");
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await cluster?.stop();
  });

  async function setup(databases: string[], schedule: string, env: Record<string, string> = {}): Promise<{ sandbox: Sandbox; daemon: DaemonProcess }> {
    const sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases, globals: false }), { extraYaml: '' });
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('sources:', `${daemonYaml(sandbox, schedule)}\nsources:`));
    const daemon = await startDaemon(sandbox.configPath, controlSockets(sandbox.dir), env);
    cleanups.push(async () => {
      await daemon.stop();
      await sandbox.cleanup();
    });
    return { sandbox, daemon };
  }

  test('scheduled fulls and incrementals run on time, after a catch-up full at start, and show in list and history', async () => {
    const started = Date.now();
    const { sandbox, daemon } = await setup(['small'], 'full: "*/10 * * * * *", incremental: "*/3 * * * * *", verify: "off", prune: "off", catch_up: true');
    const list = await waitFor('a scheduled full and two incrementals', async () => {
      const backups = (await sandbox.json<{ name: string; kind: string; started_at: string }[]>(['list'])).value;
      return backups.filter((b) => b.kind === 'incremental').length >= 2 && backups.filter((b) => b.kind === 'full').length >= 2 ? backups : undefined;
    });
    const first = list[0]!;
    assert.equal(first.kind, 'full', 'the catch-up full comes first');
    assert.ok(Date.parse(first.started_at) - started < 8000, 'catch-up ran at start');
    for (const b of list.slice(1)) {
      const second = new Date(b.started_at).getUTCSeconds();
      const period = b.kind === 'full' ? 10 : 3;
      // Started within ~1.5 s after a due time (or later, queued behind another job).
      const late = second % period;
      assert.ok(late <= 2 || list.some((o) => o !== b && Math.abs(Date.parse(o.started_at) - Date.parse(b.started_at)) < 3000), `${b.name} started ${late} s after its due time`);
    }
    const history = await sandbox.json<{ kind: string; status: string; detail: { kind?: string } }[]>(['history']);
    assert.ok(history.value.filter((r) => r.kind === 'backup' && r.status === 'ok').length >= 4);
    const status = await sandbox.json<{ healthy: boolean; daemon: { pid: number }; schedules: { name: string; next: string | null }[]; last: { full: { status: string } } }>(['status']);
    assert.equal(status.value.daemon.pid, daemon.child.pid);
    assert.equal(status.value.last.full.status, 'ok');
    assert.ok(status.value.schedules.find((s) => s.name === 'incremental')!.next);
    // Its schedules keep backing up "small" every few seconds: those sessions would trip later tests' restore preflights.
    await daemon.stop();
  });

  test('jobs queue one at a time and identical waiting jobs collapse; progress streams as NDJSON', async () => {
    const { daemon } = await setup(['big'], OFF);
    const full = (await daemon.request('POST', '/api/backup/create', { type: 'full' })).body as Submitted;
    const incr1 = (await daemon.request('POST', '/api/backup/create', { type: 'incremental' })).body as Submitted;
    const incr2 = (await daemon.request('POST', '/api/backup/create', { type: 'incremental' })).body as Submitted;
    assert.equal(full.collapsed, false);
    assert.equal(incr1.job.state, 'queued');
    assert.equal(incr2.collapsed, true);
    assert.equal(incr2.job.id, incr1.job.id, 'the identical waiting job is returned');

    const events: JobEvent[] = [];
    // Progress is readable through the read-only socket.
    const last = await followJob(daemon.socket, full.job.id, (e) => events.push(e));
    assert.equal(last.state, 'ok');
    const progress = events.filter((e) => e.progress?.phase === 'dumping');
    assert.ok(progress.length >= 2, `progress events: ${progress.length}`);
    const done = progress.map((e) => e.progress!.bytes_done!);
    assert.deepEqual(done, [...done].sort((a, b) => a - b), 'bytes only grow');
    assert.equal((last.result as { status: string }).status, 'ok');
    const second = await finished(daemon, incr1.job.id);
    assert.equal(second.state, 'ok');
    const jobs = (await daemon.request('GET', '/api/jobs')).body as JobView[];
    assert.deepEqual(jobs.map((j) => j.id).sort(), [full.job.id, incr1.job.id].sort(), 'two jobs, not three');
    assert.ok(Date.parse(jobs.find((j) => j.id === incr1.job.id)!.started_at!) >= Date.parse(jobs.find((j) => j.id === full.job.id)!.finished_at!), 'one after the other');
  });

  test('a running backup can be cancelled: no manifest, the run is interrupted', async () => {
    const { sandbox, daemon } = await setup(['big'], OFF);
    const submitted = (await daemon.request('POST', '/api/backup/create', { type: 'full' })).body as Submitted;
    await waitFor('the backup to be dumping', async () => (((await daemon.request('GET', `/api/jobs/${submitted.job.id}`)).body as JobView).progress?.phase === 'dumping' ? true : undefined));
    const cancel = await daemon.request('POST', `/api/jobs/${submitted.job.id}/cancel`);
    assert.deepEqual([cancel.status, cancel.body], [200, { cancelled: true }]);
    const last = await finished(daemon, submitted.job.id);
    assert.equal(last.state, 'cancelled');
    assert.deepEqual(await sandbox.manifests(), []);
    const history = await sandbox.json<{ status: string }[]>(['history']);
    assert.equal(history.value[0]!.status, 'interrupted');
    assert.deepEqual(await readdir(join(sandbox.repoPath, 'chains')), [], 'what it wrote was freed');
  });

  test('every control route answers, and bad requests get 4xx, never a crash', async () => {
    const { sandbox, daemon } = await setup(['small'], OFF);
    const created = (await daemon.request('POST', '/api/backup/create', { type: 'full' })).body as Submitted;
    assert.equal((await finished(daemon, created.job.id)).state, 'ok');
    const list = (await daemon.request('GET', '/api/backup/list')).body as { name: string }[];
    assert.equal(list.length, 1);
    const name = list[0]!.name;
    assert.equal(((await daemon.request('GET', `/api/backup/${name}`)).body as { name: string }).name, name);
    const verify = await daemon.request('GET', `/api/backup/verify/${name}?level=deep`);
    assert.equal(verify.status, 202);
    const verified = await finished(daemon, (verify.body as Submitted).job.id);
    assert.equal((verified.result as { ok: boolean }).ok, true);
    const dry = await daemon.request('POST', '/api/retention/apply?dry_run=1');
    assert.equal(dry.status, 202);
    assert.equal(((await finished(daemon, (dry.body as Submitted).job.id)).result as { dry_run: boolean }).dry_run, true);
    const check = await daemon.request('POST', `/api/backup/restore/${name}`, { target_db: 'small_from_daemon', check: true });
    assert.deepEqual(((await finished(daemon, (check.body as Submitted).job.id)).result as { steps: string[] }).steps, ['restore database "small" as new database "small_from_daemon" (the original is not touched)']);
    const restore = await daemon.request('POST', `/api/backup/restore/${name}`, { target_db: 'small_from_daemon' });
    assert.equal((await finished(daemon, (restore.body as Submitted).job.id)).state, 'ok');
    assert.equal(await cluster.psql('small_from_daemon', 'SELECT count(*) FROM t'), '20000');
    const swap = await daemon.request('POST', `/api/backup/restore/${name}`, {});
    const refused = await finished(daemon, (swap.body as Submitted).job.id);
    assert.deepEqual([refused.state, refused.error?.code], ['failed', 'USAGE'], `replacing data needs yes: true; got ${JSON.stringify(refused.error)}`);
    assert.equal((await daemon.request('GET', '/api/jobs/999999')).status, 404);
    assert.equal((await daemon.request('POST', '/api/config/reload')).status, 200);
    const del = await daemon.request('DELETE', `/api/backup/${name}`);
    assert.equal((await finished(daemon, (del.body as Submitted).job.id)).state, 'ok');
    assert.deepEqual(await sandbox.manifests(), []);

    const expect = async (method: string, path: string, body: unknown, status: number, code: string) => {
      const answer = await daemon.request(method, path, body);
      assert.equal(answer.status, status, `${method} ${path}`);
      assert.equal((answer.body as { error: { code: string } }).error.code, code, `${method} ${path}`);
    };
    await expect('GET', '/api/nothing', undefined, 404, 'NOT_FOUND');
    await expect('PUT', '/api/backup/list', undefined, 405, 'METHOD_NOT_ALLOWED');
    await expect('GET', '/api/backup/no-such-backup', undefined, 404, 'BACKUP_NOT_FOUND');
    await expect('GET', `/api/backup/${encodeURIComponent('../etc')}`, undefined, 400, 'BACKUP_NAME_INVALID');
    await expect('DELETE', `/api/backup/${encodeURIComponent('a..b')}`, undefined, 400, 'BACKUP_NAME_INVALID');
    await expect('POST', '/api/backup/create', { type: 'weekly' }, 400, 'BAD_REQUEST');
    await expect('POST', '/api/backup/create', { type: 'full', sources: ['nope'] }, 400, 'BAD_REQUEST');
    await expect('GET', '/api/backup/verify/all?level=thorough', undefined, 400, 'BAD_REQUEST');
    await expect('POST', '/api/backup/restore/x', { yes: 'sure' }, 400, 'BAD_REQUEST');
    // Raw requests: malformed JSON and an oversized body.
    const raw = (body: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request({ socketPath: daemon.adminSocket, method: 'POST', path: '/api/backup/create', headers: { 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const malformed = await raw('{"type": full');
    assert.equal(malformed.status, 400);
    assert.match(malformed.body, /"code":"BAD_REQUEST".*not valid JSON/);
    const huge = await raw(JSON.stringify({ type: 'full', padding: 'x'.repeat(200_000) }));
    assert.equal(huge.status, 413);
    assert.equal((await daemon.request('GET', '/api/backup/status')).status, 200, 'still answering');
  });

  test('the sockets have the configured modes; stale ones are replaced; a second daemon is refused by name', async () => {
    const { sandbox, daemon } = await setup(['small'], OFF);
    assert.equal((await stat(daemon.socket)).mode & 0o777, 0o640);
    assert.equal((await stat(daemon.adminSocket)).mode & 0o777, 0o600, 'the admin socket defaults to owner only');
    const second = await execa(process.execPath, [join(PROJECT_ROOT, 'src/cli/main.ts'), 'daemon', '--config', sandbox.configPath], { reject: false });
    assert.notEqual(second.exitCode, 0);
    assert.match(String(second.stderr), new RegExp(`another stackback daemon uses this repository: pid ${daemon.child.pid}|another stackback daemon \\(pid ${daemon.child.pid}\\) is serving`));
    // A daemon killed outright leaves its socket and lock behind: the next one replaces both.
    daemon.child.kill('SIGKILL');
    await daemon.child;
    assert.ok(existsSync(daemon.socket) && existsSync(daemon.adminSocket), 'stale sockets are left');
    const next = await startDaemon(sandbox.configPath, daemon);
    cleanups.push(() => next.stop());
    assert.equal((await next.request('GET', '/api/backup/status')).status, 200);
  });

  test('SIGHUP reloads a good config, keeps the old one on a bad config and says why', async () => {
    const { sandbox, daemon } = await setup(['small'], OFF);
    const text = await readFile(sandbox.configPath, 'utf8');
    await writeFile(sandbox.configPath, text.replace('incremental: "off"', 'incremental: "0 0 1 1 *"'));
    daemon.child.kill('SIGHUP');
    const reloaded = await waitFor('the new schedule', async () => {
      const status = (await daemon.request('GET', '/api/backup/status')).body as { schedules: { name: string; expression: string | null }[] };
      return status.schedules.find((s) => s.name === 'incremental')!.expression === '0 0 1 1 *' ? status : undefined;
    });
    assert.ok(reloaded);
    await writeFile(sandbox.configPath, text.replace('incremental: "off"', 'incremental: "99 * * * *"').replace('timezone: UTC', 'timezone: Mars/Olympus'));
    daemon.child.kill('SIGHUP');
    await waitFor('the rejection in the log', async () => (daemon.output().includes('the previous config keeps running') ? true : undefined));
    assert.match(daemon.output(), /config reload rejected: timezone: must be an IANA time zone/);
    assert.match(daemon.output(), /config reload rejected: schedule\.incremental: must be a cron expression/);
    const status = (await daemon.request('GET', '/api/backup/status')).body as { schedules: { name: string; expression: string | null }[] };
    assert.equal(status.schedules.find((s) => s.name === 'incremental')!.expression, '0 0 1 1 *', 'the old config keeps running');
    const viaApi = await daemon.request('POST', '/api/config/reload');
    assert.equal(viaApi.status, 400);
    assert.equal((viaApi.body as { error: { problems: string[] } }).error.problems.length, 2);
  });

  test('SIGTERM during a backup stops it cleanly: no manifest, run interrupted, the next start is clean', async () => {
    const { sandbox, daemon } = await setup(['big'], OFF);
    const submitted = (await daemon.request('POST', '/api/backup/create', { type: 'full' })).body as Submitted;
    await waitFor('the backup to be dumping', async () => (((await daemon.request('GET', `/api/jobs/${submitted.job.id}`)).body as JobView).progress?.phase === 'dumping' ? true : undefined));
    const stopping = Date.now();
    daemon.child.kill('SIGTERM');
    const exit = await daemon.child;
    assert.equal(exit.exitCode, 0, `${exit.signal ?? ''} ${daemon.output()}`);
    assert.ok(Date.now() - stopping < 15_000, 'it stopped within a bounded time');
    assert.deepEqual(await sandbox.manifests(), []);
    assert.equal(existsSync(daemon.socket) || existsSync(daemon.adminSocket), false, 'the sockets are removed');
    const history = await sandbox.json<{ status: string; error: string }[]>(['history']);
    assert.equal(history.value[0]!.status, 'interrupted');
    // Leftovers in work_dir of runs that died; a live process's restore pipe is not one of them.
    const work = join(sandbox.dir, 'tmp');
    await mkdir(join(work, 'drill-files-1'), { recursive: true });
    const dead = execa('true');
    await dead;
    const livePipe = `pipe-${process.pid}-1`;
    for (const name of ['catalog-copy-1-2.db', `pipe-${dead.pid}-1`, livePipe]) await writeFile(join(work, name), '');
    const next = await startDaemon(sandbox.configPath, daemon);
    cleanups.push(() => next.stop());
    assert.deepEqual(await readdir(join(sandbox.repoPath, 'chains')), []);
    assert.deepEqual(await readdir(join(sandbox.repoPath, 'tmp')), []);
    assert.deepEqual(await readdir(work), [livePipe]);
  });

  test('the CLI runs commands as daemon jobs when one answers: backup, --detach, status', async () => {
    const { sandbox } = await setup(['small'], 'full: "0 0 1 1 *", incremental: "0 * * * *", verify: "off", prune: "off", catch_up: false');
    const backup = await sandbox.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(backup.stderr, /started daemon job \d+ \(backup\)/);
    assert.match(backup.stdout.trim(), /^full-\d{8}T\d{6}Z/);
    const detached = await sandbox.json<{ job: JobView }>(['backup', '--incremental', '--detach']);
    assert.equal(detached.code, 0);
    assert.ok(['queued', 'running'].includes(detached.value.job.state));
    const status = await sandbox.run(['status']);
    assert.match(status.stdout, /daemon {6}running, pid \d+/);
    await waitFor('the detached job', async () => ((await sandbox.json<unknown[]>(['list'])).value.length === 2 ? true : undefined));
    // Healthy only once the repository key has a copy away from the server.
    assert.match((await sandbox.run(['status'])).stdout, /the repository key exists only on this server/);
    assert.equal((await sandbox.run(['key', 'export'])).code, 0);
    // The daemon caches its status for a second (monitoring asks in bursts): the export shows once that has passed.
    const healthy = await waitFor('status healthy after the key export', async () => {
      const result = await sandbox.run(['status']);
      return result.code === 0 ? result : undefined;
    }, 10_000, 200);
    assert.match(healthy.stdout, /^healthy$/m);
  });

  test('status without a daemon says so and exits 1', async () => {
    const sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['small'] }));
    cleanups.push(() => sandbox.cleanup());
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('sources:', `${daemonYaml(sandbox, OFF)}\nsources:`));
    const status = await sandbox.run(['status']);
    assert.equal(status.code, 1);
    assert.match(status.stdout, /daemon {6}NOT RUNNING/);
    assert.match(status.stdout, /WARNING {5}the daemon is not running/);
  });

  test('readiness and a one-line status reach systemd through NOTIFY_SOCKET', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stackback-notify-'));
    const socket = join(dir, 'notify.sock');
    // A datagram listener standing in for systemd (Node has no Unix datagram sockets).
    const listener = execa('python3', ['-c', `import socket\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind(${JSON.stringify(socket)})\nprint("bound", flush=True)\ns.settimeout(30)\nprint(s.recv(4096).decode(), flush=True)`], { reject: false });
    try {
      await waitFor('the listener', async () => (existsSync(socket) ? true : undefined));
      const { daemon } = await setup(['small'], OFF, { NOTIFY_SOCKET: socket });
      const message = String((await listener).stdout);
      assert.match(message, /READY=1/);
      assert.match(message, new RegExp(`MAINPID=${daemon.child.pid}`));
      assert.match(message, /STATUS=idle; no backup scheduled; no full backup yet/);
    } finally {
      listener.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the systemd unit passes systemd-analyze verify', { skip: existsSync('/usr/bin/systemd-analyze') ? false : 'systemd-analyze is not installed on this machine' }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stackback-unit-'));
    try {
      // The unit names /opt/stackback; point it at this checkout so the paths exist.
      const unit = (await readFile(join(PROJECT_ROOT, 'systemd/stackback.service'), 'utf8')).replaceAll('/opt/stackback/', PROJECT_ROOT);
      await writeFile(join(dir, 'stackback.service'), unit);
      const result = await execa('systemd-analyze', ['verify', join(dir, 'stackback.service')], { reject: false });
      const problems = String(result.stderr).split('\n').filter((l) => l.includes('stackback.service') && !/User=|Group=|stackback.*does not exist/.test(l));
      assert.deepEqual(problems, [], String(result.stderr));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
