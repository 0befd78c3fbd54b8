import pg from 'pg';
import type { PostgresSourceConfig } from '../../config/load.ts';
import { StackbackError } from '../../errors.ts';
import { secretFromFile } from '../secret-file.ts';
import type { ToolOptions } from '../tool.ts';

/** libpq settings of our own environment (PGSSLMODE, PGSERVICEFILE, …) that the tools keep, as the `pg` client does; never a password. */
const INHERITED_LIBPQ = /^PG(?!PASSWORD$)[A-Z_]+$/;

/**
 * How stackback reaches one PostgreSQL server: a `pg` client for queries (held snapshots,
 * parameters, SQLSTATE codes) and an environment for pg_dump/pg_restore/psql. The password
 * travels only in memory and, for a tool, in a password file of that one run (PGPASSFILE,
 * mode 0600, removed when the tool ends): never in argv, the environment or logs.
 */
export class PgServer {
  readonly config: PostgresSourceConfig;
  private readonly readPassword: () => string | undefined;

  constructor(config: PostgresSourceConfig) {
    this.config = config;
    const fromFile = secretFromFile(config.passwordFile, 'password_file', config.name);
    // Without a password_file the `pg` client takes PGPASSWORD from our environment: the tools get the same.
    this.readPassword = () => fromFile() ?? process.env.PGPASSWORD;
  }

  /** "postgres source main (postgres@/var/run/postgresql:5432)": for messages, never with secrets. */
  describe(): string {
    return `postgres source ${this.config.name} (${this.address})`;
  }

  /** "postgres@/var/run/postgresql:5432" */
  get address(): string {
    return `${this.config.user}@${this.config.host}:${this.config.port}`;
  }

  /** How a libpq tool reaches the server: environment and password file; the database is passed as PGDATABASE (never parsed as a conninfo string). */
  toolAccess(database: string): Pick<ToolOptions, 'env' | 'secretFile'> {
    const env: Record<string, string> = {
      ...Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => INHERITED_LIBPQ.test(entry[0]) && entry[1] !== undefined)),
      PGHOST: this.config.host,
      PGPORT: String(this.config.port),
      PGUSER: this.config.user,
      PGDATABASE: database,
      PGAPPNAME: 'stackback',
      PGCONNECT_TIMEOUT: '15',
    };
    const password = this.readPassword();
    if (password === undefined) return { env };
    // One line of ~/.pgpass syntax (backslash escapes ':' and '\'); it exists only for this run, so any host, port and database.
    const field = (text: string) => text.replace(/[\\:]/g, '\\$&');
    return { env, secretFile: { variable: 'PGPASSFILE', content: `*:*:*:${field(this.config.user)}:${field(password)}\n` } };
  }

  async connect(database: string): Promise<pg.Client> {
    const password = this.readPassword();
    const client = new pg.Client({
      host: this.config.host,
      port: this.config.port,
      user: this.config.user,
      database,
      application_name: 'stackback',
      connectionTimeoutMillis: 15_000,
      ...(password !== undefined ? { password } : {}),
    });
    // An idle client that loses its server emits 'error'; without a listener that kills the process.
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw this.explain(error, database);
    }
    return client;
  }

  /** Runs `fn` with a client on `database`, always closing it. */
  async with<T>(database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = await this.connect(database);
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Turns a connection failure into an error that names the server and what to do. */
  explain(error: unknown, database: string): StackbackError {
    const where = this.describe();
    const e = error as { code?: string; message?: string };
    switch (e.code) {
      case '28P01':
      case '28000':
        return new StackbackError('PG_AUTH', `authentication failed for ${where}: ${e.message ?? ''}`, 'check user and password_file of this source, and pg_hba.conf');
      case '3D000':
        return new StackbackError('PG_DATABASE_MISSING', `database "${database}" does not exist on ${where}`, 'check sources.postgres[].databases');
      case 'ECONNREFUSED':
      case 'ENOENT':
      case 'EHOSTUNREACH':
      case 'ETIMEDOUT':
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return new StackbackError('PG_CONNECT', `cannot reach ${where}: ${e.code}`, 'is the server running, and are host and port right?');
      default:
        if (/timeout/i.test(e.message ?? '')) return new StackbackError('PG_CONNECT', `cannot reach ${where}: connection timed out`, 'is the server running, and are host and port right?');
        return new StackbackError('PG_CONNECT', `cannot connect to ${where}: ${e.message ?? String(error)}`);
    }
  }
}
