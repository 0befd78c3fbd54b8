import { existsSync, promises as fs } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { StackbackError } from '../../errors.ts';
import type { ArtifactData } from '../../repository/artifact-reader.ts';
import { restoreStamp } from '../stamp.ts';
import { feedTool, pipeFolderProblem, runTool } from '../tool.ts';
import type { Finding } from '../source.ts';
import { findBinaries, type PgBinaries } from './binaries.ts';
import type { PgServer } from './connection.ts';
import type { FeedReport, SplitOptions } from './archive-blocks.ts';
import type { PgDumpMeta } from './dump.ts';
import { applyProperties, commentSql, createDatabaseSql, type DatabaseProperties, readDatabaseProperties, serverMajor } from './properties.ts';
import { startRestoreFeed } from './restore-feed.ts';
import { commentOf, scratchMarker } from './scratch.ts';
import { exec, ident } from './sql.ts';

export interface DatabaseRestoreOptions {
  /** Drills: pg_restore runs under nice/ionice, and the scratch database carries this comment (its proof of origin). */
  drillMarker?: string | undefined;
  /** Free space to keep on the server's data folder after the restore. */
  reserveBytes: number;
  /** Restore beside the original under this name instead of swapping it in. */
  targetDb?: string | undefined;
  /** Terminate sessions on the original so the swap can happen. */
  forceDisconnect: boolean;
  /** Roles the restore will create first (from --with-globals): not missing. */
  rolesToCreate: Set<string>;
  signal?: AbortSignal | undefined;
  now: Date;
  /** Where the named pipe into pg_restore is made. */
  workDir: string;
}

export interface DatabaseRestorePlan {
  database: string;
  mode: 'swap' | 'create' | 'target';
  /** Where pg_restore writes: a scratch name, or the --target-db name. */
  scratch: string;
  /** The final name of the database. */
  final: string;
  /** Where the replaced original goes (swap only). */
  safetyCopy: string | null;
  properties: DatabaseProperties;
  bins: PgBinaries;
  serverMajor: number;
  /** COPY sessions big tables load through: restore_copy_sessions, or fewer when the server has fewer connections free. */
  copySessions: number;
  findings: Finding[];
}

export interface DatabaseRestoreResult {
  database: string;
  restored_as: string;
  safety_copy: string | null;
  mode: DatabaseRestorePlan['mode'];
  seconds: number;
  /** What the feed did to the archive on its way into pg_restore (merged, split, or passed through and why). */
  feed: FeedReport | null;
}

const MAX_IDENT_BYTES = 63;

/** "<db><suffix>", cutting the database part so the whole fits PostgreSQL's 63-byte names. */
export function derivedName(database: string, suffix: string): string {
  let base = database;
  while (Buffer.byteLength(base + suffix) > MAX_IDENT_BYTES) base = base.slice(0, -1);
  return base + suffix;
}


async function databaseExists(client: pg.Client, name: string): Promise<boolean> {
  const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  return (rowCount ?? 0) > 0;
}

async function otherSessions(client: pg.Client, database: string): Promise<number> {
  const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [database]);
  return Number(rows[0]!.n);
}

async function missingRoles(client: pg.Client, roles: string[]): Promise<string[]> {
  const { rows } = await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname = ANY($1)', [roles]);
  const present = new Set(rows.map((r) => r.rolname));
  return roles.filter((r) => !present.has(r));
}

/**
 * Connections this restore may still open: what max_connections leaves (minus the slots
 * reserved for superusers, and from 16 on for pg_use_reserved_connections, unless we are a
 * superuser) and, for a login role with a connection limit, what that leaves. The planning
 * connection counts as used; the restore's own admin connection takes its place. Errs on
 * the low side: a role without pg_read_all_stats sees other sessions' backend_type as NULL,
 * so those count whatever they are; before 12, walsenders take ordinary slots, so every
 * session counts.
 */
async function freeConnections(client: pg.Client, major: number): Promise<number> {
  const counted = major >= 12 ? "usesysid IS NOT NULL AND (backend_type = 'client backend' OR backend_type IS NULL)" : 'true';
  const reserved = major >= 16 ? "current_setting('superuser_reserved_connections')::int + current_setting('reserved_connections')::int" : "current_setting('superuser_reserved_connections')::int";
  const { rows } = await client.query<{ free: number }>(
    `SELECT least(
       current_setting('max_connections')::int - (SELECT count(*) FROM pg_stat_activity WHERE ${counted})
         - CASE WHEN r.rolsuper THEN 0 ELSE ${reserved} END,
       CASE WHEN r.rolsuper OR r.rolconnlimit < 0 THEN 2147483647
            ELSE r.rolconnlimit - (SELECT count(*) FROM pg_stat_activity WHERE usename = session_user) END
     )::int AS free
     FROM pg_roles r WHERE r.rolname = session_user`,
  );
  return rows[0]!.free;
}

/**
 * ANALYZE in the restored database. The sessions that just loaded it may still hold their
 * connection slots for a moment after their client exited: at a tight connection limit the
 * first connect can get 53300 (too_many_connections), so it waits for them briefly.
 */
async function analyzeRestored(server: PgServer, database: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await server.with(database, (client) => client.query('ANALYZE'));
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== '53300' || attempt >= 20) throw error;
      await sleep(100);
    }
  }
}

/** Bytes free on the server's data folder, when this host can see it (a local server). */
async function dataDirectoryFree(client: pg.Client): Promise<{ path: string; free: number } | undefined> {
  try {
    const { rows } = await client.query<{ d: string }>("SELECT current_setting('data_directory') AS d");
    const dir = rows[0]!.d;
    const stats = await fs.statfs(dir);
    return { path: dir, free: stats.bavail * stats.bsize };
  } catch {
    return undefined;
  }
}

/**
 * Checks the ground before anything is written: client tools that can read the dump and
 * talk to the server, free target names, the roles and extensions the dump needs,
 * sessions on the database to replace, free disk. Every problem becomes an error finding
 * with what to do about it; the caller refuses to go on while any exists.
 */
export async function planDatabaseRestore(server: PgServer, meta: PgDumpMeta, options: DatabaseRestoreOptions): Promise<DatabaseRestorePlan> {
  return server.with(server.config.maintenanceDb, async (client) => {
    const findings: Finding[] = [];
    const ok = (message: string) => findings.push({ level: 'ok', message });
    const error = (message: string, hint: string) => findings.push({ level: 'error', message, hint });
    const database = meta.database;
    const major = await serverMajor(client);
    const needed = Math.max(major, meta.pg_dump_major);
    let bins: PgBinaries;
    try {
      bins = await findBinaries(needed, server.config.binDir, major >= meta.pg_dump_major ? 'restore into server' : 'read dumps made by pg_dump');
      ok(`pg_restore ${bins.version} (${bins.dir}) reads the pg_dump ${meta.pg_dump_major} dump and talks to the server (PostgreSQL ${major})`);
    } catch (failure) {
      const e = failure as StackbackError;
      error(e.message, e.hint ?? `install the PostgreSQL ${needed} client tools or set bin_dir`);
      bins = { dir: '', major: 0, version: 'missing', path: () => 'pg_restore' };
    }
    const stamp = restoreStamp(options.now);
    const originalExists = await databaseExists(client, database);
    const current = originalExists ? await readDatabaseProperties(client, database) : undefined;
    const properties = current ?? meta.properties;
    if (!properties) throw new StackbackError('REPO_CORRUPT', `the backup of database "${database}" records no database properties`);

    // Each COPY session is a connection (pg_restore's included), beside the restore's own.
    const wanted = options.drillMarker ? 1 : server.config.restoreCopySessions;
    const free = await freeConnections(client, major);
    const copySessions = Math.max(1, Math.min(wanted, free));
    if (free < 1) error(`no connection is free on the server for pg_restore (max_connections, or the connection limit of role "${server.config.user}")`, 'close other sessions, or raise max_connections or the role\'s CONNECTION LIMIT');
    else if (wanted > 1 && copySessions === wanted) ok(`big tables load through ${wanted} COPY sessions (restore_copy_sessions); ${free} connections are free`);
    else if (wanted > 1) ok(`only ${free} connection(s) free for this restore (max_connections, or the role's connection limit): big tables load through ${copySessions} COPY session(s) instead of ${wanted}`);

    let plan: DatabaseRestorePlan;
    if (options.targetDb !== undefined) {
      if (await databaseExists(client, options.targetDb)) error(`target database "${options.targetDb}" already exists`, 'choose another --target-db, or drop that database first');
      else ok(`target database name "${options.targetDb}" is free`);
      plan = { database, mode: 'target', scratch: options.targetDb, final: options.targetDb, safetyCopy: null, properties: meta.properties ?? properties, bins, serverMajor: major, copySessions, findings };
    } else if (originalExists) {
      const safetyCopy = derivedName(database, `_pre_restore_${stamp}`);
      if (await databaseExists(client, safetyCopy)) error(`the safety copy name "${safetyCopy}" is taken`, 'wait a second and try again, or drop that database');
      const sessions = await otherSessions(client, database);
      if (sessions > 0 && !options.forceDisconnect) error(`database "${database}" has ${sessions} other session(s); the swap needs it idle`, 'stop the application using it, or pass --force-disconnect');
      else ok(sessions > 0 ? `database "${database}" has ${sessions} session(s), which --force-disconnect will end` : `database "${database}" is idle: it can be swapped`);
      plan = { database, mode: 'swap', scratch: derivedName(database, `_restoring_${stamp}`), final: database, safetyCopy, properties, bins, serverMajor: major, copySessions, findings };
    } else {
      plan = { database, mode: 'create', scratch: derivedName(database, `_restoring_${stamp}`), final: database, safetyCopy: null, properties, bins, serverMajor: major, copySessions, findings };
    }
    if (plan.mode !== 'target' && (await databaseExists(client, plan.scratch))) error(`scratch database name "${plan.scratch}" is taken`, 'drop it (a restore that was killed may have left it)');

    const roles = [...new Set([plan.properties.owner, ...(plan.properties.grants ?? []).flatMap((g) => (g.grantee ? [g.grantee] : [])), ...(meta.roles ?? [])])];
    const missing = (await missingRoles(client, roles)).filter((r) => !options.rolesToCreate.has(r));
    if (missing.length > 0) error(`role(s) ${missing.map((r) => `"${r}"`).join(', ')} needed by database "${database}" do not exist on the server`, 'restore them with --with-globals, or CREATE ROLE them');
    else ok(`the ${roles.length} role(s) the dump needs exist${options.rolesToCreate.size ? ' or come with --with-globals' : ''}`);

    const { rows: available } = await client.query<{ name: string }>('SELECT name FROM pg_available_extensions');
    const availableNames = new Set(available.map((r) => r.name));
    const lacking = meta.extensions.map((e) => e.name).filter((name) => !availableNames.has(name));
    if (lacking.length > 0) error(`extension(s) ${lacking.map((e) => `"${e}"`).join(', ')} used by the dump are not available on the server`, 'install the package that provides them (e.g. postgresql-contrib, postgis) on the server');
    else ok(`the ${meta.extensions.length} extension(s) the dump uses are available`);

    const pipeProblem = await pipeFolderProblem(options.workDir);
    if (pipeProblem) error(`work_dir ${options.workDir} cannot hold the pipe that feeds pg_restore: ${pipeProblem}`, 'point work_dir at a writable local folder');
    else ok(`work_dir ${options.workDir} can hold the pipe that feeds pg_restore`);

    const disk = await dataDirectoryFree(client);
    const needBytes = Math.max(meta.database_size, 0) + options.reserveBytes;
    if (disk && disk.free < needBytes) error(`not enough free disk in ${disk.path}: ${disk.free} bytes free, about ${needBytes} needed (the database plus the configured reserve)`, 'free space on the server, or restore elsewhere');
    else if (disk) ok(`${disk.path} has ${disk.free} bytes free, about ${needBytes} needed`);
    else ok('the server\'s data folder is not on this host: its free space cannot be checked from here');
    return plan;
  });
}

/** pg_restore --dbname takes a conninfo string: quote the name so '=' or spaces stay literal. */
function dbnameConninfo(name: string): string {
  return `dbname='${name.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

async function dropDatabase(client: pg.Client, name: string, serverMajorVersion: number): Promise<void> {
  const force = serverMajorVersion >= 13 ? ' WITH (FORCE)' : '';
  await exec(client, `DROP DATABASE IF EXISTS ${ident(name)}${force}`);
}

/**
 * Restores one database dump: into a scratch database, ANALYZE, properties, then the swap
 * (original → safety copy, scratch → original, in one transaction). On any failure the
 * scratch database is dropped and the original is left as it was.
 */
export async function restoreDatabase(server: PgServer, plan: DatabaseRestorePlan, data: ArtifactData, options: DatabaseRestoreOptions): Promise<DatabaseRestoreResult> {
  const started = Date.now();
  // Drills must not load the server more than a plain pg_restore would: one session (see the plan), the feeder at the lowest priority.
  const sides = plan.copySessions - 1;
  const splitOptions: SplitOptions = { splitAfter: server.config.restoreCopySplitAfterBytes, serverMajor: plan.serverMajor };
  // The feeding thread starts up while the connection is made and the database created.
  const feed = await startRestoreFeed(data, options.workDir, {
    sessions: plan.copySessions,
    split: splitOptions,
    ...(options.drillMarker ? { feederNice: 19 } : {}),
  });
  let feeding = false;
  let admin: pg.Client | undefined;
  let created = false;
  try {
    admin = await server.connect(server.config.maintenanceDb);
    await exec(admin, createDatabaseSql(plan.scratch, plan.properties));
    created = true;
    // Until it is swapped in, the copy is stackback's own: a killed restore leaves it for the next clean-up.
    await exec(admin, commentSql(plan.scratch, options.drillMarker ?? scratchMarker('restore', plan.scratch)));
    const args = ['--no-password', '--exit-on-error', `--dbname=${dbnameConninfo(plan.scratch)}`];
    // A drill must not slow production down: lowest CPU and I/O priority for its pg_restore.
    const [file, argv] = options.drillMarker ? lowPriority(plan.bins.path('pg_restore'), args) : [plan.bins.path('pg_restore'), args];
    feeding = true;
    // Each side stream is a psql script (session settings, then COPY … FROM stdin with its share of a big table's rows).
    const sideTools = Array.from({ length: sides }, (_, index) => ({
      file: plan.bins.path('psql'),
      args: ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1', '-f', '-'],
      what: `COPY session ${index + 2} of the restore of database "${plan.database}" into "${plan.scratch}"`,
    }));
    const pgRestore = { file, args: argv, what: `pg_restore of database "${plan.database}" into "${plan.scratch}"` };
    const feedReport = (await feed.run([pgRestore, ...sideTools], {
      ...server.toolAccess(plan.scratch),
      signal: options.signal,
      errorCode: 'PG_RESTORE_FAILED',
    })) as FeedReport | undefined;
    // pg_restore brings no planner statistics (before PostgreSQL 18): without them the restored database is slow.
    await analyzeRestored(server, plan.scratch);
    if (!options.drillMarker) {
      await applyProperties(admin, plan.scratch, plan.properties);
      await swapIn(admin, plan, options);
    }
    return { database: plan.database, restored_as: plan.final, safety_copy: plan.safetyCopy, mode: plan.mode, seconds: (Date.now() - started) / 1000, feed: feedReport ?? null };
  } catch (error) {
    if (!feeding) await feed.cancel().catch(() => undefined);
    if (created) await dropDatabase(admin!, plan.scratch, plan.serverMajor).catch(() => undefined);
    throw error;
  } finally {
    await admin?.end().catch(() => undefined);
  }
}

const SWAP_WAIT_MS = 10_000;

/** The command line that runs `file` at the lowest CPU (nice) and, where available, I/O (ionice) priority. */
function lowPriority(file: string, args: string[]): [string, string[]] {
  const io = existsSync('/usr/bin/ionice') ? ['/usr/bin/ionice', '-c', '3'] : [];
  return ['nice', ['-n', '19', ...io, file, ...args]];
}

/** Drops a drill's scratch database; refuses one that does not carry this drill's own marker. */
export async function dropScratchDatabase(server: PgServer, name: string, marker: string): Promise<void> {
  await server.with(server.config.maintenanceDb, async (client) => {
    const comment = await commentOf(client, name);
    if (comment === undefined) return;
    if (comment !== marker) throw new StackbackError('PG_TARGET_EXISTS', `database "${name}" exists and was not made by a stackback drill: refusing to touch it`, 'choose another drill.postgres_database_prefix');
    await dropDatabase(client, name, await serverMajor(client));
  });
}

/**
 * Puts the restored copy in place, in one transaction: the original (swap) becomes the
 * safety copy and is marked as stackback's, the copy takes the final name and the
 * original's comment in place of its scratch marker. Never a moment where the live
 * database carries a scratch marker or a safety copy lacks one.
 */
async function swapIn(admin: pg.Client, plan: DatabaseRestorePlan, options: DatabaseRestoreOptions): Promise<void> {
  const deadline = Date.now() + SWAP_WAIT_MS;
  for (;;) {
    if (plan.mode === 'swap' && options.forceDisconnect) {
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [plan.database]);
    }
    try {
      await admin.query('BEGIN');
      if (plan.mode === 'swap') {
        await exec(admin, `ALTER DATABASE ${ident(plan.database)} RENAME TO ${ident(plan.safetyCopy!)}`);
        await exec(admin, commentSql(plan.safetyCopy!, scratchMarker('safety-copy', plan.safetyCopy!)));
      }
      if (plan.scratch !== plan.final) await exec(admin, `ALTER DATABASE ${ident(plan.scratch)} RENAME TO ${ident(plan.final)}`);
      await exec(admin, commentSql(plan.final, plan.properties.comment));
      await admin.query('COMMIT');
      return;
    } catch (error) {
      await admin.query('ROLLBACK').catch(() => undefined);
      // 55006 object_in_use: somebody connected in the meantime; wait briefly, then give up.
      if ((error as { code?: string }).code !== '55006' || Date.now() > deadline) {
        throw new StackbackError(
          'PG_TARGET_BUSY',
          `cannot swap the restored copy in for database "${plan.database}": ${(error as Error).message}`,
          'stop the sessions using it, or pass --force-disconnect',
        );
      }
      await sleep(500);
    }
  }
}

/**
 * Statements of a globals dump minus everything about roles and tablespaces that already
 * exist: their CREATE, and the ALTER ROLE / COMMENT ON ROLE lines that would reset their
 * attributes and passwords to the backup's (existing ones are kept as they are).
 */
export function filterGlobals(sql: string, existingRoles: Set<string>, existingTablespaces: Set<string>): { sql: string; skipped: string[] } {
  const skipped: string[] = [];
  const ident = (text: string) => (text.startsWith('"') ? text.slice(1, -1).replaceAll('""', '"') : text);
  const name = '("(?:[^"]|"")+"|[^\\s;]+)';
  const lines = sql.split('\n').filter((line) => {
    const role = new RegExp(`^CREATE ROLE ${name};$`).exec(line);
    if (role && existingRoles.has(ident(role[1]!))) {
      skipped.push(`role ${ident(role[1]!)}`);
      return false;
    }
    const roleChange = new RegExp(`^(?:ALTER ROLE|COMMENT ON ROLE) ${name}[ ;]`).exec(line);
    if (roleChange && existingRoles.has(ident(roleChange[1]!))) return false;
    const tablespace = new RegExp(`^CREATE TABLESPACE ${name} `).exec(line);
    if (tablespace && existingTablespaces.has(ident(tablespace[1]!))) {
      skipped.push(`tablespace ${ident(tablespace[1]!)}`);
      return false;
    }
    return true;
  });
  return { sql: lines.join('\n'), skipped };
}

/** Role names a globals dump creates. */
export function rolesInGlobals(sql: string): Set<string> {
  const roles = new Set<string>();
  for (const match of sql.matchAll(/^CREATE ROLE ("(?:[^"]|"")+"|[^\s;]+);$/gm)) {
    const name = match[1]!;
    roles.add(name.startsWith('"') ? name.slice(1, -1).replaceAll('""', '"') : name);
  }
  return roles;
}

/** Replays roles and tablespaces; ones that exist already are kept as they are, not an error. */
export async function restoreGlobals(server: PgServer, bins: PgBinaries, sql: string, signal?: AbortSignal): Promise<{ skipped: string[] }> {
  const maintenanceDb = server.config.maintenanceDb;
  const { roles, tablespaces } = await server.with(maintenanceDb, async (client) => ({
    roles: new Set((await client.query<{ n: string }>('SELECT rolname AS n FROM pg_roles')).rows.map((r) => r.n)),
    tablespaces: new Set((await client.query<{ n: string }>('SELECT spcname AS n FROM pg_tablespace')).rows.map((r) => r.n)),
  }));
  const filtered = filterGlobals(sql, roles, tablespaces);
  const run = runTool(bins.path('psql'), ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1', '-f', '-'], {
    ...server.toolAccess(maintenanceDb),
    signal,
    errorCode: 'PG_RESTORE_FAILED',
    what: 'restore of roles and tablespaces (globals)',
    stdin: 'pipe',
    stdout: 'ignore',
  });
  await feedTool([Buffer.from(filtered.sql)], run.stdin!, run.exited);
  return { skipped: filtered.skipped };
}
