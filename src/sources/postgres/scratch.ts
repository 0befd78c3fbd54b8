import { hostname } from 'node:os';
import type pg from 'pg';
import { currentProcessIdentity, type ProcessIdentity, processAlive } from '../../process-identity.ts';
import { errorMessage } from '../../errors.ts';
import type { PgServer } from './connection.ts';
import { exec, ident } from './sql.ts';

/**
 * Databases stackback creates or sets aside carry a comment that proves it: what they are,
 * the name they were made under, and the process that made them (host, pid, boot id, start
 * time). Only a database with such a marker, still under that name, is ever dropped by
 * stackback's own clean-up: a restore scratch or drill database once its process is gone
 * (a killed restore), a safety copy once retention lets it go.
 */
export type MarkerKind = 'restore' | 'drill' | 'safety-copy';

interface Marker extends ProcessIdentity {
  kind: MarkerKind;
  /** The name the database was marked under: a database renamed since (swapped in, taken back by hand) is no longer ours. */
  db: string;
  host: string;
}

const MARKER = /^stackback:(restore|drill|safety-copy) (\{.*\})$/s;

export function scratchMarker(kind: MarkerKind, database: string): string {
  const marker: Omit<Marker, 'kind'> = { db: database, host: hostname(), ...currentProcessIdentity() };
  return `stackback:${kind} ${JSON.stringify(marker)}`;
}

/** The marker in a database comment, when it is one of stackback's and names `database`. */
function readMarker(comment: string | null, database: string): Marker | undefined {
  const match = comment === null ? null : MARKER.exec(comment);
  if (!match) return undefined;
  try {
    const fields = JSON.parse(match[2]!) as Omit<Marker, 'kind'>;
    if (fields.db !== database || typeof fields.host !== 'string' || !Number.isInteger(fields.pid)) return undefined;
    return { ...fields, kind: match[1] as MarkerKind };
  } catch {
    return undefined;
  }
}

/**
 * Whether the process that made a scratch database is certainly gone. One on another host
 * cannot be judged from here (another stackback may be restoring into the same server), so
 * it counts as alive.
 */
function makerGone(marker: Marker): boolean {
  return marker.host === hostname() && !processAlive(marker, true);
}

export interface LeftoverCleanup {
  dropped: string[];
  /** Leftovers that could not be dropped, with why (e.g. a session still uses them). */
  problems: string[];
}

/**
 * Drops the restore and drill scratch databases whose making process is gone. Plain DROP
 * DATABASE, never FORCE: a database somebody is connected to stays.
 */
export async function dropLeftovers(server: PgServer): Promise<LeftoverCleanup> {
  return server.with(server.config.maintenanceDb, async (client) => {
    const result: LeftoverCleanup = { dropped: [], problems: [] };
    for (const { name, marker } of await markedDatabases(client, ['restore', 'drill'])) {
      if (!makerGone(marker)) continue;
      try {
        await exec(client, `DROP DATABASE ${ident(name)}`);
        result.dropped.push(name);
      } catch (error) {
        result.problems.push(`${name}: ${errorMessage(error)}`);
      }
    }
    return result;
  });
}

/** Databases whose comment is a marker of one of `kinds` that names them. */
export async function markedDatabases(client: pg.Client, kinds: MarkerKind[]): Promise<{ name: string; marker: Marker }[]> {
  const { rows } = await exec<{ name: string; comment: string }>(
    client,
    "SELECT d.datname AS name, c.description AS comment FROM pg_database d JOIN pg_shdescription c ON c.objoid = d.oid AND c.classoid = 'pg_database'::regclass WHERE c.description LIKE 'stackback:%' ORDER BY 1",
  );
  return rows.flatMap(({ name, comment }) => {
    const marker = readMarker(comment, name);
    return marker && kinds.includes(marker.kind) ? [{ name, marker }] : [];
  });
}

export async function commentOf(client: pg.Client, database: string): Promise<string | null | undefined> {
  const { rows } = await exec<{ comment: string | null }>(client, "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1", [database]);
  return rows[0]?.comment;
}
