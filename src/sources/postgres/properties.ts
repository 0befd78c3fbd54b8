import type pg from 'pg';
import { quoteIdent, quoteLiteral } from './connection.ts';

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
    `CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0`,
    `OWNER ${quoteIdent(props.owner)}`,
    `ENCODING ${quoteLiteral(props.encoding)}`,
    `LC_COLLATE ${quoteLiteral(props.collate)}`,
    `LC_CTYPE ${quoteLiteral(props.ctype)}`,
    // pg_default is template0's own: naming it would need CREATE on it, which a CREATEDB role lacks.
    ...(props.tablespace === 'pg_default' ? [] : [`TABLESPACE ${quoteIdent(props.tablespace)}`]),
  ];
  if (props.locale_provider === 'icu') parts.push(`LOCALE_PROVIDER icu ICU_LOCALE ${quoteLiteral(props.icu_locale ?? '')}`);
  return parts.join(' ');
}

/** Settings whose value is a list of identifiers, already quoted as they are stored (as pg_dump treats them). */
const LIST_QUOTED_SETTINGS = new Set(['search_path', 'temp_tablespaces', 'session_preload_libraries', 'shared_preload_libraries', 'local_preload_libraries']);

function settingSql(entry: string): string {
  const at = entry.indexOf('=');
  const key = entry.slice(0, at);
  const value = entry.slice(at + 1);
  return `SET ${quoteIdent(key)} TO ${LIST_QUOTED_SETTINGS.has(key.toLowerCase()) ? value : quoteLiteral(value)}`;
}

/** Statements that give database `name` the owner, privileges, settings and comment of `props`. */
export function applyPropertiesSql(name: string, props: DatabaseProperties): string[] {
  const db = quoteIdent(name);
  const statements = [`ALTER DATABASE ${db} OWNER TO ${quoteIdent(props.owner)}`];
  if (props.grants !== null) {
    statements.push(`REVOKE ALL ON DATABASE ${db} FROM PUBLIC`, `REVOKE ALL ON DATABASE ${db} FROM ${quoteIdent(props.owner)}`);
    for (const grant of props.grants) {
      const grantee = grant.grantee === null ? 'PUBLIC' : quoteIdent(grant.grantee);
      statements.push(`GRANT ${grant.privilege} ON DATABASE ${db} TO ${grantee}${grant.grantable ? ' WITH GRANT OPTION' : ''}`);
    }
  }
  for (const setting of props.settings) {
    const prefix = setting.role === null ? `ALTER DATABASE ${db}` : `ALTER ROLE ${quoteIdent(setting.role)} IN DATABASE ${db}`;
    for (const entry of setting.config) statements.push(`${prefix} ${settingSql(entry)}`);
  }
  if (props.connection_limit !== -1) statements.push(`ALTER DATABASE ${db} CONNECTION LIMIT ${props.connection_limit}`);
  if (props.comment !== null) statements.push(`COMMENT ON DATABASE ${db} IS ${quoteLiteral(props.comment)}`);
  return statements;
}
