import type pg from 'pg';
import type { ArtifactDump } from '../source.ts';
import { runTool } from '../tool.ts';
import type { PgBinaries } from './binaries.ts';
import type { PgServer } from './connection.ts';
import { readDatabaseProperties } from './properties.ts';
import { exec, ident } from './sql.ts';

export interface TableCount {
  table: string;
  rows: number | null;
  exact: boolean;
}

/** Facts recorded with a database dump: what a drill or a restore check compares against. */
export interface PgDumpMeta {
  [key: string]: unknown;
  database: string;
  server_version: string;
  server_major: number;
  pg_dump_version: string;
  pg_dump_major: number;
  database_size: number;
  properties: Awaited<ReturnType<typeof readDatabaseProperties>>;
  extensions: { name: string; version: string }[];
  /** Roles that own objects or hold privileges in the database: a restore needs them. */
  roles?: string[];
  tables: TableCount[];
}

/**
 * Row counts in the dump's own snapshot, so they describe exactly what the dump holds.
 * Tables above `exactMaxBytes` get the planner's estimate (marked exact: false) instead
 * of a full scan while the dump runs.
 */
async function countRows(client: pg.Client, exactMaxBytes: number): Promise<TableCount[]> {
  const { rows } = await client.query<{ schema: string; name: string; bytes: string; estimate: number; populated: boolean }>(
    `SELECT n.nspname AS schema, c.relname AS name, pg_relation_size(c.oid) AS bytes, c.reltuples AS estimate,
            c.relispopulated AS populated
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1, 2`,
  );
  const counts: TableCount[] = [];
  for (const t of rows) {
    const table = `${t.schema}.${t.name}`;
    if (!t.populated) counts.push({ table, rows: null, exact: false });
    else if (Number(t.bytes) <= exactMaxBytes) {
      const result = await exec<{ n: string }>(client, `SELECT count(*) AS n FROM ONLY ${ident(t.schema)}.${ident(t.name)}`);
      counts.push({ table, rows: Number(result.rows[0]!.n), exact: true });
    } else counts.push({ table, rows: t.estimate < 0 ? null : Math.round(t.estimate), exact: false });
  }
  return counts;
}

/**
 * Streams `pg_dump -Fc` of one database. The dump runs in a snapshot exported by our own
 * REPEATABLE READ transaction, which stays open until pg_dump exits, so the row counts and
 * properties recorded beside the dump are of the very same instant.
 */
export async function dumpDatabase(server: PgServer, bins: PgBinaries, database: string, signal?: AbortSignal): Promise<ArtifactDump> {
  const client = await server.connect(database);
  let snapshot: string;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    snapshot = (await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
  // -Z0: stackback compresses per chunk; pg_dump's own gzip would be slow and defeat dedup.
  const run = runTool(bins.path('pg_dump'), ['--format=custom', '--compress=0', '--no-password', `--snapshot=${snapshot}`], {
    ...server.toolAccess(database),
    signal,
    errorCode: 'PG_DUMP_FAILED',
    what: `pg_dump of database "${database}" (source ${server.config.name})`,
    bigWrites: true,
  });
  // Our own session may be waiting too (a row count behind the same lock pg_dump waits on):
  // closing it on abort lets a stalled or cancelled backup end at once.
  const closeOnAbort = () => void client.end().catch(() => undefined);
  signal?.addEventListener('abort', closeOnAbort, { once: true });
  const finished = (async (): Promise<PgDumpMeta> => {
    try {
      const facts = await client.query<{ version: string; num: string; size: string }>(
        `SELECT current_setting('server_version') AS version, current_setting('server_version_num') AS num,
                pg_database_size(current_database()) AS size`,
      );
      const extensions = await client.query<{ name: string; version: string }>('SELECT extname AS name, extversion AS version FROM pg_extension ORDER BY 1');
      const tables = await countRows(client, server.config.exactCountMaxBytes);
      const roles = await client.query<{ role: string }>(
        `SELECT DISTINCT pg_get_userbyid(o) AS role FROM (
           SELECT relowner AS o FROM pg_class WHERE relnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema') OR nspname LIKE 'pg_toast%')
           UNION SELECT nspowner FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%'
           UNION SELECT proowner FROM pg_proc WHERE pronamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))
           UNION SELECT typowner FROM pg_type WHERE typnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))
           UNION SELECT (aclexplode(relacl)).grantee FROM pg_class WHERE relacl IS NOT NULL
         ) owners WHERE o <> 0 ORDER BY 1`,
      );
      const properties = await readDatabaseProperties(client, database);
      await run.exited;
      const row = facts.rows[0]!;
      return {
        database,
        server_version: row.version,
        server_major: Math.floor(Number(row.num) / 10000),
        pg_dump_version: bins.version,
        pg_dump_major: bins.major,
        database_size: Number(row.size),
        properties,
        extensions: extensions.rows,
        roles: roles.rows.map((r) => r.role),
        tables,
      };
    } catch (error) {
      run.stdout?.destroy();
      await run.exited.catch(() => undefined);
      throw error;
    } finally {
      signal?.removeEventListener('abort', closeOnAbort);
      await client.end().catch(() => undefined);
    }
  })();
  finished.catch(() => undefined);
  return { stream: run.stdout!, finished };
}

/** pg_dumpall --globals-only: roles and tablespaces, which no per-database dump carries. */
export async function dumpGlobals(server: PgServer, bins: PgBinaries, signal?: AbortSignal): Promise<ArtifactDump> {
  const maintenanceDb = server.config.maintenanceDb;
  const superuser = await server.with(maintenanceDb, async (client) => {
    const { rows } = await client.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
    return rows[0]?.rolsuper === true;
  });
  // Only a superuser may read password hashes; others still get every role, without them.
  const args = ['--globals-only', '--no-password', `--database=${maintenanceDb}`, ...(superuser ? [] : ['--no-role-passwords'])];
  const run = runTool(bins.path('pg_dumpall'), args, {
    ...server.toolAccess(maintenanceDb),
    signal,
    errorCode: 'PG_DUMP_FAILED',
    what: `pg_dumpall --globals-only (source ${server.config.name})`,
  });
  const finished = run.exited.then(() => ({ pg_dump_version: bins.version, pg_dump_major: bins.major, role_passwords: superuser }));
  finished.catch(() => undefined);
  return { stream: run.stdout!, finished };
}
