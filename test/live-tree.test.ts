// A files backup of a tree that is being deleted while it is read, through the real CLI and
// through the real daemon: the run ends with warnings naming what vanished, the daemon lives
// on, and what was stored restores byte for byte.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { controlSockets, controlYaml, startDaemon } from './support/daemon.ts';
import { filesSourceYaml, makeSandbox, type Sandbox } from './support/stackback.ts';

const FILES = 3000;

interface Summary {
  backup: string;
  status: string;
  sources: { name: string; status: string; warnings?: string[] }[];
}

/**
 * A tree of a 4 MiB file then thousands of small ones in one folder. Once the first chunk is
 * in the repository the backup is reading, and a deleter removes the small files from the
 * last one backwards while the backup walks forwards: files listed but not yet reached vanish.
 */
async function backupWhileDeleting(sandbox: Sandbox, tree: string, backup: () => Promise<Summary>): Promise<{ summary: Summary; hashes: Map<string, string> }> {
  await mkdir(join(tree, 'many'), { recursive: true });
  await writeFile(join(tree, 'a-big'), randomBytes(4 * 1024 * 1024));
  const hashes = new Map<string, string>();
  for (let i = 0; i < FILES; i++) {
    const file = join(tree, 'many', `f${String(i).padStart(4, '0')}`);
    const data = randomBytes(16 * 1024);
    await writeFile(file, data);
    hashes.set(file, createHash('sha256').update(data).digest('hex'));
  }
  const running = backup();
  let finished = false;
  const done = () => void (finished = true);
  running.then(done, done);
  const deleter = (async () => {
    const chains = join(sandbox.repoPath, 'chains');
    const chunkStored = async () => existsSync(chains) && (await readdir(chains, { recursive: true, withFileTypes: true })).some((e) => e.isFile());
    while (!finished && !(await chunkStored())) await sleep(5);
    for (let i = FILES - 1; i >= 0 && !finished; i--) {
      await rm(join(tree, 'many', `f${String(i).padStart(4, '0')}`));
      if (i % 4 === 0) await sleep(1);
    }
  })();
  const summary = await running;
  await deleter;
  return { summary, hashes };
}

/** The restored tree holds exactly what was there when it was read: every file whole, as it was written. */
async function assertRestoresWhole(sandbox: Sandbox, backup: string, tree: string, hashes: Map<string, string>): Promise<void> {
  const target = join(sandbox.dir, 'restored');
  const restore = await sandbox.run(['restore', backup, '--target-dir', target]);
  assert.equal(restore.code, 0, restore.stderr);
  const restored = await readdir(join(target, tree.slice(1), 'many'));
  assert.ok(restored.length > 0 && restored.length < FILES, `${restored.length} of ${FILES} files stored`);
  for (const name of restored) {
    const original = join(tree, 'many', name);
    assert.equal(createHash('sha256').update(await readFile(join(target, original.slice(1)))).digest('hex'), hashes.get(original), name);
  }
}

function assertVanishedWarnings(summary: Summary): void {
  assert.equal(summary.status, 'ok', JSON.stringify(summary));
  const warnings = summary.sources.find((s) => s.name === 'app-files')?.warnings ?? [];
  assert.ok(warnings.some((w) => /\/many\/f\d{4}: vanished while the backup ran$/.test(w)), `no vanished file among the warnings: ${warnings.slice(0, 5).join('; ')}`);
}

describe('a tree deleted while it is backed up', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  async function sandboxWithTree(extraYaml = ''): Promise<{ sandbox: Sandbox; tree: string }> {
    const sandbox = await makeSandbox('', { filesYaml: filesSourceYaml(['TREE']), extraYaml });
    cleanups.push(() => sandbox.cleanup());
    const tree = join(sandbox.dir, 'tree');
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('TREE', tree));
    await mkdir(tree);
    return { sandbox, tree };
  }

  test('the CLI finishes the backup with a warning for each vanished file', async () => {
    const { sandbox, tree } = await sandboxWithTree();
    const { summary, hashes } = await backupWhileDeleting(sandbox, tree, async () => {
      const result = await sandbox.run(['backup', '--full', '--json']);
      assert.equal(result.code, 0, result.stderr);
      return JSON.parse(result.stdout) as Summary;
    });
    assertVanishedWarnings(summary);
    await assertRestoresWhole(sandbox, summary.backup, tree, hashes);
  });

  test('the daemon lives on, and its job ends ok with the warnings', async () => {
    const { sandbox, tree } = await sandboxWithTree();
    const sockets = controlSockets(sandbox.dir);
    const control = `${controlYaml(sockets)}\nschedule: { full: "off", incremental: "off", verify: "off", prune: "off", catch_up: false }`;
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('sources:', `${control}\nsources:`));
    const daemon = await startDaemon(sandbox.configPath, sockets);
    cleanups.push(() => daemon.stop());
    // The CLI hands the backup to the daemon and prints the job's result.
    const { summary, hashes } = await backupWhileDeleting(sandbox, tree, async () => {
      const result = await sandbox.run(['backup', '--full', '--json']);
      assert.equal(result.code, 0, `${result.stderr}\n${daemon.output()}`);
      return JSON.parse(result.stdout) as Summary;
    });
    assert.ok(daemon.output().includes('vanished while the backup ran'), 'the daemon ran the backup and logged the warnings');
    assertVanishedWarnings(summary);
    const status = await daemon.request('GET', '/api/backup/status');
    assert.equal(status.status, 200, 'the daemon still answers');
    await assertRestoresWhole(sandbox, summary.backup, tree, hashes);
  });
});
