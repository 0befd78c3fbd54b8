// The daemon's last resort: a real daemon, into which a preloaded module injects the bug
// nobody caught (an exception thrown from a callback, a rejection left unhandled). The job
// that was running fails with it; the daemon stays up and keeps running jobs.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { followJob } from '../src/daemon/client.ts';
import type { JobView } from '../src/daemon/queue.ts';
import { controlSockets, controlYaml, type DaemonProcess, startDaemon } from './support/daemon.ts';
import { filesSourceYaml, makeSandbox, PROJECT_ROOT, type Sandbox } from './support/stackback.ts';
import { waitFor, writeIncompressibleFile } from './support/wait.ts';

describe("the daemon's last resort", () => {
  let sandbox: Sandbox;
  let daemon: DaemonProcess;

  before(async () => {
    sandbox = await makeSandbox('', { filesYaml: filesSourceYaml(['TREE']) });
    const tree = join(sandbox.dir, 'tree');
    await mkdir(tree);
    // Big enough (256 MiB, incompressible) that a backup of it is still running when the fault comes.
    await writeIncompressibleFile(join(tree, 'big.dat'), 256);
    const sockets = controlSockets(sandbox.dir);
    const config = (await readFile(sandbox.configPath, 'utf8')).replace('TREE', tree).replace('sources:', `${controlYaml(sockets)}\nschedule: { full: "off", incremental: "off", verify: "off", prune: "off", catch_up: false }\nsources:`);
    await writeFile(sandbox.configPath, config);
    daemon = await startDaemon(sandbox.configPath, sockets, { NODE_OPTIONS: `--import ${join(PROJECT_ROOT, 'test/support/inject-fault.ts')}` });
  });

  after(async () => {
    await daemon?.stop();
    await sandbox?.cleanup();
  });

  const alive = async () => assert.equal((await daemon.request('GET', '/api/backup/status')).status, 200, 'the daemon still answers');

  /** Starts a full backup, injects the fault once it is reading, and returns how the job ended. */
  async function faultDuringBackup(signal: NodeJS.Signals) {
    const { job } = (await daemon.request('POST', '/api/backup/create', { type: 'full' })).body as { job: JobView };
    await waitFor('the backup to be dumping', async () => ((await daemon.request('GET', `/api/jobs/${job.id}`)).body as JobView).progress?.phase === 'dumping');
    daemon.child.kill(signal);
    return followJob(daemon.socket, job.id, () => undefined);
  }

  test('outside any job, the fault is logged loudly and the daemon goes on', async () => {
    daemon.child.kill('SIGUSR2');
    await waitFor('the fault to be logged', () => daemon.output().includes('unexpected exception outside any job: injected fault'));
    await alive();
  });

  test('an uncaught exception fails the running job, and nothing of it is kept', async () => {
    const last = await faultDuringBackup('SIGUSR2');
    assert.equal(last.state, 'failed');
    assert.match(last.error?.message ?? '', /injected fault/);
    assert.deepEqual(await sandbox.manifests(), [], 'the failed backup wrote no manifest');
    await alive();
  });

  test('an unhandled rejection fails the running job too', async () => {
    const last = await faultDuringBackup('SIGWINCH');
    assert.equal(last.state, 'failed');
    assert.match(last.error?.message ?? '', /injected rejection/);
    await alive();
  });

  test('the queue goes on: the next backup runs and ends ok', async () => {
    const { job } = (await daemon.request('POST', '/api/backup/create', { type: 'full' })).body as { job: JobView };
    const last = await followJob(daemon.socket, job.id, () => undefined);
    assert.equal(last.state, 'ok', JSON.stringify(last.error));
    assert.equal((await sandbox.manifests()).length, 1);
  });
});
