import { promises as fs } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { StackbackError } from '../../errors.ts';
import { feedTool, runTool } from '../tool.ts';
import { findBinaries, type PgBinaries } from './binaries.ts';
import { type PgServer, quoteIdent } from './connection.ts';
import type { PgDumpMeta } from './dump.ts';
import { applyPropertiesSql, createDatabaseSql, type DatabaseProperties, readDatabaseProperties, serverMajor } from './properties.ts';

export interface DatabaseRestoreOptions {
  /** Restore beside the original under this name instead of swapping it in. */
  targetDb?: string | undefined;
  /** Terminate sessions on the original so the swap can happen. */
  forceDisconnect: boolean;
  /** Roles the restore will create first (from --with-globals): not missing. */
  rolesToCreate: Set<string>;
  signal?: AbortSignal | undefined;
  now: Date;
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
}

export interface DatabaseRestoreResult {
  database: string;
  restored_as: string;
  safety_copy: string | null;
  mode: DatabaseRestorePlan['mode'];
  seconds: number;
}

const MAX_IDENT_BYTES = 63;

/** "<db><suffix>", cutting the database part so the whole fits PostgreSQL's 63-byte names. */
function derivedName(database: string, suffix: string): string {
  let base = database;
  while (Buffer.byteLength(base + suffix) > MAX_IDENT_BYTES) base = base.slice(0, -1);
  return base + suffix;
}

export function restoreStamp(now: Date): string {
  return now.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
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
 * Checks the ground before anything is written: binaries that can read the dump and talk
 * to the server, a free target name, the owner role, sessions on the database to replace,
 * free disk. Throws one error naming every problem found.
 */
export async function planDatabaseRestore(server: PgServer, meta: PgDumpMeta, options: DatabaseRestoreOptions): Promise<DatabaseRestorePlan> {
  return server.with(server.config.maintenanceDb, async (client) => {
    const problems: string[] = [];
    const major = await serverMajor(client);
    const needed = Math.max(major, meta.pg_dump_major);
    const bins = await findBinaries(needed, server.config.binDir, major >= meta.pg_dump_major ? 'restore into server' : 'read dumps made by pg_dump');
    const database = meta.database;
    const stamp = restoreStamp(options.now);
    const originalExists = await databaseExists(client, database);
    const current = originalExists ? await readDatabaseProperties(client, database) : undefined;
    const properties = current ?? meta.properties;
    if (!properties) throw new StackbackError('REPO_CORRUPT', `the backup of database "${database}" records no database properties`);

    let plan: DatabaseRestorePlan;
    if (options.targetDb !== undefined) {
      if (await databaseExists(client, options.targetDb)) problems.push(`target database "${options.targetDb}" already exists (choose another --target-db, or drop it first)`);
      plan = { database, mode: 'target', scratch: options.targetDb, final: options.targetDb, safetyCopy: null, properties: meta.properties ?? properties, bins, serverMajor: major };
    } else if (originalExists) {
      const safetyCopy = derivedName(database, `_pre_restore_${stamp}`);
      if (await databaseExists(client, safetyCopy)) problems.push(`the safety copy name "${safetyCopy}" is taken`);
      const sessions = await otherSessions(client, database);
      if (sessions > 0 && !options.forceDisconnect) {
        problems.push(`database "${database}" has ${sessions} other session(s); the swap needs it idle (stop the application, or pass --force-disconnect)`);
      }
      plan = { database, mode: 'swap', scratch: derivedName(database, `_restoring_${stamp}`), final: database, safetyCopy, properties, bins, serverMajor: major };
    } else {
      plan = { database, mode: 'create', scratch: derivedName(database, `_restoring_${stamp}`), final: database, safetyCopy: null, properties, bins, serverMajor: major };
    }
    if (await databaseExists(client, plan.scratch) && plan.mode !== 'target') problems.push(`scratch database name "${plan.scratch}" is taken`);

    const roles = [...new Set([plan.properties.owner, ...(plan.properties.grants ?? []).flatMap((g) => (g.grantee ? [g.grantee] : []))])];
    const missing = (await missingRoles(client, roles)).filter((r) => !options.rolesToCreate.has(r));
    if (missing.length > 0) problems.push(`role(s) ${missing.map((r) => `"${r}"`).join(', ')} needed by database "${database}" do not exist on the server (restore them with --with-globals, or create them)`);

    const disk = await dataDirectoryFree(client);
    const needBytes = Math.max(meta.database_size, 0);
    if (disk && disk.free < needBytes) {
      problems.push(`not enough free disk in ${disk.path}: ${disk.free} bytes free, the database needs about ${needBytes}`);
    }
    if (problems.length > 0) {
      throw new StackbackError('PG_RESTORE_FAILED', `cannot restore database "${database}" on ${server.describe()}:\n  ${problems.join('\n  ')}`);
    }
    return plan;
  });
}

/** pg_restore --dbname takes a conninfo string: quote the name so '=' or spaces stay literal. */
function dbnameConninfo(name: string): string {
  return `dbname='${name.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

async function dropDatabase(client: pg.Client, name: string, serverMajorVersion: number): Promise<void> {
  const force = serverMajorVersion >= 13 ? ' WITH (FORCE)' : '';
  await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)}${force}`);
}

/**
 * Restores one database dump: into a scratch database, ANALYZE, properties, then the swap
 * (original → safety copy, scratch → original, in one transaction). On any failure the
 * scratch database is dropped and the original is left as it was.
 */
export async function restoreDatabase(server: PgServer, plan: DatabaseRestorePlan, data: AsyncIterable<Uint8Array>, options: DatabaseRestoreOptions): Promise<DatabaseRestoreResult> {
  const started = Date.now();
  const admin = await server.connect(server.config.maintenanceDb);
  let created = false;
  try {
    await admin.query(createDatabaseSql(plan.scratch, plan.properties));
    created = true;
    const run = runTool(plan.bins.path('pg_restore'), ['--no-password', '--exit-on-error', `--dbname=${dbnameConninfo(plan.scratch)}`], {
      env: server.toolEnv(plan.scratch),
      signal: options.signal,
      errorCode: 'PG_RESTORE_FAILED',
      what: `pg_restore of database "${plan.database}" into "${plan.scratch}"`,
      stdin: 'pipe',
      stdout: 'ignore',
    });
    await feedTool(data, run.stdin!, run.exited);
    // pg_restore brings no planner statistics (before PostgreSQL 18): without them the restored database is slow.
    await server.with(plan.scratch, (client) => client.query('ANALYZE'));
    for (const statement of applyPropertiesSql(plan.scratch, plan.properties)) await admin.query(statement);
    if (plan.mode !== 'target') await swapIn(admin, plan, options);
    return { database: plan.database, restored_as: plan.final, safety_copy: plan.safetyCopy, mode: plan.mode, seconds: (Date.now() - started) / 1000 };
  } catch (error) {
    if (created) await dropDatabase(admin, plan.scratch, plan.serverMajor).catch(() => undefined);
    throw error;
  } finally {
    await admin.end().catch(() => undefined);
  }
}

const SWAP_WAIT_MS = 10_000;

async function swapIn(admin: pg.Client, plan: DatabaseRestorePlan, options: DatabaseRestoreOptions): Promise<void> {
  const deadline = Date.now() + SWAP_WAIT_MS;
  for (;;) {
    if (plan.mode === 'swap' && options.forceDisconnect) {
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [plan.database]);
    }
    try {
      await admin.query('BEGIN');
      if (plan.mode === 'swap') await admin.query(`ALTER DATABASE ${quoteIdent(plan.database)} RENAME TO ${quoteIdent(plan.safetyCopy!)}`);
      await admin.query(`ALTER DATABASE ${quoteIdent(plan.scratch)} RENAME TO ${quoteIdent(plan.final)}`);
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

/** Statements of a globals dump minus CREATE ROLE/TABLESPACE for ones that already exist. */
export function filterGlobals(sql: string, existingRoles: Set<string>, existingTablespaces: Set<string>): { sql: string; skipped: string[] } {
  const skipped: string[] = [];
  const ident = (text: string) => (text.startsWith('"') ? text.slice(1, -1).replaceAll('""', '"') : text);
  const lines = sql.split('\n').filter((line) => {
    const role = /^CREATE ROLE ("(?:[^"]|"")+"|[^\s;]+);$/.exec(line);
    if (role && existingRoles.has(ident(role[1]!))) {
      skipped.push(`role ${ident(role[1]!)}`);
      return false;
    }
    const tablespace = /^CREATE TABLESPACE ("(?:[^"]|"")+"|[^\s;]+) /.exec(line);
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
    env: server.toolEnv(maintenanceDb),
    signal,
    errorCode: 'PG_RESTORE_FAILED',
    what: 'restore of roles and tablespaces (globals)',
    stdin: 'pipe',
    stdout: 'ignore',
  });
  await feedTool([Buffer.from(filtered.sql)], run.stdin!, run.exited);
  return { skipped: filtered.skipped };
}
