// Nobody gets more than their role through the control channel: a read-only socket that
// serves only what changes nothing, an admin socket for the rest, caps on connections and
// on waiting jobs, and socket modes that never let every local user in.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { parseConfig } from '../src/config/load.ts';
import { daemonRequest, type DaemonResponse, followJob } from '../src/daemon/client.ts';
import type { JobView } from '../src/daemon/queue.ts';
import { controlSockets, controlYaml, type DaemonProcess, startDaemon } from './support/daemon.ts';
import { filesSourceYaml, makeSandbox, PROJECT_ROOT, qdrantSourceYaml, type Sandbox } from './support/stackback.ts';

interface Submitted {
  job: JobView;
  collapsed: boolean;
}

const MAX_CONNECTIONS = 4;
const MAX_QUEUED_JOBS = 3;

/** An HTTP request on a connection of its own (not the agent's pool), with the response headers. */
function freshRequest(socketPath: string, method: string, path: string): Promise<DaemonResponse & { headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const request = http.request({ socketPath, method, path, agent: false }, (response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode!, body: JSON.parse(text), headers: response.headers }));
    });
    request.on('error', reject);
    request.end();
  });
}

describe('the control channel: a read-only socket and an admin socket', () => {
  let sandbox: Sandbox;
  let daemon: DaemonProcess;
  let data: string;
  let hold: string;

  before(async () => {
    sandbox = await makeSandbox('');
    data = join(sandbox.dir, 'data');
    await mkdir(join(data, 'docs'), { recursive: true });
    await writeFile(join(data, 'docs', 'a.txt'), 'alpha\n'.repeat(1000));
    await mkdir(join(sandbox.dir, 'qdrant-storage'));
    hold = join(sandbox.dir, 'hold');
    // A source whose pre_command waits while `hold` exists: a job that keeps the queue busy on demand.
    const gate = qdrantSourceYaml('http://127.0.0.1:6333', {
      name: 'gate',
      extra: [`      mode: storage_dir`, `      storage_path: ${join(sandbox.dir, 'qdrant-storage')}`, `      pre_command: "while [ -e ${hold} ]; do sleep 0.1; done"`].join('\n'),
    });
    const config = [
      controlYaml(controlSockets(sandbox.dir), `socket_group: nogroup, max_connections: ${MAX_CONNECTIONS}, max_queued_jobs: ${MAX_QUEUED_JOBS}`),
      'schedule: { full: "off", incremental: "off", verify: "off", prune: "off", catch_up: false }',
      (await readFile(sandbox.configPath, 'utf8')).replace('sources:', `sources:\n  files:\n${filesSourceYaml([data])}\n  qdrant:\n${gate}`),
    ].join('\n');
    await writeFile(sandbox.configPath, config);
    daemon = await startDaemon(sandbox.configPath, controlSockets(sandbox.dir));
  });

  after(async () => {
    await daemon?.stop();
    await sandbox?.cleanup();
  });

  const read = (method: string, path: string, body?: unknown) => daemonRequest(daemon.socket, method, path, body);

  test('the sockets have their modes: the read-only one for its group, the admin one for the daemon\'s user only', async () => {
    const readOnly = await stat(daemon.socket);
    assert.equal(readOnly.mode & 0o777, 0o660);
    assert.equal(readOnly.gid, 65534, 'socket_group nogroup');
    assert.equal((await stat(daemon.adminSocket)).mode & 0o777, 0o600);
  });

  test('the read-only socket answers status, list, show, history and jobs, and refuses with 403 whatever would change something', async () => {
    const created = await daemon.request('POST', '/api/backup/create', { type: 'full', sources: ['app-files'] });
    assert.equal(created.status, 202);
    const id = (created.body as Submitted).job.id;
    // Job progress and results are readable through the read-only socket.
    assert.equal((await followJob(daemon.socket, id, () => undefined)).state, 'ok');
    assert.equal((await read('GET', '/api/backup/status')).status, 200);
    const list = await read('GET', '/api/backup/list');
    assert.equal(list.status, 200);
    const name = (list.body as { name: string }[])[0]!.name;
    assert.equal(((await read('GET', `/api/backup/${name}`)).body as { name: string }).name, name);
    assert.equal((await read('GET', `/api/jobs/${id}`)).status, 200);
    const history = await read('GET', '/api/history?limit=1');
    assert.deepEqual((history.body as { kind: string; backup: string }[]).map((r) => [r.kind, r.backup]), [['backup', name]]);
    const jobsBefore = (await read('GET', '/api/jobs')).body as JobView[];

    const target = join(sandbox.dir, 'restored');
    const refused: [string, string, unknown][] = [
      ['POST', '/api/backup/create', { type: 'full' }],
      ['POST', `/api/backup/restore/${name}`, { target_dir: target, yes: true }],
      ['DELETE', `/api/backup/${name}`, undefined],
      ['GET', `/api/backup/verify/${name}?level=deep`, undefined],
      ['POST', '/api/retention/apply', undefined],
      ['POST', '/api/config/reload', undefined],
      ['POST', `/api/jobs/${id}/cancel`, undefined],
    ];
    for (const [method, path, body] of refused) {
      const answer = await read(method, path, body);
      assert.equal(answer.status, 403, `${method} ${path}`);
      const error = (answer.body as { error: { code: string; message: string } }).error;
      assert.equal(error.code, 'FORBIDDEN', `${method} ${path}`);
      assert.ok(error.message.includes(`needs the admin socket ${daemon.adminSocket}`), error.message);
    }
    assert.deepEqual((await read('GET', '/api/jobs')).body, jobsBefore, 'no job was started');
    assert.equal(existsSync(target), false);
    assert.equal((await sandbox.manifests()).length, 1);

    // The admin socket takes the same requests.
    const restore = await daemon.request('POST', `/api/backup/restore/${name}`, { target_dir: target, path: join(data, 'docs'), yes: true });
    assert.equal(restore.status, 202);
    assert.equal((await followJob(daemon.socket, (restore.body as Submitted).job.id, () => undefined)).state, 'ok');
    assert.equal(await readFile(join(target, data, 'docs', 'a.txt'), 'utf8'), 'alpha\n'.repeat(1000));
    assert.equal((await daemon.request('POST', '/api/config/reload')).status, 200);
    const deleted = await daemon.request('DELETE', `/api/backup/${name}`);
    assert.equal(deleted.status, 202);
    assert.equal((await followJob(daemon.socket, (deleted.body as Submitted).job.id, () => undefined)).state, 'ok');
    assert.deepEqual(await sandbox.manifests(), []);
  });

  test('the CLI as a user who may use only the read-only socket: status works, a backup says which socket it needs', async () => {
    // nobody (group nogroup) reaches the sandbox and the config, and the read-only socket through its group.
    await chmod(sandbox.dir, 0o755);
    await chmod(sandbox.configPath, 0o644);
    const asNobody = (args: string[]) =>
      execa('runuser', ['-u', 'nobody', '--', process.execPath, join(PROJECT_ROOT, 'src/cli/main.ts'), ...args, '--config', sandbox.configPath], { reject: false, cwd: sandbox.dir });
    const status = await asNobody(['status', '--json']);
    assert.equal((JSON.parse(String(status.stdout)) as { daemon: { pid: number } }).daemon.pid, daemon.child.pid, String(status.stderr));
    const jobsBefore = ((await read('GET', '/api/jobs')).body as JobView[]).length;
    const backup = await asNobody(['backup', '--full']);
    assert.equal(backup.exitCode, 1);
    assert.match(String(backup.stderr), new RegExp(`this user may not use the daemon's admin socket ${daemon.adminSocket}, which this command needs`));
    assert.match(String(backup.stderr), /hint: run it as root or as the daemon's user: sudo -u stackback/);
    assert.equal(((await read('GET', '/api/jobs')).body as JobView[]).length, jobsBefore, 'nothing ran, through the daemon or locally');
    assert.deepEqual(await sandbox.manifests(), []);
  });

  test('connections past max_connections get 503 with Retry-After; each socket counts its own', async () => {
    const idle: net.Socket[] = [];
    try {
      const openIdle = async (count: number) => {
        for (let i = 0; i < count; i++) {
          const socket = net.connect(daemon.socket);
          await new Promise((resolve) => socket.once('connect', resolve));
          idle.push(socket);
        }
      };
      await openIdle(MAX_CONNECTIONS);
      const refused = await freshRequest(daemon.socket, 'GET', '/api/backup/status');
      assert.equal(refused.status, 503);
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal((refused.body as { error: { code: string } }).error.code, 'TOO_MANY_CONNECTIONS');
      assert.equal((await freshRequest(daemon.adminSocket, 'GET', '/api/backup/status')).status, 200, 'the admin socket is not crowded out');
      // Past twice the limit, connections are closed before they cost more than their accept.
      await openIdle(MAX_CONNECTIONS);
      await assert.rejects(freshRequest(daemon.socket, 'GET', '/api/backup/status'), /socket hang up|ECONNRESET|EPIPE/);
    } finally {
      for (const socket of idle) socket.destroy();
    }
    await sleep(100);
    assert.equal((await freshRequest(daemon.socket, 'GET', '/api/backup/status')).status, 200, 'served again once they closed');
  });

  test('a full job queue answers 429; identical requests still join their waiting job', async () => {
    await writeFile(hold, '');
    try {
      const gate = (await daemon.request('POST', '/api/backup/create', { type: 'full', sources: ['gate'] })).body as Submitted;
      const verify = (n: number) => daemon.request('GET', `/api/backup/verify/full-2000010${n}T000000Z?level=quick`);
      for (let n = 1; n <= MAX_QUEUED_JOBS; n++) assert.equal((await verify(n)).status, 202);
      const full = await verify(MAX_QUEUED_JOBS + 1);
      assert.equal(full.status, 429);
      assert.equal((full.body as { error: { code: string; message: string } }).error.code, 'QUEUE_FULL');
      assert.match((full.body as { error: { message: string } }).error.message, /3 jobs .* already waiting \(control\.max_queued_jobs\)/);
      const again = await verify(1);
      assert.deepEqual([again.status, (again.body as Submitted).collapsed], [202, true]);
      assert.equal((await daemon.request('GET', `/api/jobs/${gate.job.id}`)).status, 200);
    } finally {
      await rm(hold, { force: true });
    }
    for (;;) {
      const status = (await read('GET', '/api/backup/status')).body as { running: unknown; queued: unknown[] };
      if (status.running === null && status.queued.length === 0) break;
      await sleep(100);
    }
  });

  test('a socket mode writable by others, or one file for both sockets, is refused at config load, naming the key', async () => {
    const other = await makeSandbox('', { filesYaml: filesSourceYaml([data]) });
    try {
      const sockets = controlSockets(other.dir);
      await writeFile(other.configPath, `${controlYaml(sockets, 'socket_mode: "0666", admin_socket_mode: "0602"')}\n${await readFile(other.configPath, 'utf8')}`);
      const result = await execa(process.execPath, [join(PROJECT_ROOT, 'src/cli/main.ts'), 'daemon', '--config', other.configPath], { reject: false, timeout: 20_000 });
      assert.equal(result.exitCode, 2, String(result.stderr));
      assert.match(String(result.stderr), /control\.socket_mode: must not be writable by others \(o\+w\).*got "0666"/);
      assert.match(String(result.stderr), /control\.admin_socket_mode: must not be writable by others/);
      assert.equal(existsSync(sockets.socket) || existsSync(sockets.adminSocket), false);
    } finally {
      await other.cleanup();
    }
    // One file cannot be both sockets.
    assert.throws(() => parseConfig('/etc/stackback/stackback.yaml', 'control: { socket: /run/s.sock, admin_socket: /run/s.sock }'), /control\.admin_socket: must not be the same file as control\.socket/);
  });
});
