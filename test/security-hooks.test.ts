// A hung pre_command/post_command must not stop the backups forever: hook_timeout bounds it,
// cancelling the job stops it, and nothing the hook started outlives it.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { execa } from 'execa';
import { followJob } from '../src/daemon/client.ts';
import type { JobView } from '../src/daemon/queue.ts';
import { controlSockets, controlYaml, startDaemon } from './support/daemon.ts';
import { makeSandbox, qdrantSourceYaml, type Sandbox } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';

/** Processes whose command line is exactly `sleep <seconds>`: each test sleeps for a length of its own. */
async function sleepers(seconds: string): Promise<number[]> {
  const result = await execa('pgrep', ['-x', '-f', `sleep ${seconds}`], { reject: false });
  return String(result.stdout).split('\n').filter(Boolean).map(Number);
}

// A hook that is not stopped would hang its test: fail it instead.
describe('pre_command and post_command hooks', { timeout: 30_000 }, () => {
  const sandboxes: Sandbox[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const sandbox of sandboxes) await sandbox.cleanup();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  /** A sandbox with one storage_dir source; `hooks` are its pre/post_command and hook_timeout lines (LOG: a file they may write). */
  async function hookSandbox(hooks: string[]): Promise<{ sandbox: Sandbox; log: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'stackback-hooks-'));
    dirs.push(dir);
    const storage = join(dir, 'storage');
    await mkdir(storage);
    await writeFile(join(storage, 'segment'), 'points\n');
    const log = join(dir, 'hooks.log');
    const sandbox = await makeSandbox('', {
      qdrantYaml: qdrantSourceYaml('http://127.0.0.1:6333', { name: 'qstore', extra: [`      mode: storage_dir`, `      storage_path: ${storage}`, ...hooks.map((h) => `      ${h.replaceAll('LOG', log)}`)].join('\n') }),
    });
    sandboxes.push(sandbox);
    return { sandbox, log };
  }

  test('a hung pre_command fails the backup after hook_timeout, naming the hook and the timeout; post_command still runs; no process of the hook survives', async () => {
    const { sandbox, log } = await hookSandbox(['pre_command: "sleep 1017.25 & sleep 1017.25"', 'post_command: "echo post >> LOG"', 'hook_timeout: 1s']);
    const started = Date.now();
    const backup = await sandbox.run(['backup', '--full']);
    assert.ok(Date.now() - started < 15_000, `the backup took ${Date.now() - started} ms`);
    assert.notEqual(backup.code, 0);
    assert.match(backup.stderr, /pre_command `sleep 1017\.25 & sleep 1017\.25` did not finish within 1 s \(hook_timeout\)/);
    assert.equal(await readFile(log, 'utf8'), 'post\n', 'post_command ran after the failed pre_command');
    assert.deepEqual(await waitFor('the hook processes to be gone', async () => ((await sleepers('1017.25')).length === 0 ? [] : undefined), 10_000), []);
    assert.deepEqual(await sandbox.manifests(), []);
  });

  test('a hung post_command is bounded by hook_timeout too', async () => {
    const { sandbox } = await hookSandbox(['post_command: "sleep 1019.5"', 'hook_timeout: 1s']);
    const started = Date.now();
    const backup = await sandbox.run(['backup', '--full']);
    assert.ok(Date.now() - started < 15_000, `the backup took ${Date.now() - started} ms`);
    assert.notEqual(backup.code, 0);
    assert.match(backup.stderr, /post_command `sleep 1019\.5` did not finish within 1 s \(hook_timeout\)/);
    assert.deepEqual(await waitFor('the hook processes to be gone', async () => ((await sleepers('1019.5')).length === 0 ? [] : undefined), 10_000), []);
  });

  test('cancelling a daemon job stops its hung pre_command at once; post_command runs; the queue goes on', async () => {
    const { sandbox, log } = await hookSandbox(['pre_command: "sleep 1018.75 & sleep 1018.75"', 'post_command: "echo post >> LOG"']);
    const sockets = controlSockets(sandbox.dir);
    await writeFile(sandbox.configPath, `${controlYaml(sockets)}\nschedule: { full: "off", incremental: "off", verify: "off", prune: "off", catch_up: false }\n${await readFile(sandbox.configPath, 'utf8')}`);
    const daemon = await startDaemon(sandbox.configPath, sockets);
    try {
      const submitted = (await daemon.request('POST', '/api/backup/create', { type: 'full' })).body as { job: JobView };
      const next = (await daemon.request('GET', '/api/backup/verify/all')).body as { job: JobView };
      await waitFor('the hook to run', async () => ((await sleepers('1018.75')).length === 2 ? true : undefined));
      const cancelledAt = Date.now();
      assert.equal((await daemon.request('POST', `/api/jobs/${submitted.job.id}/cancel`)).status, 200);
      const last = await followJob(daemon.socket, submitted.job.id, () => undefined);
      assert.equal(last.state, 'cancelled');
      assert.ok(Date.now() - cancelledAt < 5000, `the job ended ${Date.now() - cancelledAt} ms after the cancel`);
      assert.match(last.error?.message ?? '', /pre_command `sleep 1018\.75 & sleep 1018\.75` was stopped: the job was cancelled/);
      assert.deepEqual(await waitFor('the hook processes to be gone', async () => ((await sleepers('1018.75')).length === 0 ? [] : undefined), 10_000), []);
      assert.match(await readFile(log, 'utf8'), /^post\n/, 'post_command ran after the cancel');
      // The hung hook no longer holds the queue: the job waiting behind it runs.
      assert.equal((await followJob(daemon.socket, next.job.id, () => undefined)).state, 'ok');
    } finally {
      await daemon.stop();
    }
  });
});
