import type pg from 'pg';
import { StackbackError } from '../../errors.ts';
import { exec, ident, literal } from './sql.ts';

/**
 * Database-level properties that live outside any dump of the database's contents:
 * how to create it (encoding, locale, tablespace) and what to give it afterwards (owner,
 * privileges, per-database settings, comment, connection limit). Captured at backup time,
 * re-applied to the database a restore swaps in.
 */
export interface DatabaseProperties {
  name: string;
  owner: string;
  encoding: string;
  collate: string;
  ctype: string;
  locale_provider: 'libc' | 'icu' | null;
  icu_locale: string | null;
  tablespace: string;
  connection_limit: number;
  comment: string | null;
  /** aclexplode of datacl; null means the default privileges. */
  grants: { grantee: string | null; privilege: string; grantable: boolean }[] | null;
  /** pg_db_role_setting rows: role null = for everyone. */
  settings: { role: string | null; config: string[] }[];
}

export async function serverMajor(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  return Math.floor(Number(rows[0]!.v) / 10000);
}

export async function readDatabaseProperties(client: pg.Client, database: string): Promise<DatabaseProperties | undefined> {
  const major = await serverMajor(client);
  // The locale provider arrived in 15; its locale column was renamed in 17.
  const provider = major >= 15 ? `CASE d.datlocprovider WHEN 'i' THEN 'icu' WHEN 'c' THEN 'libc' END` : 'NULL';
  const icuLocale = major >= 17 ? 'd.datlocale' : major >= 15 ? 'd.daticulocale' : 'NULL';
  const { rows } = await client.query<DatabaseProperties>(
    `SELECT d.datname AS name, pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
            d.datcollate AS collate, d.datctype AS ctype, ${provider} AS locale_provider,
            ${icuLocale} AS icu_locale, t.spcname AS tablespace, d.datconnlimit AS connection_limit,
            shobj_description(d.oid, 'pg_database') AS comment,
            CASE WHEN d.datacl IS NULL THEN NULL ELSE COALESCE((
              SELECT json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
                                                'privilege', a.privilege_type, 'grantable', a.is_grantable))
              FROM aclexplode(d.datacl) a), '[]'::json) END AS grants,
            COALESCE((SELECT json_agg(json_build_object('role', CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END,
                                                        'config', s.setconfig))
                      FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), '[]'::json) AS settings
       FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
      WHERE d.datname = $1`,
    [database],
  );
  return rows[0];
}

/** CREATE DATABASE for a scratch copy that can stand in for the original. */
export function createDatabaseSql(name: string, props: DatabaseProperties): string {
  const parts = [
    `CREATE DATABASE ${ident(name)} TEMPLATE template0`,
    `OWNER ${ident(props.owner)}`,
    `ENCODING ${literal(props.encoding)}`,
    `LC_COLLATE ${literal(props.collate)}`,
    `LC_CTYPE ${literal(props.ctype)}`,
    // pg_default is template0's own: naming it would need CREATE on it, which a CREATEDB role lacks.
    ...(props.tablespace === 'pg_default' ? [] : [`TABLESPACE ${ident(props.tablespace)}`]),
  ];
  if (props.locale_provider === 'icu') parts.push(`LOCALE_PROVIDER icu ICU_LOCALE ${literal(props.icu_locale ?? '')}`);
  return parts.join(' ');
}

/**
 * Settings whose stored value is a list of identifiers, each already quoted where needed
 * (GUC_LIST_QUOTE; pg_dump's variable_is_guc_list_quote). As one literal they would be
 * quoted a second time.
 */
const LIST_QUOTED_SETTINGS = new Set(['search_path', 'temp_tablespaces', 'session_preload_libraries', 'shared_preload_libraries', 'local_preload_libraries']);

/** Database privileges aclexplode reports: the only words a GRANT may carry unquoted. */
const DATABASE_PRIVILEGES = new Set(['CONNECT', 'CREATE', 'TEMPORARY']);

/**
 * Stores one pg_db_role_setting entry ("name=value") with `alter` ("ALTER DATABASE …" or
 * "ALTER ROLE … IN DATABASE …"), byte for byte as it was stored. A scalar value is one
 * literal, as pg_dump writes it. A list value is handed over as a parameter: set for this
 * transaction only, then stored with SET … FROM CURRENT, so its quoting is kept exactly as it
 * was and no part of it is ever parsed as SQL. (pg_dump splits such a list and quotes each
 * element as a literal, which turns an unquoted mixed-case name into a quoted one.)
 */
async function applySetting(client: pg.Client, alter: string, entry: string): Promise<void> {
  const at = entry.indexOf('=');
  const name = entry.slice(0, at);
  const value = entry.slice(at + 1);
  if (!LIST_QUOTED_SETTINGS.has(name.toLowerCase())) {
    await exec(client, `${alter} SET ${ident(name)} TO ${literal(value)}`);
    return;
  }
  await client.query('BEGIN');
  try {
    await exec(client, 'SELECT set_config($1, $2, true)', [name, value]);
    await exec(client, `${alter} SET ${ident(name)} FROM CURRENT`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** Gives database `name` the owner, privileges, settings and connection limit of `props` (the comment comes with the swap). */
export async function applyProperties(client: pg.Client, name: string, props: DatabaseProperties): Promise<void> {
  const db = ident(name);
  await exec(client, `ALTER DATABASE ${db} OWNER TO ${ident(props.owner)}`);
  if (props.grants !== null) {
    await exec(client, `REVOKE ALL ON DATABASE ${db} FROM PUBLIC`);
    await exec(client, `REVOKE ALL ON DATABASE ${db} FROM ${ident(props.owner)}`);
    for (const grant of props.grants) {
      if (!DATABASE_PRIVILEGES.has(grant.privilege)) throw new StackbackError('REPO_CORRUPT', `the backup records an unknown database privilege ${JSON.stringify(grant.privilege)}`);
      const grantee = grant.grantee === null ? 'PUBLIC' : ident(grant.grantee);
      await exec(client, `GRANT ${grant.privilege} ON DATABASE ${db} TO ${grantee}${grant.grantable ? ' WITH GRANT OPTION' : ''}`);
    }
  }
  for (const setting of props.settings) {
    const alter = setting.role === null ? `ALTER DATABASE ${db}` : `ALTER ROLE ${ident(setting.role)} IN DATABASE ${db}`;
    for (const entry of setting.config) await applySetting(client, alter, entry);
  }
  if (props.connection_limit !== -1) {
    if (!Number.isInteger(props.connection_limit)) throw new StackbackError('REPO_CORRUPT', `the backup records a connection limit that is not a number: ${JSON.stringify(props.connection_limit)}`);
    await exec(client, `ALTER DATABASE ${db} CONNECTION LIMIT ${props.connection_limit}`);
  }
}

/** COMMENT ON DATABASE: `comment` null removes it. */
export function commentSql(name: string, comment: string | null): string {
  return `COMMENT ON DATABASE ${ident(name)} IS ${comment === null ? 'NULL' : literal(comment)}`;
}
