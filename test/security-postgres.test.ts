// Attacks and accidents around PostgreSQL (issue 14, items 7, 10, 12): a database setting
// that smuggles SQL into a restore, passwords and row data where they do not belong, and
// scratch databases that killed restores leave behind. Real cluster, real CLI, real tools.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import pg from 'pg';
import { loadConfig } from '../src/config/load.ts';
import { createLogger } from '../src/log.ts';
import { currentProcessIdentity } from '../src/process-identity.ts';
import { createSources } from '../src/sources/registry.ts';
import { controlSockets, controlYaml, startDaemon } from './support/daemon.ts';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { makeSandbox, postgresSourceYaml, PROJECT_ROOT, type Sandbox } from './support/stackback.ts';

const ATTACK = 'public;ALTER/**/ROLE/**/me/**/SUPERUSER;--';
const ROW_SECRET = 'row-secret-42';

describe('PostgreSQL: no privileges through a restore, no secrets in the open, no leftovers', () => {
  let cluster: PgCluster;
  let dir: string;
  /** bin_dir of wrappers that record each tool's environment (and its PGPASSFILE's mode), then run the real tool. */
  let wrappers: string;
  let records: string;
  const sandboxes: Sandbox[] = [];

  const sandbox = async (postgresYaml: string) => {
    const s = await makeSandbox(postgresYaml);
    sandboxes.push(s);
    return s;
  };

  /** Every role- and database-wide setting of `database`, one line each, as pg_db_role_setting stores them. */
  const settingsOf = (database: string) =>
    cluster.psql(
      'postgres',
      `SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
         SELECT coalesce(r.rolname, '(database)') || ' ' || s.setconfig::text AS line
           FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
          WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = '${database}')) t`,
    );
  const commentOf = (database: string) => cluster.psql('postgres', `SELECT coalesce(shobj_description(oid, 'pg_database'), '(none)') FROM pg_database WHERE datname = '${database}'`);
  const databaseNames = async (like: string) => (await cluster.psql('postgres', `SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE '${like}'`)).split(',').filter(Boolean);

  /** A source over TCP with a password (scram), through the recording wrappers. */
  const tcpSourceYaml = (passwordFile: string, databases: string[]) =>
    [
      '    - name: main',
      '      host: 127.0.0.1',
      `      port: ${cluster.port}`,
      '      user: postgres',
      `      password_file: ${passwordFile}`,
      `      databases: [${databases.join(', ')}]`,
      `      bin_dir: ${wrappers}`,
    ].join('\n');

  /** The wrappers' records since the last call: one per tool run that connected. */
  const takeRecords = async () => {
    const found: { tool: string; env: string; passfileMode: string | null }[] = [];
    for (const name of (await readdir(records)).filter((n) => n.endsWith('.env'))) {
      const base = join(records, name.slice(0, -'.env'.length));
      const mode = existsSync(`${base}.mode`) ? (await readFile(`${base}.mode`, 'utf8')).trim() : null;
      found.push({ tool: name.split('.')[0]!, env: await readFile(join(records, name), 'utf8'), passfileMode: mode });
    }
    await rm(records, { recursive: true, force: true });
    await mkdir(records);
    return found;
  };
  const passfileOf = (env: string) => /^PGPASSFILE=(.*)$/m.exec(env)?.[1];

  before(async () => {
    cluster = await startPgCluster();
    await cluster.psql('postgres', 'CREATE ROLE me LOGIN');
    dir = await mkdtemp(join(tmpdir(), 'stackback-security-'));
    wrappers = join(dir, 'bin');
    records = join(dir, 'records');
    await mkdir(wrappers);
    await mkdir(records);
    for (const tool of ['pg_dump', 'pg_dumpall', 'pg_restore', 'psql']) {
      const script = [
        '#!/bin/sh',
        // The version probe connects nowhere: only real runs are recorded.
        'if [ "$1" != "--version" ]; then',
        `  record="${records}/${tool}.$$"`,
        '  env > "$record.env"',
        '  if [ -n "$PGPASSFILE" ]; then stat -c %a "$PGPASSFILE" > "$record.mode"; fi',
        'fi',
        // Lets a test catch a restore between creating its scratch database and loading it.
        `if [ "${tool}" = pg_restore ] && [ -e "${dir}/slow" ]; then sleep 60; fi`,
        `exec ${join(cluster.binDir, tool)} "$@"`,
        '',
      ].join('\n');
      await writeFile(join(wrappers, tool), script, { mode: 0o755 });
    }
  });

  after(async () => {
    for (const s of sandboxes) await s.cleanup();
    await rm(dir, { recursive: true, force: true });
    await cluster?.stop();
  });

  test('a search_path that smuggles SQL does not make its role superuser on a swap restore, and comes back as it was', async () => {
    await cluster.psql('postgres', 'CREATE DATABASE app OWNER me');
    await cluster.psql('app', 'CREATE TABLE public.t (x int); INSERT INTO public.t VALUES (1);');
    // The attack as an ordinary login role can mount it: its own per-database setting.
    const me = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: 'me', database: 'app' });
    await me.connect();
    try {
      await me.query(`SELECT set_config('search_path', '${ATTACK}', false)`);
      await me.query('ALTER ROLE me IN DATABASE app SET search_path FROM CURRENT');
    } finally {
      await me.end();
    }
    const settings = await settingsOf('app');
    assert.equal(settings, `me {search_path=${ATTACK}}`, 'the setting is stored unquoted, as the attack needs');

    const s = await sandbox(postgresSourceYaml(cluster, { databases: ['app'], globals: false }));
    const backup = await s.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    const restore = await s.json<{ results: { safety_copy: string }[] }>(['restore', backup.stdout.trim(), '--database', 'app', '--yes']);
    assert.equal(restore.code, 0, restore.stderr);

    assert.equal(await cluster.psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'me'"), 'f', 'me is not superuser');
    assert.equal(await settingsOf('app'), settings, 'the setting is restored byte for byte');
    assert.equal(await cluster.psql('app', 'SELECT x FROM public.t'), '1');
    // The swapped-in database has its own (no) comment; the one set aside carries stackback's safety-copy marker.
    assert.equal(await commentOf('app'), '(none)');
    const safety = restore.value.results.find((r) => r.safety_copy)!.safety_copy;
    assert.match(await commentOf(safety), new RegExp(`^stackback:safety-copy \\{"db":"${safety}",`));
  });

  test('database settings come back byte for byte: quoted lists, scalars with units, custom ones, per role and database-wide', async () => {
    await cluster.psql(
      'postgres',
      [
        'CREATE DATABASE shop OWNER me;',
        `ALTER DATABASE shop SET search_path TO "$user", public, "My Schema";`,
        `ALTER DATABASE shop SET work_mem TO '65536kB';`,
        `ALTER DATABASE shop SET app.x TO 'it''s; a \\ value';`,
        `ALTER ROLE me IN DATABASE shop SET search_path TO 'Other', public;`,
        `ALTER ROLE me IN DATABASE shop SET statement_timeout TO '5min';`,
        `COMMENT ON DATABASE shop IS 'the shop''s data';`,
      ].join('\n'),
    );
    const settings = await settingsOf('shop');
    assert.equal(
      settings,
      [`(database) {"search_path=\\"$user\\", public, \\"My Schema\\"",work_mem=65536kB,"app.x=it's; a \\\\ value"}`, `me {"search_path=\\"Other\\", public",statement_timeout=5min}`].join('\n'),
    );
    const s = await sandbox(postgresSourceYaml(cluster, { databases: ['shop'], globals: false }));
    const backup = await s.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    // Swap: the live database's properties; --target-db: the ones recorded in the backup.
    const swap = await s.run(['restore', backup.stdout.trim(), '--database', 'shop', '--yes']);
    assert.equal(swap.code, 0, swap.stderr);
    assert.equal(await settingsOf('shop'), settings);
    assert.equal(await commentOf('shop'), "the shop's data");
    const copy = await s.run(['restore', backup.stdout.trim(), '--database', 'shop', '--target-db', 'shop_copy']);
    assert.equal(copy.code, 0, copy.stderr);
    assert.equal(await settingsOf('shop_copy'), settings);
    assert.equal(await commentOf('shop_copy'), "the shop's data", 'a --target-db restore loses its scratch marker at the end');
  });

  test('libpq tools get the password through a password file of their own run, not PGPASSWORD, and nothing else of our environment', async () => {
    await cluster.psql('postgres', 'CREATE DATABASE envcheck');
    await cluster.psql('envcheck', 'CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g');
    const passwordFile = join(dir, 'password');
    await writeFile(passwordFile, `${cluster.password}\n`, { mode: 0o600 });
    const s = await sandbox(tcpSourceYaml(passwordFile, ['envcheck']));
    await takeRecords();
    const canary = { STACKBACK_CANARY: 'canary-in-the-daemon-environment' };
    const backup = await s.run(['backup', '--full'], { env: canary });
    assert.equal(backup.code, 0, backup.stderr);
    const restore = await s.run(['restore', backup.stdout.trim(), '--target-db', 'envcheck_copy', '--with-globals', '--yes'], { env: canary });
    assert.equal(restore.code, 0, restore.stderr);

    const runs = await takeRecords();
    assert.deepEqual([...new Set(runs.map((r) => r.tool))].sort(), ['pg_dump', 'pg_dumpall', 'pg_restore', 'psql']);
    for (const run of runs) {
      assert.doesNotMatch(run.env, /^PGPASSWORD=/m, `${run.tool} got no PGPASSWORD`);
      assert.ok(!run.env.includes(cluster.password), `${run.tool}'s environment does not hold the password`);
      assert.ok(!run.env.includes(canary.STACKBACK_CANARY), `${run.tool} did not inherit the daemon's whole environment`);
      assert.equal(run.passfileMode, '600', `${run.tool} had a mode 0600 PGPASSFILE`);
      assert.ok(!existsSync(passfileOf(run.env)!), `the PGPASSFILE of ${run.tool} is gone afterwards`);
    }
    assert.equal(await cluster.psql('envcheck_copy', 'SELECT count(*) FROM t'), '100');
  });

  test('a restore that fails on row data names only the first error line; its password files are gone', async () => {
    // a_secrets loads before z_allowed, so its check (which looks z_allowed up) fails on the row itself.
    await cluster.psql('postgres', 'CREATE DATABASE leaky');
    await cluster.psql(
      'leaky',
      [
        'CREATE TABLE public.z_allowed (v text);',
        `INSERT INTO public.z_allowed VALUES ('${ROW_SECRET}');`,
        'CREATE FUNCTION public.allowed(v text) RETURNS boolean LANGUAGE sql STABLE AS $$ SELECT EXISTS (SELECT 1 FROM public.z_allowed a WHERE a.v = $1) $$;',
        'CREATE TABLE public.a_secrets (v text CHECK (public.allowed(v)));',
        `INSERT INTO public.a_secrets VALUES ('${ROW_SECRET}');`,
      ].join('\n'),
    );
    const passwordFile = join(dir, 'password');
    await writeFile(passwordFile, `${cluster.password}\n`, { mode: 0o600 });
    const s = await sandbox(tcpSourceYaml(passwordFile, ['leaky']));
    const backup = await s.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    await takeRecords();
    const restore = await s.run(['restore', backup.stdout.trim(), '--target-db', 'leaky_copy']);
    assert.equal(restore.code, 1);
    assert.match(restore.stderr, /pg_restore of database "leaky" into "leaky_copy" failed \(exit status 1\): .*violates check constraint/);
    assert.ok(!restore.stderr.includes(ROW_SECRET), `the row's data is not printed:\n${restore.stderr}`);
    const history = await s.json<{ kind: string; status: string; error: string }[]>(['history']);
    const failed = history.value.find((r) => r.kind === 'restore')!;
    assert.equal(failed.status, 'failed');
    assert.match(failed.error, /violates check constraint/);
    assert.ok(!JSON.stringify(history.value).includes(ROW_SECRET), 'the run history holds no row data');
    const status = await s.run(['status', '--json']);
    assert.ok(!status.stdout.includes(ROW_SECRET), 'status holds no row data');
    assert.deepEqual(await databaseNames('leaky_copy'), [], 'the half-made copy is dropped');

    const runs = await takeRecords();
    assert.ok(runs.some((r) => r.tool === 'pg_restore'));
    for (const run of runs) assert.ok(!existsSync(passfileOf(run.env)!), `the PGPASSFILE of ${run.tool} is gone after the failure`);
  });

  test('a password file that others may read is refused, naming the file and its mode; group-readable 0640 is fine', async () => {
    await cluster.psql('postgres', 'CREATE DATABASE modes');
    const open = join(dir, 'password-0644');
    await writeFile(open, `${cluster.password}\n`);
    await chmod(open, 0o644);
    const refused = await (await sandbox(tcpSourceYaml(open, ['modes']))).run(['backup', '--full']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`password_file ${open} of source main is accessible to others \\(mode 0644\\): refusing to use it`));
    assert.ok(!refused.stderr.includes(cluster.password));

    const group = join(dir, 'password-0640');
    await writeFile(group, `${cluster.password}\n`);
    await chmod(group, 0o640);
    const allowed = await (await sandbox(tcpSourceYaml(group, ['modes']))).run(['backup', '--full']);
    assert.equal(allowed.code, 0, allowed.stderr);
  });

  /** A comment as stackback marks its databases, for a process of our choosing. */
  const marker = (kind: string, db: string, process: { pid: number; boot_id?: string; start_time?: string }) => `stackback:${kind} ${JSON.stringify({ db, host: hostname(), ...process })}`;
  const deadProcess = async () => {
    const gone = execa('true');
    await gone;
    return { ...currentProcessIdentity(), pid: gone.pid! };
  };

  test('start-up clean-up drops only the scratch databases stackback marked whose process is gone', async () => {
    const dead = await deadProcess();
    const names = {
      dead: 'app_restoring_20200101_000000',
      unmarked: 'app_restoring_20200101_000001',
      live: 'app_restoring_20200101_000002',
      renamed: 'app_restoring_20200101_000003',
      drill: 'stackback_drill_app_20200101_000000',
    };
    await cluster.psql(
      'postgres',
      [
        ...Object.values(names).map((n) => `CREATE DATABASE ${n};`),
        `COMMENT ON DATABASE ${names.dead} IS '${marker('restore', names.dead, dead)}';`,
        // A restore still running (this very process) keeps its copy.
        `COMMENT ON DATABASE ${names.live} IS '${marker('restore', names.live, currentProcessIdentity())}';`,
        // Marked under another name: renamed since (e.g. taken in by hand), no longer ours.
        `COMMENT ON DATABASE ${names.renamed} IS '${marker('restore', 'app_restoring_19990101_000000', dead)}';`,
        `COMMENT ON DATABASE ${names.drill} IS '${marker('drill', names.drill, dead)}';`,
      ].join('\n'),
    );
    const s = await sandbox(postgresSourceYaml(cluster, { databases: ['app'], globals: false }));
    const source = createSources(loadConfig(s.configPath)).find((each) => each.kind === 'postgres')!;
    const dropped = await source.cleanLeftovers!(createLogger('silent'));
    assert.deepEqual(dropped.sort(), [names.dead, names.drill]);
    assert.deepEqual(await databaseNames('app_restoring_%'), [names.unmarked, names.live, names.renamed]);
    assert.deepEqual(await databaseNames('stackback_drill_%'), []);
    await cluster.psql('postgres', [names.unmarked, names.live, names.renamed].map((n) => `DROP DATABASE ${n};`).join('\n'));
  });

  test('a killed restore leaves a marked copy, which the next restore, or the next daemon start, drops', async () => {
    await cluster.psql('postgres', 'CREATE DATABASE killed');
    const s = await sandbox(postgresSourceYaml(cluster, { databases: ['killed'], globals: false, extra: `      bin_dir: ${wrappers}` }));
    const backup = await s.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    const name = backup.stdout.trim();
    const killedRestore = async (target: string) => {
      await writeFile(join(dir, 'slow'), '');
      // Its own process group, so that the kill takes the tools it started too, as a power loss would.
      const restore = execa(process.execPath, [join(PROJECT_ROOT, 'src/cli/main.ts'), 'restore', name, '--target-db', target, '--config', s.configPath], { detached: true, reject: false });
      try {
        const deadline = Date.now() + 30_000;
        while ((await commentOf(target)) === '' || (await commentOf(target)) === '(none)') {
          assert.ok(Date.now() < deadline, 'the restore created its copy');
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      } finally {
        process.kill(-restore.pid!, 'SIGKILL');
        await restore;
        await rm(join(dir, 'slow'), { force: true });
      }
      assert.match(await commentOf(target), new RegExp(`^stackback:restore \\{"db":"${target}",`));
    };

    await killedRestore('killed_daemon');
    await writeFile(s.configPath, `${controlYaml(controlSockets(s.dir))}\nschedule: { full: "off", incremental: "off", verify: "off", prune: "off", catch_up: false }\n${await readFile(s.configPath, 'utf8')}`);
    const daemon = await startDaemon(s.configPath, controlSockets(s.dir));
    try {
      const deadline = Date.now() + 30_000;
      while ((await databaseNames('killed_%')).includes('killed_daemon')) {
        assert.ok(Date.now() < deadline, `the daemon did not drop the leftover at start:\n${daemon.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    } finally {
      await daemon.stop();
    }

    await killedRestore('killed_copy');
    const next = await s.json<{ results: { leftovers_dropped?: string[] }[] }>(['restore', name, '--target-db', 'killed_again']);
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(next.value.results.find((r) => r.leftovers_dropped)?.leftovers_dropped, ['killed_copy']);
    assert.deepEqual(await databaseNames('killed_%'), ['killed_again']);
  });

  test('prune drops only safety copies stackback marked as its own', async () => {
    const marked = 'app_pre_restore_20200101_000000';
    const unmarked = 'app_pre_restore_20200101_000001';
    await cluster.psql(
      'postgres',
      [`CREATE DATABASE ${marked};`, `CREATE DATABASE ${unmarked};`, `COMMENT ON DATABASE ${marked} IS '${marker('safety-copy', marked, await deadProcess())}';`, `COMMENT ON DATABASE ${unmarked} IS 'made by hand';`].join('\n'),
    );
    const s = await sandbox(postgresSourceYaml(cluster, { databases: ['app'], globals: false }));
    const backup = await s.run(['backup', '--full']);
    assert.equal(backup.code, 0, backup.stderr);
    const prune = await s.json<{ safety_copies: { name: string; dropped: boolean; note?: string }[] }>(['prune']);
    assert.equal(prune.code, 0, prune.stderr);
    const decided = Object.fromEntries(prune.value.safety_copies.map((c) => [c.name, c]));
    assert.equal(decided[marked]?.dropped, true);
    assert.equal(decided[unmarked]?.dropped, false);
    assert.match(decided[unmarked]!.note!, /not marked as a stackback safety copy/);
    assert.deepEqual(await databaseNames('app_pre_restore_2020%'), [unmarked]);
  });
});
