import pg from 'pg';

/**
 * The one way stackback puts names and values into SQL text: the driver's escaping. Every
 * statement that carries one goes through `exec`, over the extended protocol, which refuses
 * a string holding more than one statement: a value that slipped past escaping still cannot
 * start a second one.
 */
export const ident = (name: string): string => pg.escapeIdentifier(name);
export const literal = (value: string): string => pg.escapeLiteral(value);

export function exec<R extends pg.QueryResultRow = pg.QueryResultRow>(client: pg.Client, text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
  // queryMode is missing from @types/pg; pg 8 reads it (lib/query.js requiresPreparation).
  return client.query<R>({ text, values, queryMode: 'extended' } as pg.QueryConfig);
}
