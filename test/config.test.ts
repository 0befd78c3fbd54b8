// The config schema and loader: the example config is valid, and every mistake is named by its key.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { execa } from 'execa';
import { isTimeZone } from '../src/config/formats.ts';
import { ConfigInvalidError, loadConfig, parseConfig, type PostgresSourceConfig, type QdrantSourceConfig, resolveConfigPath } from '../src/config/load.ts';
import { PROJECT_ROOT } from './support/stackback.ts';

function problemsOf(yaml: string): string[] {
  try {
    parseConfig('/etc/stackback/test.yaml', yaml);
  } catch (error) {
    if (error instanceof ConfigInvalidError) return error.problems;
    throw error;
  }
  assert.fail('the config was accepted');
}

describe('config', () => {
  test('the bundled development config (npm start) loads and keeps everything under ./var', () => {
    const config = loadConfig(join(PROJECT_ROOT, 'config/stackback.dev.yaml'));
    for (const p of [config.repository.path, config.repository.keyFile, config.catalog.path, config.workDir, config.control.socket, config.control.adminSocket]) assert.ok(p.startsWith(join(PROJECT_ROOT, 'var/')), p);
  });

  test('the bundled example config loads, with its documented values', () => {
    const config = loadConfig(join(PROJECT_ROOT, 'config/stackback.example.yaml'));
    assert.equal(config.repository.path, '/var/lib/stackback/repo');
    assert.deepEqual([config.repository.encryption, config.repository.keyFile, config.repository.passphraseFile], ['aes-256-gcm', '/etc/stackback/repo.key', null]);
    assert.equal(config.lockTimeoutMs, 10 * 60_000);
    assert.deepEqual(config.sources.map((s) => [s.kind, s.name]), [['postgres', 'main'], ['qdrant', 'vectors']]);
    const main = config.sources[0] as PostgresSourceConfig;
    assert.deepEqual([main.name, main.host, main.port, main.databases, main.globals], ['main', '/var/run/postgresql', 5432, ['app'], true]);
    assert.equal(main.exactCountMaxBytes, 128 * 1024 * 1024);
    assert.deepEqual([main.restoreCopySessions, main.restoreCopySplitAfterBytes], [2, 64 * 1024 * 1024]);
    const vectors = config.sources[1] as QdrantSourceConfig;
    assert.deepEqual([vectors.mode, vectors.url, vectors.apiKeyFile, vectors.collections, vectors.timeoutMs, vectors.keepServerSnapshots], ['api', 'http://127.0.0.1:6333', null, 'all', 30 * 60_000, false]);
  });

  test('defaults fill what a config leaves out; relative paths resolve against the config file', () => {
    const config = parseConfig('/etc/stackback/stackback.yaml', 'repository: { path: ./repo }\nsources: { postgres: [ { name: db1 } ] }\n');
    assert.equal(config.repository.path, '/etc/stackback/repo');
    assert.equal(config.catalog.path, '/var/lib/stackback/catalog.db');
    assert.equal((config.sources[0] as PostgresSourceConfig).databases, 'all');
    assert.equal((config.sources[0] as PostgresSourceConfig).passwordFile, null);
  });

  test('every problem is reported at once, each with its key path and the value', () => {
    const problems = problemsOf(
      ['repository: { path: /r, compression_level: 40 }', 'lock_timeout: soon', 'log: { level: loud }', 'extra_key: 1', 'sources:', '  postgres:',
        '    - { name: main, port: "abc" }', '    - { name: "Bad Name", databases: "some" }', '    - { name: main, exact_count_max_size: lots, restore_copy_sessions: two }'].join('\n'),
    );
    assert.deepEqual(problems.sort(), [
      'extra_key: unknown key',
      'lock_timeout: must be a duration such as 90s, 30m, 6h or 2d, got "soon"',
      'log.level: must be one of the possible values: ["fatal","error","warn","info","debug","trace","silent"], got "loud"',
      'repository.compression_level: must be a zstd level from 1 to 19, got 40',
      'sources.postgres[0].port: must be a port number, got "abc"',
      'sources.postgres[1].databases: must be "all" or a non-empty list of names, got "some"',
      'sources.postgres[1].name: must match [a-z0-9_-]+ (lower case letters, digits, _ and -), got "Bad Name"',
      'sources.postgres[2].exact_count_max_size: must be a size such as 512MiB, 2GB or a number of bytes, got "lots"',
      'sources.postgres[2].restore_copy_sessions: must be a whole number from 1 to 16, got "two"',
    ]);
  });

  test('qdrant sources: the url, the mode and what storage_dir needs are checked', () => {
    assert.deepEqual(
      problemsOf('sources: { qdrant: [ { name: q1, url: "localhost:6333" }, { name: q2, mode: storage_dir }, { name: q3, mode: tarball, timeout: 5 parsecs } ] }').sort(),
      [
        'sources.qdrant[0].url: must be an http:// or https:// URL, got "localhost:6333"',
        'sources.qdrant[1].storage_path: is required with mode storage_dir',
        'sources.qdrant[2].mode: must be one of the possible values: ["api","storage_dir"], got "tarball"',
        'sources.qdrant[2].timeout: must be a duration such as 90s, 30m, 6h or 2d, got "5 parsecs"',
      ],
    );
    assert.deepEqual(problemsOf('sources: { postgres: [ { name: same } ], qdrant: [ { name: same } ] }'), ['sources.qdrant[0].name: source name "same" is already used by sources.postgres[0]']);
  });

  test('timeouts longer than a timer can hold (24d) are refused: they would fire at once', () => {
    assert.deepEqual(
      problemsOf('stall_timeout: 30d\nsources: { qdrant: [ { name: q1, timeout: 25d, mode: storage_dir, storage_path: /q, hook_timeout: 100d } ] }').sort(),
      ['sources.qdrant[0].hook_timeout: must be at most 24d, got "100d"', 'sources.qdrant[0].timeout: must be at most 24d, got "25d"', 'stall_timeout: must be at most 24d, got "30d"'],
    );
    assert.equal(parseConfig('/etc/stackback/stackback.yaml', 'stall_timeout: 24d\nretention: { keep_within: 400d }\n').stallTimeoutMs, 24 * 86_400_000);
  });

  test('duplicate source names and missing names are named', () => {
    assert.deepEqual(problemsOf('sources: { postgres: [ { name: a }, { name: a } ] }'), ['sources.postgres[1].name: source name "a" is already used by sources.postgres[0]']);
    assert.deepEqual(problemsOf('sources: { postgres: [ { port: 5432 } ] }'), ['sources.postgres[0].name: is required']);
  });

  test('YAML syntax errors are reported as such', () => {
    assert.match(problemsOf('repository: { path: /x\nsources: [')[0]!, /^YAML syntax:/);
  });

  test('the config path comes from --config, else $STACKBACK_CONFIG, else /etc/stackback/stackback.yaml', () => {
    assert.equal(resolveConfigPath('/a.yaml', { STACKBACK_CONFIG: '/b.yaml' }), '/a.yaml');
    assert.equal(resolveConfigPath(undefined, { STACKBACK_CONFIG: '/b.yaml' }), '/b.yaml');
    assert.equal(resolveConfigPath(undefined, {}, '/nowhere'), '/etc/stackback/stackback.yaml');
    // In a stackback checkout on a machine without /etc/stackback: the bundled dev config.
    if (!existsSync('/etc/stackback/stackback.yaml')) assert.equal(resolveConfigPath(undefined, {}, PROJECT_ROOT), join(PROJECT_ROOT, 'config/stackback.dev.yaml'));
  });

  test('stackback config check accepts the example and prints what it found', async () => {
    const result = await execa(process.execPath, ['src/cli/main.ts', 'config', 'check', '--config', 'config/stackback.example.yaml'], { cwd: PROJECT_ROOT, reject: false });
    assert.equal(result.exitCode, 0, String(result.stderr));
    assert.match(String(result.stdout), /stackback\.example\.yaml: OK/);
    assert.match(String(result.stdout), /source +postgres source main \(postgres@\/var\/run\/postgresql:5432\)/);
  });

  test('config schema documents every key from the schema itself', async () => {
    const result = await execa(process.execPath, ['src/cli/main.ts', 'config', 'schema', '--json'], { cwd: PROJECT_ROOT });
    const keys = (JSON.parse(String(result.stdout)) as { key: string }[]).map((r) => r.key);
    for (const key of ['repository.path', 'catalog.path', 'work_dir', 'log.level', 'sources.postgres', 'sources.postgres[].password_file', 'sources.postgres[].bin_dir']) {
      assert.ok(keys.includes(key), key);
    }
  });
});

describe('time zones', () => {
  test('UTC, canonical IANA names and their aliases pass; unknown names fail', () => {
    for (const zone of ['UTC', 'Europe/Berlin', 'America/Argentina/Buenos_Aires', 'Etc/UTC', 'US/Eastern', 'Asia/Calcutta']) assert.equal(isTimeZone(zone), true, zone);
    for (const zone of ['Mars/Olympus', 'utc+2', '', 'Europe/Berlinn']) assert.equal(isTimeZone(zone), false, zone);
  });
});

describe('runtime', () => {
  // The machine's own Node (20 here) is past end of life: the built CLI must refuse it clearly.
  const oldNode = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => existsSync(p));
  const built = join(PROJECT_ROOT, 'dist/stackback.js');

  test('the CLI refuses a Node older than 22.15 with a clear message', { skip: !oldNode || !existsSync(built) ? 'no system Node binary or no dist/ build to try it with' : false }, async () => {
    const version = (await execa(oldNode!, ['--version'])).stdout.trim();
    const [major, minor] = version.slice(1).split('.').map(Number);
    if (major! > 22 || (major === 22 && minor! >= 15)) return assert.ok(true, `system node ${version} is new enough; nothing to refuse`);
    const result = await execa(oldNode!, [built, 'list'], { reject: false });
    assert.equal(result.exitCode, 2);
    assert.match(String(result.stderr), new RegExp(`Node\\.js ${version.slice(1).replaceAll('.', '\\.')} is too old; stackback needs Node\\.js >= 22\\.15`));
  });
});
