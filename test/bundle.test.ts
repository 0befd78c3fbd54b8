// The bundle that `npm ci` builds (dist/stackback.js and the modules beside it) is what
// operators and the systemd unit run: the other suites run the TypeScript sources, so this
// one takes the built CLI through a real backup and restore, including the modules it loads
// by file name (the restore's feeding thread and its archive block merger).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { createRichDatabase, snapshotDatabase } from './support/pg-fixture.ts';
import { BUILT_CLI, makeSandbox, postgresSourceYaml, type Sandbox } from './support/stackback.ts';

describe('the built CLI (dist/stackback.js)', () => {
  let cluster: PgCluster;
  let sandbox: Sandbox;

  before(async () => {
    assert.ok(existsSync(BUILT_CLI), `${BUILT_CLI} is missing: run npm run build (npm test does)`);
    cluster = await startPgCluster();
    await createRichDatabase(cluster, 'app');
    sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['app'] }), { cli: BUILT_CLI });
  });

  after(async () => {
    await sandbox?.cleanup();
    await cluster?.stop();
  });

  test('backs up, verifies and restores a database beside the original, identical to it', async () => {
    const backup = await sandbox.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    const name = backup.stdout.trim();
    const verify = await sandbox.run(['verify', name]);
    assert.equal(verify.code, 0, verify.stderr);
    const restore = await sandbox.run(['restore', name, '--target-db', 'app_copy', '--yes']);
    assert.equal(restore.code, 0, restore.stderr);
    assert.deepEqual(await snapshotDatabase(cluster, 'app_copy'), await snapshotDatabase(cluster, 'app'));
    assert.deepEqual(await readdir(join(sandbox.dir, 'tmp')), [], 'no pipe left in work_dir');
  });
});
