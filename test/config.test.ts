// The config schema and loader: the example config is valid, and every mistake is named by its key.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { execa } from 'execa';
import { isTimeZone } from '../src/config/formats.ts';
import {
  type Config,
  ConfigInvalidError,
  loadConfig,
  type MetricsConfig,
  type NotifyConfig,
  parseConfig,
  type PostgresSourceConfig,
  type QdrantSourceConfig,
  type RemoteConfig,
  resolveConfigPath,
} from '../src/config/load.ts';
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
    assert.deepEqual([config.remotes, config.schedule.copy], [[], null]);
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
    assert.deepEqual([config.remotes, config.schedule.copy], [[], 'after_backup']);
  });

  test('the example\'s commented-out remotes block, uncommented, loads with its documented values', () => {
    const lines = readFileSync(join(PROJECT_ROOT, 'config/stackback.example.yaml'), 'utf8').split('\n');
    const start = lines.indexOf('# remotes:');
    assert.ok(start >= 0, 'the example has a "# remotes:" block');
    const end = lines.findIndex((line, i) => i > start && !line.startsWith('#'));
    const block = lines.slice(start, end).map((line) => line.replace(/^# ?/, '')).join('\n');
    const config = parseConfig('/etc/stackback/stackback.yaml', block);
    assert.deepEqual(config.remotes, [{
      name: 'offsite', type: 's3', endpoint: 'https://s3.eu-central-1.amazonaws.com', region: 'eu-central-1', bucket: 'acme-backups', prefix: 'db1/',
      forcePathStyle: false, credentialsFile: '/etc/stackback/s3.credentials', storageClass: null, uploadConcurrency: 4, bandwidthLimitBytes: null,
      objectLock: null, retention: null, retryForMs: 15 * 60_000, requestTimeoutMs: 2 * 60_000, packSizeBytes: 16 * MiB,
    } satisfies RemoteConfig]);
  });

  test('the example\'s commented-out notify and metrics blocks, uncommented, load with their documented values', () => {
    const lines = readFileSync(join(PROJECT_ROOT, 'config/stackback.example.yaml'), 'utf8').split('\n');
    const block = (first: string) => {
      const start = lines.indexOf(first);
      assert.ok(start >= 0, `the example has a "${first}" block`);
      const end = lines.findIndex((line, i) => i > start && !line.startsWith('#'));
      return lines.slice(start, end).map((line) => line.replace(/^# ?/, '')).join('\n');
    };
    const config = parseConfig('/etc/stackback/stackback.yaml', `${block('# notify:')}\n${block('# metrics:')}`);
    assert.deepEqual(config.notify, {
      on: ['failure', 'partial', 'stale', 'recovered'], repeatMs: 86_400_000, retryForMs: 10 * 60_000,
      healthchecks: [{ name: 'hc-backup', urlFile: '/etc/stackback/hc.url', jobs: ['backup'] }],
      webhooks: [{ name: 'ops-hook', urlFile: '/etc/stackback/hook.url', format: 'json', headersFile: null }],
      email: {
        name: 'email',
        smtp: { host: 'smtp.example.com', port: 587, starttls: true, tls: false, user: 'alerts', passwordFile: '/etc/stackback/smtp.pw' },
        from: 'backup@example.com', to: ['ops@example.com'],
      },
      command: null,
    } satisfies NotifyConfig);
    assert.deepEqual(config.metrics, { listen: { host: '127.0.0.1', port: 9464 }, allowNonLoopback: false, textfile: '/var/lib/prometheus/node-exporter/stackback.prom' } satisfies MetricsConfig);
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

  test('true/false keys take true or false only: "no" or "off" never count as true', () => {
    assert.deepEqual(problemsOf('schedule: { catch_up: "off" }\nsources: { postgres: [ { name: a, globals: no } ], files: [ { name: f, paths: [/x], one_file_system: "false" } ] }').sort(), [
      'schedule.catch_up: must be true or false, got "off"',
      'sources.files[0].one_file_system: must be true or false, got "false"',
      'sources.postgres[0].globals: must be true or false, got "no"',
    ]);
    const config = parseConfig('/x.yaml', 'schedule: { catch_up: false }\nsources: { postgres: [ { name: a, globals: false } ] }');
    assert.deepEqual([config.schedule.catchUp, (config.sources[0] as PostgresSourceConfig).globals], [false, false]);
  });

  test('a mapping where a list belongs is an error, not an empty list', () => {
    assert.deepEqual(problemsOf('remotes: { name: offsite, bucket: acme-backups }'), ['remotes: must be a list (each entry starts with "- "), got a mapping']);
    assert.deepEqual(problemsOf('sources: { postgres: { name: main } }'), ['sources.postgres: must be a list (each entry starts with "- "), got a mapping']);
    assert.deepEqual(problemsOf('remotes: [ offsite ]'), ['remotes[0]: must be a mapping of keys']);
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
    const remoteKeys = ['name', 'type', 'endpoint', 'region', 'bucket', 'prefix', 'force_path_style', 'credentials_file', 'storage_class', 'upload_concurrency', 'bandwidth_limit',
      'object_lock', 'object_lock.mode', 'object_lock.days', 'retention', 'retry_for', 'request_timeout', 'pack_size'];
    const retentionKeys = keys.filter((k) => k.startsWith('retention.')).map((k) => k.slice('retention.'.length));
    assert.ok(retentionKeys.includes('keep_last') && retentionKeys.includes('gc_grace'));
    for (const key of ['schedule.copy', 'remotes', ...remoteKeys.map((k) => `remotes[].${k}`), ...retentionKeys.map((k) => `remotes[].retention.${k}`)]) assert.ok(keys.includes(key), key);
    const notifyKeys = ['on', 'repeat', 'retry_for', 'healthchecks', 'healthchecks[].name', 'healthchecks[].url_file', 'healthchecks[].jobs', 'webhooks', 'webhooks[].name', 'webhooks[].url_file',
      'webhooks[].format', 'webhooks[].headers_file', 'email', 'email.name', 'email.smtp.host', 'email.smtp.port', 'email.smtp.starttls', 'email.smtp.tls', 'email.smtp.user',
      'email.smtp.password_file', 'email.from', 'email.to', 'command'];
    for (const key of [...notifyKeys.map((k) => `notify.${k}`), 'metrics.listen', 'metrics.allow_non_loopback', 'metrics.textfile']) assert.ok(keys.includes(key), key);
  });
});

const MiB = 1024 ** 2;

function remotesOf(yaml: string): RemoteConfig[] {
  return parseConfig('/etc/stackback/stackback.yaml', yaml).remotes;
}

describe('remotes (off-site copies)', () => {
  test('a remote with every key set', () => {
    const config = parseConfig('/etc/stackback/stackback.yaml', [
      'retention: { keep_last: 5, keep_daily: 10, keep_within: 1d }',
      'remotes:',
      '  - name: offsite',
      '    type: s3',
      '    endpoint: https://s3.eu-central-1.amazonaws.com/',
      '    region: eu-central-1',
      '    bucket: acme.backups-1',
      '    prefix: servers/db1/',
      '    force_path_style: true',
      '    credentials_file: s3.credentials',
      '    storage_class: STANDARD_IA',
      '    upload_concurrency: 16',
      '    bandwidth_limit: 20MiB',
      '    object_lock: { mode: COMPLIANCE, days: 30 }',
      '    retention: { keep_daily: 30, keep_monthly: 24, keep_within: 7d, gc_grace: null }',
      '    retry_for: 1h',
      '    request_timeout: 90s',
      '    pack_size: 64MiB',
    ].join('\n'));
    assert.deepEqual(config.remotes, [{
      name: 'offsite', type: 's3', endpoint: 'https://s3.eu-central-1.amazonaws.com', region: 'eu-central-1', bucket: 'acme.backups-1', prefix: 'servers/db1/',
      forcePathStyle: true, credentialsFile: '/etc/stackback/s3.credentials', storageClass: 'STANDARD_IA', uploadConcurrency: 16, bandwidthLimitBytes: 20 * MiB,
      objectLock: { mode: 'COMPLIANCE', days: 30 },
      retention: { ...config.retention, keepDaily: 30, keepMonthly: 24, keepWithinMs: 7 * 86_400_000 },
      retryForMs: 3_600_000, requestTimeoutMs: 90_000, packSizeBytes: 64 * MiB,
    } satisfies RemoteConfig]);
    // The untouched keys are the top-level values, not the schema's defaults.
    assert.deepEqual([config.remotes[0]!.retention!.keepLast, config.remotes[0]!.retention!.gcGraceMs], [5, 3_600_000]);
  });

  test('defaults: AWS endpoint for us-east-1, bucket root, the local retention policy, no limits', () => {
    assert.deepEqual(parseConfig('/etc/stackback/stackback.yaml', '').remotes, []);
    assert.deepEqual(remotesOf('remotes: [ { name: offsite, bucket: acme-backups } ]'), [{
      name: 'offsite', type: 's3', endpoint: null, region: 'us-east-1', bucket: 'acme-backups', prefix: '', forcePathStyle: false, credentialsFile: null, storageClass: null,
      uploadConcurrency: 4, bandwidthLimitBytes: null, objectLock: null, retention: null, retryForMs: 15 * 60_000, requestTimeoutMs: 2 * 60_000, packSizeBytes: 16 * MiB,
    } satisfies RemoteConfig]);
    const [remote] = remotesOf('remotes: [ { name: r, bucket: abc, object_lock: { days: 1 }, retention: {}, bandwidth_limit: 1048576, endpoint: "http://127.0.0.1:9000//" } ]');
    assert.deepEqual(remote!.objectLock, { mode: 'GOVERNANCE', days: 1 });
    assert.deepEqual(remote!.retention, parseConfig('/x.yaml', '').retention, 'an empty mapping is the local policy');
    assert.equal(remote!.bandwidthLimitBytes, MiB);
    assert.equal(remote!.endpoint, 'http://127.0.0.1:9000');
    assert.equal(remotesOf('remotes: [ { name: r, bucket: abc, bandwidth_limit: 2.5MB/s } ]')[0]!.bandwidthLimitBytes, 2_500_000);
  });

  test('each bad value is named by its key path', () => {
    const problems = problemsOf([
      'remotes:',
      '  - { name: ok, bucket: abc }',
      '  - name: "Off Site"',
      '    type: gcs',
      '    endpoint: s3.amazonaws.com',
      '    region: "eu central"',
      '    bucket: Acme_Backups',
      '    prefix: /db1',
      '    force_path_style: "yes"',
      '    credentials_file: ""',
      '    storage_class: standard_ia',
      '    upload_concurrency: 65',
      '    bandwidth_limit: fast',
      '    object_lock: { mode: LEGAL_HOLD, days: 0, years: 1 }',
      '    retention: { keep_last: -1, keep_within: forever, keep_everything: true }',
      '    retry_for: 30d',
      '    request_timeout: 500ms',
      '    pack_size: 1GiB',
      '    colour: blue',
    ].join('\n'));
    assert.deepEqual(problems.sort(), [
      'remotes[1].bandwidth_limit: must be a size per second such as 20MiB (or 20MiB/s), or null for no limit, got "fast"',
      'remotes[1].bucket: may hold only lower case letters, digits, "." and "-", got "Acme_Backups"',
      'remotes[1].colour: unknown key',
      'remotes[1].credentials_file: must be a file path or null',
      'remotes[1].endpoint: must be an http:// or https:// URL such as https://s3.eu-central-1.amazonaws.com, or null, got "s3.amazonaws.com"',
      'remotes[1].force_path_style: must be true or false, got "yes"',
      'remotes[1].name: must match [a-z0-9_-]+ (lower case letters, digits, _ and -), got "Off Site"',
      'remotes[1].object_lock.days: must be a whole number of days from 1 to 36500',
      'remotes[1].object_lock.mode: must be one of the possible values: ["GOVERNANCE","COMPLIANCE"], got "LEGAL_HOLD"',
      'remotes[1].object_lock.years: unknown key',
      'remotes[1].pack_size: must be from 1MiB to 512MiB, got "1GiB"',
      'remotes[1].prefix: must not start with "/", got "/db1"',
      'remotes[1].region: must be a region name such as us-east-1 (letters, digits, _ and -), got "eu central"',
      'remotes[1].request_timeout: must be at least 1s, got "500ms"',
      'remotes[1].retention.keep_everything: unknown key',
      'remotes[1].retention.keep_last: must be a whole number, 0 or more, or null, got -1',
      'remotes[1].retention.keep_within: must be a duration such as 90s, 30m, 6h or 2d, or null, got "forever"',
      'remotes[1].retry_for: must be at most 24d, got "30d"',
      'remotes[1].storage_class: must be a storage class such as STANDARD_IA (upper case letters and _), or null, got "standard_ia"',
      'remotes[1].type: must be one of the possible values: ["s3"], got "gcs"',
      'remotes[1].upload_concurrency: must be a whole number from 1 to 64, got 65',
    ]);
  });

  test('more bad values: missing name and bucket, bucket rules, endpoints with secrets, zero limits, lock without days', () => {
    assert.deepEqual(problemsOf('remotes: [ { type: s3 } ]').sort(), ['remotes[0].bucket: is required', 'remotes[0].name: is required']);
    const bucket = (name: string) => problemsOf(`remotes: [ { name: r, bucket: "${name}" } ]`);
    assert.deepEqual(bucket('ab'), ['remotes[0].bucket: must be 3 to 63 characters long, got "ab"']);
    assert.deepEqual(bucket('a'.repeat(64)), [`remotes[0].bucket: must be 3 to 63 characters long, got "${'a'.repeat(64)}"`]);
    assert.deepEqual(bucket('-abc'), ['remotes[0].bucket: must start and end with a letter or a digit, got "-abc"']);
    assert.deepEqual(bucket('abc.'), ['remotes[0].bucket: must start and end with a letter or a digit, got "abc."']);
    assert.deepEqual(bucket('a..b'), ['remotes[0].bucket: must not contain "..", got "a..b"']);
    assert.deepEqual(bucket('192.168.1.10'), ['remotes[0].bucket: must not look like an IP address, got "192.168.1.10"']);
    for (const name of ['abc', 'a-b.c-d', '3xy', 'a'.repeat(63)]) assert.equal(remotesOf(`remotes: [ { name: r, bucket: "${name}" } ]`)[0]!.bucket, name);
    const endpoint = (url: string) => problemsOf(`remotes: [ { name: r, bucket: abc, endpoint: "${url}" } ]`);
    assert.deepEqual(endpoint('https://AKIA:secret@s3.example.com'), ['remotes[0].endpoint: must not hold a user name or password (use credentials_file)'], 'the secret is not repeated');
    assert.deepEqual(problemsOf('sources: { qdrant: [ { name: q, url: "http://admin:secret@qdrant:6333" } ] }'), ['sources.qdrant[0].url: must not hold a user name or password (put the API key in api_key_file)']);
    assert.deepEqual(endpoint('https://s3.example.com/?x=1'), ['remotes[0].endpoint: must not have a query (?…) or a fragment (#…), got "https://s3.example.com/?x=1"']);
    assert.deepEqual(endpoint('ftp://s3.example.com'), ['remotes[0].endpoint: must be an http:// or https:// URL such as https://s3.eu-central-1.amazonaws.com, or null, got "ftp://s3.example.com"']);
    assert.deepEqual(
      problemsOf('remotes: [ { name: r, bucket: abc, bandwidth_limit: 0, upload_concurrency: 0, object_lock: { mode: GOVERNANCE }, pack_size: 512KiB, request_timeout: 0s } ]').sort(),
      [
        'remotes[0].bandwidth_limit: must be more than 0 (null: no limit)',
        'remotes[0].object_lock.days: is required: how many days each object stays locked',
        'remotes[0].pack_size: must be from 1MiB to 512MiB, got "512KiB"',
        'remotes[0].request_timeout: must be at least 1s, got "0s"',
        'remotes[0].upload_concurrency: must be a whole number from 1 to 64',
      ],
    );
    assert.deepEqual(problemsOf('remotes: [ { name: r, bucket: abc, object_lock: 30, retention: [ keep_last ] } ]').sort(), [
      'remotes[0].object_lock: must be a mapping of keys or null, got 30',
      'remotes[0].retention: must be a mapping of keys or null, got ["keep_last"]',
    ]);
    // The bounds themselves are accepted.
    const [edge] = remotesOf('remotes: [ { name: r, bucket: abc, upload_concurrency: 64, pack_size: 512MiB, request_timeout: 1s, retry_for: 0s, object_lock: { days: 36500 } } ]');
    assert.deepEqual([edge!.uploadConcurrency, edge!.packSizeBytes, edge!.requestTimeoutMs, edge!.retryForMs, edge!.objectLock?.days], [64, 512 * MiB, 1000, 0, 36500]);
    assert.equal(remotesOf('remotes: [ { name: r, bucket: abc, pack_size: 1MiB } ]')[0]!.packSizeBytes, MiB);
  });

  test('remote names are unique; two remotes never share or nest a prefix in the same bucket', () => {
    assert.deepEqual(problemsOf('remotes: [ { name: a, bucket: abc, prefix: x/ }, { name: b, bucket: abc, prefix: y/ }, { name: a, bucket: def } ]'), [
      'remotes[2].name: remote name "a" is already used by remotes[0]',
    ]);
    // A remote name may equal a source name: they are different namespaces.
    assert.equal(remotesOf('sources: { postgres: [ { name: main } ] }\nremotes: [ { name: main, bucket: abc } ]').length, 1);
    assert.deepEqual(problemsOf('remotes: [ { name: a, bucket: abc, prefix: db1 }, { name: b, bucket: abc, prefix: db1/ } ]'), [
      'remotes[1].prefix: the same bucket and prefix as remotes[0] ("db1/" and "db1/" in bucket abc): each remote needs a prefix of its own that does not contain another',
    ]);
    assert.deepEqual(problemsOf('remotes: [ { name: a, bucket: abc }, { name: b, bucket: abc, prefix: db1 } ]'), [
      'remotes[1].prefix: nests with the prefix of remotes[0] ("db1/" and "" in bucket abc): each remote needs a prefix of its own that does not contain another',
    ]);
    // AWS bucket names are global: another region is the same bucket.
    assert.deepEqual(problemsOf('remotes: [ { name: a, bucket: abc, prefix: db1 }, { name: b, bucket: abc, prefix: db1, region: eu-west-1 } ]'), [
      'remotes[1].prefix: the same bucket and prefix as remotes[0] ("db1/" and "db1/" in bucket abc): each remote needs a prefix of its own that does not contain another',
    ]);
    // Same prefix on another bucket or another endpoint: different places; db10/ does not nest with db1/.
    assert.equal(remotesOf([
      'remotes:',
      '  - { name: a, bucket: abc, prefix: db1 }',
      '  - { name: b, bucket: def, prefix: db1 }',
      '  - { name: c, bucket: abc, prefix: db1, endpoint: "http://127.0.0.1:9000" }',
      '  - { name: d, bucket: abc, prefix: db1, endpoint: "http://127.0.0.1:9001/" }',
      '  - { name: e, bucket: abc, prefix: db10 }',
    ].join('\n')).length, 5);
  });

  test('prefixes: normalized to end in one "/", anything that is not a plain relative path refused', () => {
    const prefix = (value: string) => remotesOf(`remotes: [ { name: r, bucket: abc, prefix: ${JSON.stringify(value)} } ]`)[0]!.prefix;
    const cases: [string, string][] = [['', ''], ['db1', 'db1/'], ['db1/', 'db1/'], ['a/b.c/d_e-f', 'a/b.c/d_e-f/'], ['Server.A/', 'Server.A/'], ['..a/b..', '..a/b../']];
    for (const [given, stored] of cases) assert.equal(prefix(given), stored, given);
    assert.equal(remotesOf('remotes: [ { name: r, bucket: abc, prefix: null } ]')[0]!.prefix, '');
    const refused: [string, string][] = [
      ['/db1', 'must not start with "/"'],
      ['/', 'must not start with "/"'],
      ['a//b', 'must not contain "//"'],
      ['db1//', 'must not contain "//"'],
      ['../db1', 'must not contain "." or ".." segments'],
      ['a/../b/', 'must not contain "." or ".." segments'],
      ['./a', 'must not contain "." or ".." segments'],
      ['a/.', 'must not contain "." or ".." segments'],
      ['..', 'must not contain "." or ".." segments'],
      ['db 1', 'may hold only letters, digits, ".", "_", "-" and "/"'],
      ['db1\\x', 'may hold only letters, digits, ".", "_", "-" and "/"'],
      ['dé', 'may hold only letters, digits, ".", "_", "-" and "/"'],
      ['a'.repeat(513), 'must be at most 512 characters'],
    ];
    for (const [given, why] of refused) {
      assert.deepEqual(problemsOf(`remotes: [ { name: r, bucket: abc, prefix: ${JSON.stringify(given)} } ]`), [`remotes[0].prefix: ${why}, got ${JSON.stringify(given)}`], given);
    }
    assert.deepEqual(problemsOf('remotes: [ { name: r, bucket: abc, prefix: 5 } ]'), ['remotes[0].prefix: must be a relative path such as db1/, or "", got 5']);
  });

  test('retention override: given keys replace the top-level values, the rest follow them', () => {
    const config = parseConfig('/etc/stackback/stackback.yaml', [
      'retention: { keep_last: 7, keep_monthly: 6, keep_within: 3d, gc_grace: 2h }',
      'remotes:',
      '  - { name: same, bucket: abc, prefix: a }',
      '  - { name: longer, bucket: abc, prefix: b, retention: { keep_monthly: 36, keep_yearly: 5, keep_within: 0s, keep_last: null } }',
    ].join('\n'));
    assert.equal(config.remotes[0]!.retention, null, 'null: the local policy (Config.retention)');
    assert.deepEqual(config.remotes[1]!.retention, { ...config.retention, keepMonthly: 36, keepYearly: 5, keepWithinMs: 0 });
    assert.deepEqual([config.retention.keepLast, config.retention.keepMonthly, config.retention.keepWithinMs, config.retention.gcGraceMs], [7, 6, 3 * 86_400_000, 2 * 3_600_000]);
  });

  test('schedule.copy: after_backup by default, a cron expression, or "off"; fine without remotes', () => {
    const copy = (value?: string) => parseConfig('/etc/stackback/stackback.yaml', value === undefined ? '' : `schedule: { copy: ${JSON.stringify(value)} }`).schedule.copy;
    assert.equal(copy(), 'after_backup');
    assert.equal(copy('after_backup'), 'after_backup');
    assert.equal(copy('off'), null);
    assert.equal(copy('15 * * * *'), '15 * * * *');
    assert.equal(copy('0 15 * * * *'), '0 15 * * * *');
    assert.equal(parseConfig('/x.yaml', 'schedule: { copy: off }').schedule.copy, null, 'unquoted off is the string "off" (YAML 1.2)');
    assert.match(problemsOf('schedule: { copy: "every hour" }')[0]!, /^schedule\.copy: must be a cron expression \(minute hour day month weekday, optional seconds first\) or "after_backup" or "off": .*, got "every hour"$/);
    assert.deepEqual(problemsOf('schedule: { copy: 5 }'), ['schedule.copy: must be a cron expression or "after_backup" or "off", got 5']);
  });
});

function notifyOf(yaml: string): NotifyConfig {
  return parseConfig('/etc/stackback/stackback.yaml', yaml).notify;
}

const metricsOf = (yaml: string): MetricsConfig => parseConfig('/etc/stackback/stackback.yaml', yaml).metrics;

describe('notify and metrics (alerts, Prometheus)', () => {
  const DEFAULT_NOTIFY: NotifyConfig = {
    on: ['failure', 'partial', 'stale', 'recovered'], repeatMs: 24 * 3_600_000, retryForMs: 10 * 60_000, healthchecks: [], webhooks: [], email: null, command: null,
  };

  test('defaults: the four incident events, a daily reminder, no channels, no TCP listener and no textfile', () => {
    const config: Config = parseConfig('/etc/stackback/stackback.yaml', '');
    assert.deepEqual(config.notify, DEFAULT_NOTIFY);
    assert.deepEqual(config.metrics, { listen: null, allowNonLoopback: false, textfile: null });
    // `notify:` / `metrics:` with every key commented out (null) and empty mappings are the defaults too.
    assert.deepEqual(notifyOf('notify:\nmetrics:'), DEFAULT_NOTIFY);
    assert.deepEqual(notifyOf('notify: {}\nmetrics: {}'), DEFAULT_NOTIFY);
    // Default names, jobs, format, port; *_file paths resolve against the config file.
    const notify = notifyOf([
      'notify:',
      '  healthchecks: [ { url_file: hc.url }, { url_file: /etc/hc2.url } ]',
      '  webhooks: [ { url_file: hooks/ops.url } ]',
      '  email: { smtp: { host: mail.example.com }, from: backup@example.com, to: [ops@example.com] }',
    ].join('\n'));
    assert.deepEqual(notify.healthchecks, [
      { name: 'healthchecks-1', urlFile: '/etc/stackback/hc.url', jobs: ['backup'] },
      { name: 'healthchecks-2', urlFile: '/etc/hc2.url', jobs: ['backup'] },
    ]);
    assert.deepEqual(notify.webhooks, [{ name: 'webhook-1', urlFile: '/etc/stackback/hooks/ops.url', format: 'json', headersFile: null }]);
    assert.deepEqual(notify.email, {
      name: 'email', smtp: { host: 'mail.example.com', port: 587, starttls: true, tls: false, user: null, passwordFile: null }, from: 'backup@example.com', to: ['ops@example.com'],
    });
    // Implicit TLS defaults to its own port; an explicit port always wins.
    assert.equal(notifyOf('notify: { email: { smtp: { host: h, tls: true, starttls: false }, from: a@example.com, to: [b@example.com] } }').email!.smtp.port, 465);
    assert.equal(notifyOf('notify: { email: { smtp: { host: h, starttls: false, port: 25 }, from: a@example.com, to: [b@example.com] } }').email!.smtp.port, 25);
  });

  test('a full valid config: every key set', () => {
    const config = parseConfig('/etc/stackback/stackback.yaml', [
      'notify:',
      '  on: [failure, partial, stale, recovered, success, start, failure]',
      '  repeat: 4h',
      '  retry_for: 30m',
      '  healthchecks:',
      '    - { name: hc-backup, url_file: /etc/stackback/hc-backup.url, jobs: [backup, copy, backup] }',
      '    - { name: hc-verify, url_file: hc-verify.url, jobs: [verify, prune] }',
      '  webhooks:',
      '    - { name: ntfy, url_file: /etc/stackback/ntfy.url, format: ntfy, headers_file: ntfy.headers }',
      '    - { name: slack, url_file: /etc/stackback/slack.url, format: slack }',
      '  email:',
      '    name: mail',
      '    smtp: { host: smtp.example.com, port: 465, starttls: false, tls: true, user: alerts@example.com, password_file: smtp.pw }',
      '    from: "stackback <backup@example.com>"',
      '    to: [ops@example.com, "On Call <oncall@example.org>"]',
      '  command: [/usr/local/bin/page-me, --severity, high]',
      'metrics:',
      '  listen: "[::1]:9464"',
      '  allow_non_loopback: false',
      '  textfile: /var/lib/node_exporter/textfile/stackback.prom',
    ].join('\n'));
    assert.deepEqual(config.notify, {
      on: ['failure', 'partial', 'stale', 'recovered', 'success', 'start'],
      repeatMs: 4 * 3_600_000,
      retryForMs: 30 * 60_000,
      healthchecks: [
        { name: 'hc-backup', urlFile: '/etc/stackback/hc-backup.url', jobs: ['backup', 'copy'] },
        { name: 'hc-verify', urlFile: '/etc/stackback/hc-verify.url', jobs: ['verify', 'prune'] },
      ],
      webhooks: [
        { name: 'ntfy', urlFile: '/etc/stackback/ntfy.url', format: 'ntfy', headersFile: '/etc/stackback/ntfy.headers' },
        { name: 'slack', urlFile: '/etc/stackback/slack.url', format: 'slack', headersFile: null },
      ],
      email: {
        name: 'mail',
        smtp: { host: 'smtp.example.com', port: 465, starttls: false, tls: true, user: 'alerts@example.com', passwordFile: '/etc/stackback/smtp.pw' },
        from: 'stackback <backup@example.com>',
        to: ['ops@example.com', 'On Call <oncall@example.org>'],
      },
      command: ['/usr/local/bin/page-me', '--severity', 'high'],
    } satisfies NotifyConfig);
    assert.deepEqual(config.metrics, { listen: { host: '::1', port: 9464 }, allowNonLoopback: false, textfile: '/var/lib/node_exporter/textfile/stackback.prom' } satisfies MetricsConfig);
    // "off" and 0s both mean: never remind; on: [] sends no events (healthchecks still get their pings).
    assert.equal(notifyOf('notify: { repeat: off }').repeatMs, 0);
    assert.equal(notifyOf('notify: { repeat: 0s, retry_for: 0s }').repeatMs, 0);
    assert.deepEqual(notifyOf('notify: { on: [] }').on, []);
    assert.deepEqual(metricsOf('metrics: { listen: "localhost:9100" }').listen, { host: 'localhost', port: 9100 });
  });

  test('each bad value is named by its key path', () => {
    const problems = problemsOf([
      'notify:',
      '  on: [failure, bogus, 3]',
      '  repeat: sometimes',
      '  retry_for: 30d',
      '  colour: red',
      '  healthchecks:',
      '    - { name: "HC 1", url_file: "", jobs: [backup, restore] }',
      '    - { jobs: [] }',
      '    - hc.url',
      '  webhooks:',
      '    - { url_file: /w, format: teams, headers_file: "", secret: x }',
      '  email:',
      '    name: "E-Mail"',
      '    smtp: { host: "", port: 70000, starttls: "yes", user: alerts, extra: 1 }',
      '    from: backup',
      '    to: [ops@example.com, "not an address", "a@b.c\\nBcc: x@y.z"]',
      '  command: "/usr/bin/notify --all"',
      'metrics:',
      '  listen: 9464',
      '  allow_non_loopback: "no"',
      '  textfile: metrics.prom',
    ].join('\n'));
    assert.deepEqual(problems.sort(), [
      'metrics.allow_non_loopback: must be true or false, got "no"',
      'metrics.listen: must be "host:port" such as 127.0.0.1:9464 or [::1]:9464, or null, got 9464',
      'metrics.textfile: must be an absolute path (ending in .prom) or null, got "metrics.prom"',
      'notify.colour: unknown key',
      'notify.command: must be null or a list [program, arg, …] of non-empty strings (no shell: a command line in one string is not split), got "/usr/bin/notify --all"',
      'notify.email.from: must be an email address such as backup@example.com or "stackback <backup@example.com>", got "backup"',
      'notify.email.name: must match [a-z0-9_-]+ (lower case letters, digits, _ and -), or null, got "E-Mail"',
      'notify.email.smtp.extra: unknown key',
      'notify.email.smtp.host: is required',
      'notify.email.smtp.port: must be a port number or null, got 70000',
      'notify.email.smtp.starttls: must be true or false, got "yes"',
      'notify.email.smtp.user: needs notify.email.smtp.password_file (passwords live only in files)',
      'notify.email.to: not an email address: "not an address", "a@b.c\\nBcc: x@y.z", got ["ops@example.com","not an address","a@b.c\\nBcc: x@y.z"]',
      'notify.healthchecks[0].jobs: unknown job kind "restore": must be a non-empty list of backup, verify, copy, prune, got ["backup","restore"]',
      'notify.healthchecks[0].name: must match [a-z0-9_-]+ (lower case letters, digits, _ and -), or null, got "HC 1"',
      'notify.healthchecks[0].url_file: is required',
      'notify.healthchecks[1].jobs: must be a non-empty list of backup, verify, copy, prune, got []',
      'notify.healthchecks[1].url_file: is required',
      'notify.healthchecks[2]: must be a mapping of keys',
      'notify.on: unknown event "bogus", 3: must be a list of failure, partial, stale, recovered, success, start, got ["failure","bogus",3]',
      'notify.repeat: must be a duration such as 4h or 1d, or "off", got "sometimes"',
      'notify.retry_for: must be at most 24d, got "30d"',
      'notify.webhooks[0].format: must be one of the possible values: ["json","ntfy","slack"], got "teams"',
      'notify.webhooks[0].headers_file: must be a file path or null',
      'notify.webhooks[0].secret: unknown key',
    ]);
  });

  test('more bad values: shapes, TLS modes, credentials, the command\'s program, the textfile', () => {
    assert.deepEqual(problemsOf('notify: { healthchecks: { url_file: /hc.url }, webhooks: { url_file: /w.url } }').sort(), [
      'notify.healthchecks: must be a list (each entry starts with "- "), got a mapping',
      'notify.webhooks: must be a list (each entry starts with "- "), got a mapping',
    ]);
    assert.deepEqual(problemsOf('notify: 5\nmetrics: [ "127.0.0.1:9464" ]').sort(), ['metrics: must be a mapping of keys, got ["127.0.0.1:9464"]', 'notify: must be a mapping of keys, got 5']);
    assert.deepEqual(problemsOf('notify: { email: { smtp: smtp.example.com, from: a@example.com, to: [b@example.com] } }'), ['notify.email.smtp: must be a mapping of keys, got "smtp.example.com"']);
    assert.deepEqual(problemsOf('notify: { email: [ ops@example.com ] }'), ['notify.email: must be a mapping of keys or null, got ["ops@example.com"]']);
    assert.deepEqual(problemsOf('notify: { email: {} }').sort(), ['notify.email.from: is required', 'notify.email.smtp.host: is required', 'notify.email.to: is required: a non-empty list of email addresses, got []']);
    const email = (smtp: string) => problemsOf(`notify: { email: { smtp: { host: h, ${smtp} }, from: a@example.com, to: [b@example.com] } }`);
    assert.deepEqual(email('tls: true'), [
      'notify.email.smtp.tls: cannot be true together with notify.email.smtp.starttls (true by default): tls is implicit TLS from the first byte (port 465), starttls upgrades a plain connection (port 587); set starttls: false',
    ]);
    assert.deepEqual(email('password_file: /etc/stackback/smtp.pw'), ['notify.email.smtp.password_file: needs notify.email.smtp.user']);
    assert.deepEqual(problemsOf('notify: { on: failure }'), ['notify.on: must be a list of failure, partial, stale, recovered, success, start, got "failure"']);
    assert.deepEqual(problemsOf('notify: { command: [notify-send, x] }'), ['notify.command: must start with the absolute path of the program, got ["notify-send","x"]']);
    assert.deepEqual(problemsOf('notify: { command: [] }'), ['notify.command: must be null or a list [program, arg, …] of non-empty strings (no shell: a command line in one string is not split), got []']);
    assert.deepEqual(problemsOf('notify: { repeat: 30d }'), ['notify.repeat: must be at most 24d, got "30d"']);
    assert.deepEqual(problemsOf('metrics: { textfile: /var/lib/node_exporter/stackback.txt }'), [
      'metrics.textfile: must end in .prom (node_exporter\'s textfile collector reads only *.prom files), got "/var/lib/node_exporter/stackback.txt"',
    ]);
    for (const listen of ['127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', '::1:9464', '[::1]', '[not-v6]:9464', 'http://127.0.0.1:9464', ':9464', '-host:9464']) {
      assert.deepEqual(problemsOf(`metrics: { listen: "${listen}" }`), [`metrics.listen: must be "host:port" such as 127.0.0.1:9464 or [::1]:9464, or null, got "${listen}"`], listen);
    }
  });

  test('channel names are unique across healthchecks, webhooks and email', () => {
    assert.deepEqual(problemsOf([
      'notify:',
      '  healthchecks: [ { name: ops, url_file: /a }, { url_file: /b } ]',
      '  webhooks: [ { name: ops, url_file: /c }, { name: healthchecks-2, url_file: /d }, { name: email, url_file: /e } ]',
      '  email: { smtp: { host: h }, from: a@example.com, to: [b@example.com] }',
    ].join('\n')), [
      'notify.webhooks[0].name: channel name "ops" is already used by notify.healthchecks[0]',
      'notify.webhooks[1].name: channel name "healthchecks-2" is already used by notify.healthchecks[1]',
      'notify.email.name: channel name "email" is already used by notify.webhooks[2]',
    ]);
    assert.deepEqual(problemsOf('notify: { webhooks: [ { url_file: /a }, { url_file: /b, name: webhook-1 } ] }'), ['notify.webhooks[1].name: channel name "webhook-1" is already used by notify.webhooks[0]']);
    // A channel may share its name with a source or a remote: different namespaces.
    assert.equal(notifyOf('sources: { postgres: [ { name: main } ] }\nnotify: { webhooks: [ { name: main, url_file: /a } ] }').webhooks[0]!.name, 'main');
  });

  test('metrics.listen stays on loopback unless metrics.allow_non_loopback says otherwise', () => {
    for (const [listen, host] of [['127.0.0.1:9464', '127.0.0.1'], ['127.8.9.10:9464', '127.8.9.10'], ['[::1]:9464', '::1'], ['[0:0:0:0:0:0:0:1]:9464', '0:0:0:0:0:0:0:1'],
      ['[::ffff:127.0.0.1]:9464', '::ffff:127.0.0.1'], ['localhost:9464', 'localhost'], ['LOCALHOST:9464', 'LOCALHOST']] as const) {
      assert.deepEqual(metricsOf(`metrics: { listen: "${listen}" }`).listen, { host, port: 9464 }, listen);
    }
    const refusal = (listen: string) =>
      `metrics.listen: "${listen}" is not a loopback address (127.0.0.0/8, ::1, localhost): the metrics would be readable, unauthenticated, by anyone who can reach it; set metrics.allow_non_loopback: true to mean it`;
    for (const listen of ['0.0.0.0:9464', '192.168.1.5:9464', '128.0.0.1:9464', '[::]:9464', '[::ffff:10.0.0.1]:9464', '[2001:db8::1]:9464', 'metrics.example.com:9464', 'localhost.example.com:9464']) {
      assert.deepEqual(problemsOf(`metrics: { listen: "${listen}" }`), [refusal(listen)], listen);
      assert.deepEqual(metricsOf(`metrics: { listen: "${listen}", allow_non_loopback: true }`).allowNonLoopback, true, listen);
    }
    assert.deepEqual(metricsOf('metrics: { listen: "0.0.0.0:9464", allow_non_loopback: true }').listen, { host: '0.0.0.0', port: 9464 });
    // Named beside any other problem of the file.
    assert.deepEqual(problemsOf('lock_timeout: soon\nmetrics: { listen: "0.0.0.0:9464" }').sort(), ['lock_timeout: must be a duration such as 90s, 30m, 6h or 2d, got "soon"', refusal('0.0.0.0:9464')]);
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
