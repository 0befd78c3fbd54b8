import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { StackbackError } from '../../errors.ts';

/**
 * Chooses the client binaries for a server: the same major version, or the nearest newer
 * one (pg_dump can dump older servers, never newer ones). bin_dir overrides the search.
 */
export interface PgBinaries {
  dir: string;
  major: number;
  version: string;
  path(tool: 'pg_dump' | 'pg_dumpall' | 'pg_restore' | 'psql'): string;
}

const SEARCH_ROOTS = ['/usr/lib/postgresql', '/usr/pgsql-'];

function candidateDirs(): string[] {
  const dirs: string[] = [];
  if (existsSync('/usr/lib/postgresql')) {
    for (const version of readdirSync('/usr/lib/postgresql')) dirs.push(path.join('/usr/lib/postgresql', version, 'bin'));
  }
  for (const entry of existsSync('/usr') ? readdirSync('/usr') : []) {
    if (entry.startsWith('pgsql-')) dirs.push(path.join('/usr', entry, 'bin'));
  }
  return dirs.filter((dir) => existsSync(path.join(dir, 'pg_dump')));
}

async function probe(dir: string): Promise<PgBinaries> {
  const { stdout } = await execa(path.join(dir, 'pg_dump'), ['--version']);
  const match = /(\d+)(?:\.(\d+))?/.exec(stdout);
  if (!match) throw new StackbackError('PG_BINARY_MISSING', `cannot read the version of ${dir}/pg_dump ("${stdout}")`);
  return { dir, major: Number(match[1]), version: match[0], path: (tool) => path.join(dir, tool) };
}

/** Binaries able to work with a server of major version `needed` (and read dumps of that version). */
export async function findBinaries(needed: number, binDir: string | null, why: string): Promise<PgBinaries> {
  if (binDir !== null) {
    if (!existsSync(path.join(binDir, 'pg_dump'))) {
      throw new StackbackError('PG_BINARY_MISSING', `bin_dir ${binDir} has no pg_dump`, 'point bin_dir at the folder holding pg_dump, pg_restore and psql');
    }
    const found = await probe(binDir);
    if (found.major < needed) {
      throw new StackbackError('PG_VERSION_MISMATCH', `PostgreSQL ${found.major} client tools in ${binDir} cannot ${why} ${needed}`, `install the PostgreSQL ${needed} client tools and point bin_dir at them`);
    }
    return found;
  }
  const found = await Promise.all(candidateDirs().map(probe));
  const usable = found.filter((b) => b.major >= needed).sort((a, b) => a.major - b.major);
  if (usable[0]) return usable[0];
  if (found.length === 0) {
    throw new StackbackError('PG_BINARY_MISSING', `no PostgreSQL client tools found (searched ${SEARCH_ROOTS.join('*, ')}*)`, `install postgresql-client-${needed} or set bin_dir`);
  }
  const newest = Math.max(...found.map((b) => b.major));
  throw new StackbackError('PG_VERSION_MISMATCH', `PostgreSQL ${newest} client tools cannot ${why} ${needed}`, `install postgresql-client-${needed} or set bin_dir`);
}
