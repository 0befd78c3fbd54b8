// Backups step aside for control requests (src/daemon/foreground.ts), without ever stopping.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ForegroundActivity } from '../src/daemon/foreground.ts';
import { BackupWriter } from '../src/repository/backup-writer.ts';
import { Repository } from '../src/repository/repository.ts';

describe('control requests go before backup work', () => {
  test('nothing to wait for while no request is in flight', () => {
    assert.equal(new ForegroundActivity().yieldTo(), undefined);
  });

  test('a waiter is released once every request in flight is answered, not before', async () => {
    const foreground = new ForegroundActivity();
    const first = foreground.enter();
    const second = foreground.enter();
    let released = false;
    const waiting = foreground.yieldTo()!.then(() => (released = true));
    first();
    first(); // answered twice (close after finish): counted once
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(released, false, 'one request is still in flight');
    second();
    await waiting;
    assert.equal(foreground.yieldTo(), undefined);
  });

  test('a request that never ends delays background work by a bounded time only', async () => {
    const foreground = new ForegroundActivity();
    foreground.enter();
    const started = Date.now();
    await foreground.yieldTo();
    const waited = Date.now() - started;
    assert.ok(waited >= 40 && waited < 1000, `waited ${waited} ms`);
    // After a wait that ran out, the work goes on without waiting for a while.
    assert.equal(foreground.yieldTo(), undefined);
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.notEqual(foreground.yieldTo(), undefined, 'and steps aside again later');
  });

  test('a backup writer reads no input while a request is in flight', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stackback-fg-'));
    try {
      const repo = await Repository.create(join(dir, 'repo'), { key: { keyFile: join(dir, 'repo.key'), passphraseFile: undefined }, encrypt: false });
      const foreground = new ForegroundActivity();
      const writer = new BackupWriter(repo, 'fg', { lookup: () => undefined }, { compressionLevel: 1, yieldToForeground: () => foreground.yieldTo() });
      let answered: (() => void) | undefined;
      const input = async function* () {
        yield Buffer.alloc(1000, 1);
        answered = foreground.enter(); // a request arrives while the backup runs
        setTimeout(() => answered!(), 30);
        yield Buffer.alloc(1000, 2);
      };
      const started = Date.now();
      const stored = await writer.storeArtifact(input()).finally(() => writer.close());
      assert.equal(stored.size, 2000);
      assert.ok(Date.now() - started >= 30, 'the second piece was taken only after the request was answered');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
