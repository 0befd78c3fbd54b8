// Off-site copies through the daemon, as operators see them: `schedule.copy` (after_backup and a
// cron expression), POST /api/copy, and what `status`, `list`, `show` and `list --remote` say
// per remote — against a real S3 server (s3rver on loopback) and an unreachable one.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { daemonRequest, followJob } from '../src/daemon/client.ts';
import type { JobView } from '../src/daemon/queue.ts';
import type { RemoteStatus, StatusDocument } from '../src/daemon/status.ts';
import type { BackupDetail, ListedBackup } from '../src/catalog/views.ts';
import type { CopyReport } from '../src/jobs/copy.ts';
import { Repository } from '../src/repository/repository.ts';
import { controlSockets, controlYaml, type DaemonProcess, startDaemon } from './support/daemon.ts';
import { type S3Handle, startS3, writeCredentialsFile } from './support/s3.ts';
import { filesSourceYaml, makeSandbox, type Sandbox } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';

interface Submitted {
  job: JobView;
  collapsed: boolean;
}

interface RemoteListed {
  name: string;
  kind: string;
  status: string;
  chain: string;
  started_at: string;
  bytes_stored: number;
  local: boolean;
}

const OFF = 'full: "off", incremental: "off", verify: "off", prune: "off", catch_up: false';

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('off-site copies through the daemon', () => {
  let s3: S3Handle;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    s3 = await startS3();
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await s3?.stop();
  });

  /** A sandbox backing up a small folder, with remote `offsite` at `endpoint` and the daemon started on it. */
  async function setup(endpoint: string, schedule: string, remoteExtra = ''): Promise<{ sandbox: Sandbox; daemon: DaemonProcess }> {
    // The data folder lives in the sandbox, whose path makeSandbox picks: named in the config afterwards.
    const sandbox = await makeSandbox('', { filesYaml: filesSourceYaml(['/DATA']) });
    const data = join(sandbox.dir, 'data');
    await mkdir(data);
    await writeFile(join(data, 'a.txt'), 'the first file\n'.repeat(1000));
    const credentials = join(sandbox.dir, 's3.credentials');
    await writeCredentialsFile(credentials, s3);
    const yaml = [
      'timezone: UTC',
      // The first test holds the repository lock for a moment, to line jobs up behind it.
      'lock_timeout: 30s',
      `schedule: { ${schedule} }`,
      controlYaml(controlSockets(sandbox.dir), 'socket_mode: "0640"'),
      'remotes:',
      '  - name: offsite',
      '    type: s3',
      `    endpoint: ${endpoint}`,
      '    region: us-east-1',
      `    bucket: ${s3.bucket}`,
      // Each sandbox its own prefix: one bucket, several "servers".
      `    prefix: ${sandbox.dir.split('/').pop()}/`,
      '    force_path_style: true',
      `    credentials_file: ${credentials}`,
      ...(remoteExtra ? [remoteExtra] : []),
    ].join('\n');
    const config = (await readFile(sandbox.configPath, 'utf8')).replace('sources:', `${yaml}\nsources:`).replace('["/DATA"]', JSON.stringify([data]));
    await writeFile(sandbox.configPath, config);
    const daemon = await startDaemon(sandbox.configPath, controlSockets(sandbox.dir));
    cleanups.push(async () => {
      await daemon.stop();
      await sandbox.cleanup();
    });
    return { sandbox, daemon };
  }

  async function backup(daemon: DaemonProcess, type: 'full' | 'incremental'): Promise<string> {
    const submitted = (await daemon.request('POST', '/api/backup/create', { type })).body as Submitted;
    const last = await followJob(daemon.socket, submitted.job.id, () => undefined);
    assert.equal(last.state, 'ok', JSON.stringify(last));
    return (last.result as { backup: string }).backup;
  }

  const copyJobs = async (daemon: DaemonProcess) => ((await daemon.request('GET', '/api/jobs')).body as JobView[]).filter((j) => j.kind === 'copy');

  /** Waits until every copy job has ended and returns them, oldest first. */
  async function copiesDone(daemon: DaemonProcess, atLeast: number): Promise<JobView[]> {
    return waitFor(`${atLeast} copy job(s) to end`, async () => {
      const jobs = await copyJobs(daemon);
      return jobs.length >= atLeast && jobs.every((j) => j.finished_at !== null) ? jobs.reverse() : undefined;
    });
  }

  async function remoteStatus(sandbox: Sandbox): Promise<{ status: StatusDocument; remote: RemoteStatus }> {
    const { value } = await sandbox.json<StatusDocument>(['status']);
    assert.equal(value.remotes.length, 1);
    return { status: value, remote: value.remotes[0]! };
  }

  test('after_backup: every successful backup is followed by a copy; status, list, show and list --remote say what is off-site', async () => {
    const { sandbox, daemon } = await setup(s3.endpoint, `${OFF}, copy: after_backup`);
    const prefix = `${sandbox.dir.split('/').pop()}/`;

    const full = await backup(daemon, 'full');
    const [copy] = await copiesDone(daemon, 1);
    assert.equal(copy!.origin, 'schedule');
    assert.equal(copy!.state, 'ok');
    assert.deepEqual((copy!.result as CopyReport[]).map((r) => [r.remote, r.ok, r.copied.map((c) => c.backup)]), [['offsite', true, [full]]]);
    assert.ok((await s3.list(`${prefix}manifests/`)).length === 1, 'the manifest is on the bucket');

    // list --remote reads the remote's manifests, in the CLI.
    const listed = await sandbox.json<RemoteListed[]>(['list', '--remote', 'offsite']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(listed.value.map((b) => [b.name, b.kind, b.status, b.local]), [[full, 'full', 'ok', true]]);
    assert.ok(listed.value[0]!.chain && listed.value[0]!.bytes_stored > 0);
    const text = await sandbox.run(['list', '--remote', 'offsite']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^NAME\s+KIND\s+STATUS\s+CHAIN\s+STARTED\s+STORED\s+LOCAL/);
    assert.match(text.stdout, new RegExp(`${full}\\s+full\\s+ok\\s`));

    let { remote } = await remoteStatus(sandbox);
    assert.equal(remote.name, 'offsite');
    assert.equal(remote.location, `s3://${s3.bucket}/${prefix}`);
    assert.equal(remote.missing, 0);
    assert.equal(remote.backups, 1);
    assert.equal(remote.last_error, null);
    assert.ok(remote.last_copy_at && Date.parse(remote.last_copy_at) >= Date.parse(copy!.started_at!));
    const statusText = await sandbox.run(['status']);
    assert.match(statusText.stdout, new RegExp(`remote\\s+offsite s3://${s3.bucket}/${prefix}: 1 backup\\(s\\) there, every local backup off-site; last copy 2`));
    assert.match(statusText.stdout, /schedule\s+copy\s+"after_backup"/);
    assert.doesNotMatch(statusText.stdout, /WARNING.*offsite/);

    // Two backups back to back (lined up while this test holds the repository lock): the copy
    // queued after the first still waits when the second ends, so one copy takes both.
    const repo = await Repository.open(sandbox.repoPath, { keyFile: `${sandbox.repoPath}.key`, passphraseFile: undefined });
    const lock = await repo.lockWriter({ command: 'test: holding the queue', timeoutMs: 0 });
    const first = (await daemon.request('POST', '/api/backup/create', { type: 'incremental' })).body as Submitted;
    await writeFile(join(sandbox.dir, 'data', 'b.txt'), 'a second file\n'.repeat(500));
    const second = (await daemon.request('POST', '/api/backup/create', { type: 'full' })).body as Submitted;
    assert.equal(second.job.state, 'queued');
    await lock.release();
    const names = [];
    for (const job of [first, second]) names.push(((await followJob(daemon.socket, job.job.id, () => undefined)).result as { backup: string }).backup);
    const copies = await copiesDone(daemon, 2);
    assert.equal(copies.length, 2, 'one copy for two backups');
    assert.deepEqual((copies[1]!.result as CopyReport[])[0]!.copied.map((c) => c.backup).sort(), [...names].sort());
    ({ remote } = await remoteStatus(sandbox));
    assert.deepEqual([remote.backups, remote.missing], [3, 0]);

    // list and show: which remotes hold each backup.
    const list = await sandbox.json<ListedBackup[]>(['list']);
    assert.deepEqual(list.value.map((b) => b.remotes), [['offsite'], ['offsite'], ['offsite']]);
    const table = await sandbox.run(['list']);
    assert.match(table.stdout.split('\n')[0]!, /VERIFIED\s+OFF-SITE$/);
    assert.match(table.stdout, new RegExp(`${full}\\s.*\\soffsite$`, 'm'));
    const detail = await sandbox.json<BackupDetail>(['show', full]);
    assert.deepEqual(detail.value.remotes.map((r) => r.name), ['offsite']);
    assert.match((await sandbox.run(['show', full])).stdout, /^off-site offsite \(since \d{4}-/m);

    // POST /api/copy: admin socket only; the body is checked.
    const readOnly = await daemonRequest(daemon.socket, 'POST', '/api/copy', {});
    assert.equal(readOnly.status, 403);
    assert.equal((readOnly.body as { error: { code: string } }).error.code, 'FORBIDDEN');
    const unknownKey = await daemon.request('POST', '/api/copy', { remote: ['offsite'] });
    assert.equal(unknownKey.status, 400);
    assert.match((unknownKey.body as { error: { code: string; message: string } }).error.message, /"remote"/);
    const notList = await daemon.request('POST', '/api/copy', { remotes: 'offsite' });
    assert.deepEqual([notList.status, (notList.body as { error: { code: string } }).error.code], [400, 'BAD_REQUEST']);
    const noSuchRemote = await daemon.request('POST', '/api/copy', { remotes: ['elsewhere'] });
    assert.deepEqual([noSuchRemote.status, (noSuchRemote.body as { error: { code: string } }).error.code], [404, 'REMOTE_NOT_FOUND']);
    const badName = await daemon.request('POST', '/api/copy', { backups: ['../x'] });
    assert.equal(badName.status, 400);

    // `stackback copy` goes through the daemon: nothing left to send.
    const cli = await sandbox.json<CopyReport[]>(['copy', '--remote', 'offsite']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(cli.value.map((r) => [r.remote, r.ok, r.copied.length, r.already_there]), [['offsite', true, 0, 3]]);
    assert.equal((await copyJobs(daemon)).filter((j) => j.origin === 'manual').length, 1, 'the CLI ran it as a daemon job');

    // An unknown remote: exit 2, from list --remote (local) as from copy (daemon).
    const unknownList = await sandbox.run(['list', '--remote', 'elsewhere']);
    assert.equal(unknownList.code, 2);
    assert.match(unknownList.stderr, /no remote named "elsewhere".*\n.*configured remotes: offsite/);
    assert.equal((await sandbox.run(['copy', '--remote', 'elsewhere'])).code, 2);
  });

  test('verify --remote and restore --from run as daemon jobs, reading the bucket', async () => {
    const { sandbox, daemon } = await setup(s3.endpoint, `${OFF}, copy: after_backup`);
    const full = await backup(daemon, 'full');
    await copiesDone(daemon, 1);
    const verify = await sandbox.json<{ ok: boolean; level: string; backups: { backup: string; ok: boolean }[] }>(['verify', '--all', '--deep', '--remote', 'offsite']);
    assert.equal(verify.code, 0, verify.stderr);
    assert.deepEqual(verify.value.backups.map((b) => [b.backup, b.ok]), [[full, true]]);
    const verifyJob = ((await daemon.request('GET', '/api/jobs')).body as JobView[]).find((j) => j.kind === 'verify')!;
    assert.equal(verifyJob.params.remote, 'offsite', 'the daemon ran it against the remote');
    // Damage on the remote is found there (and only there: the local copy stays verified).
    const prefix = `${sandbox.dir.split('/').pop()}/`;
    const pack = (await s3.list(`${prefix}packs/`))[0]!;
    await s3.flipByte(pack.key, pack.size - 10);
    const damaged = await sandbox.json<{ ok: boolean }>(['verify', full, '--deep', '--remote', 'offsite']);
    assert.equal(damaged.code, 1);
    assert.equal(damaged.value.ok, false);
    assert.equal((await sandbox.run(['verify', full, '--deep'])).code, 0, 'the local repository is intact');
    // The next copy sends the damaged chunks again; then the remote verifies.
    const repair = await sandbox.json<CopyReport[]>(['copy']);
    assert.equal(repair.code, 0, repair.stderr);
    assert.deepEqual(repair.value[0]!.copied.map((c) => c.backup), [full]);
    assert.ok(repair.value[0]!.copied[0]!.chunks_sent > 0);
    assert.equal((await sandbox.run(['verify', full, '--deep', '--remote', 'offsite'])).code, 0);

    const target = join(sandbox.dir, 'restored');
    const restored = await sandbox.run(['restore', full, '--from', 'offsite', '--target-dir', target, '--yes']);
    assert.equal(restored.code, 0, restored.stderr);
    const restoreJob = ((await daemon.request('GET', '/api/jobs')).body as JobView[]).find((j) => j.kind === 'restore')!;
    assert.equal(restoreJob.params.from, 'offsite');
    const original = join(sandbox.dir, 'data', 'a.txt');
    assert.deepEqual(await readFile(join(target, original)), await readFile(original));
    const unknown = await daemon.request('POST', `/api/backup/restore/${full}`, { from: 'elsewhere', target_dir: target, yes: true });
    assert.equal(unknown.status, 404);
  });

  test('a remote that cannot be reached: the copy after the backup fails, status counts what is missing and warns once the newest backup is a copy period late', async () => {
    const port = await closedPort();
    const { sandbox, daemon } = await setup(`http://127.0.0.1:${port}`, `${OFF}, copy: after_backup`, '    retry_for: 2s');
    const name = await backup(daemon, 'full');
    const [copy] = await copiesDone(daemon, 1);
    assert.equal(copy!.state, 'failed');
    const report = (copy!.result as CopyReport[])[0]!;
    assert.equal(report.ok, false);
    assert.match(report.error!, /offsite/);

    let { status, remote } = await remoteStatus(sandbox);
    assert.deepEqual([remote.backups, remote.missing, remote.last_copy_at], [0, 1, null]);
    assert.equal(remote.last_error, report.error);
    assert.ok(remote.last_attempt_at);
    assert.ok(!status.warnings.some((w) => w.includes('remote offsite')), 'a fresh backup is not late yet');
    const text = await sandbox.run(['status']);
    assert.match(text.stdout, /remote\s+offsite s3:\/\/\S+: 0 backup\(s\) there, 1 local backup\(s\) not yet; last copy never; last attempt FAILED/);

    // `stackback copy` through the daemon: the job fails, the CLI prints the reason and exits 1.
    const cli = await sandbox.run(['copy']);
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stdout, /^remote offsite: FAILED after 0 backup\(s\): remote offsite .*ECONNREFUSED/m);

    // The backup finished 25 hours ago (as the catalog says): more than the 24 h after_backup allows.
    const catalog = new Database(sandbox.catalogPath);
    const old = (hours: number) => new Date(Date.now() - hours * 3_600_000).toISOString();
    catalog.prepare('UPDATE backups SET started_at = ?, finished_at = ? WHERE name = ?').run(old(25.1), old(25), name);
    catalog.close();
    await new Promise((resolve) => setTimeout(resolve, 1100)); // the daemon caches its status for a second
    ({ status, remote } = await remoteStatus(sandbox));
    const warning = status.warnings.find((w) => w.includes('remote offsite'));
    assert.ok(warning, JSON.stringify(status.warnings));
    assert.match(warning, new RegExp(`newest backup ${name} finished 25 h ago and is not off-site yet \\(copies run after every backup, so it should be there within 24 h\\); the last copy there failed: .+; run \`stackback copy --remote offsite\``));
    assert.equal(status.healthy, false);
    const warned = await sandbox.run(['status']);
    assert.equal(warned.code, 1);
    assert.match(warned.stdout, /^WARNING\s+remote offsite: /m);

    // Copies off: still a warning after 24 h, since nothing is off-site; it says so (status read by the CLI itself, no daemon).
    await daemon.stop();
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('copy: after_backup', 'copy: "off"'));
    const offline = await sandbox.json<StatusDocument>(['status']);
    const off = offline.value.warnings.find((w) => w.includes('remote offsite'));
    assert.match(off ?? '', /not off-site: schedule\.copy is off, so nothing is copied there unless someone runs a copy; run `stackback copy --remote offsite`, or set schedule\.copy/);
    assert.equal(offline.value.remotes[0]!.missing, 1);
    // list --remote on a remote that cannot be reached: fails, naming the remote.
    const list = await sandbox.run(['list', '--remote', 'offsite']);
    assert.equal(list.code, 1);
    assert.match(list.stderr, /offsite/);
  });

  test('a cron schedule.copy runs copies on its own and shows in the schedules; its period is the lateness bound', async () => {
    const { sandbox, daemon } = await setup(s3.endpoint, `${OFF}, copy: "*/2 * * * * *"`);
    const status = (await sandbox.json<StatusDocument>(['status'])).value;
    const schedule = status.schedules.find((s) => s.name === 'copy');
    assert.equal(schedule?.expression, '*/2 * * * * *');
    assert.ok(schedule?.next);
    assert.equal(schedule?.period_ms, 2000);
    const name = await backup(daemon, 'full');
    const listed = await waitFor('the backup on the remote', async () => {
      const { value } = await sandbox.json<RemoteListed[]>(['list', '--remote', 'offsite']);
      return value.some((b) => b.name === name) ? value : undefined;
    });
    assert.equal(listed.length, 1);
    const copies = await copyJobs(daemon);
    assert.ok(copies.length >= 1 && copies.every((j) => j.origin === 'schedule'));
    const { remote, status: after } = await remoteStatus(sandbox);
    assert.equal(remote.missing, 0);
    assert.ok(!after.warnings.some((w) => w.includes('remote offsite')));
  });
});
