import { StackbackError } from '../errors.ts';
import { validateBackupName } from '../repository/manifest.ts';
import type { ArtifactRow, BackupFilter, BackupRow, Catalog, RunRow } from './catalog.ts';

/**
 * What `list`, `show` and `history` print, as documents: the same whether the CLI reads the
 * catalog itself or asks the daemon (GET /api/backup/list, /api/backup/{name}, /api/history).
 */
export interface Verdict {
  level: string;
  at: string;
  ok: boolean;
}

/** A remote that holds a backup, and since when this machine knows it there (copied it, or saw it in the remote's list). */
export interface OffSite {
  name: string;
  seen_at: string;
}

/** remotes: the configured remotes holding the backup, by name, in config order. */
export type ListedBackup = BackupRow & { verified: Verdict | null; remotes: string[] };
/** A CLI command that restores one artifact of a backup, and what it does. */
export interface RestoreCommand {
  source: string;
  artifact: string;
  /** e.g. "beside the original, as database shop_restored" */
  effect: string;
  command: string;
}

/** remotes: as in the list, with when each got it; restore_commands: how to restore each artifact (the dashboard never restores). */
export type BackupDetail = BackupRow & { artifacts: ArtifactRow[]; verified: (Verdict & { detail: unknown }) | null; remotes: OffSite[]; restore_commands: RestoreCommand[] };

/** Where each backup is off-site, from the catalog's knowledge of the configured remotes `remoteNames`. */
function offSite(catalog: Catalog, remoteNames: string[]): (backup: string) => OffSite[] {
  const known = remoteNames.map((name) => ({ name, backups: catalog.remote(name).backups() }));
  return (backup) => known.flatMap(({ name, backups }) => {
    const seen = backups.get(backup);
    return seen === undefined ? [] : [{ name, seen_at: seen }];
  });
}

/** Each backup with its newest verification and the remotes holding it. */
function listed(catalog: Catalog, backups: BackupRow[], remoteNames: string[], verified = catalog.lastVerifications()): ListedBackup[] {
  const remotesOf = offSite(catalog, remoteNames);
  return backups.map((b) => {
    const v = verified.get(b.name);
    return { ...b, verified: v ? { level: v.level, at: v.at, ok: v.ok } : null, remotes: remotesOf(b.name).map((r) => r.name) };
  });
}

export function backupList(catalog: Catalog, remoteNames: string[] = []): ListedBackup[] {
  return listed(catalog, catalog.listBackups(), remoteNames);
}

/** `?offset=&limit=`: a page of at most PAGE_MAX entries, PAGE_DEFAULT when unsaid. */
export const PAGE_DEFAULT = 50;
export const PAGE_MAX = 500;

function pageOf(query: URLSearchParams): { offset: number; limit: number } {
  const number = (key: string, fallback: number, max: number) => {
    const text = query.get(key);
    if (text === null || text === '') return fallback;
    if (!/^\d{1,9}$/.test(text)) throw new StackbackError('BAD_REQUEST', `"${key}" must be a whole number, got ${JSON.stringify(text)}`);
    return Math.min(Number(text), max);
  };
  return { offset: number('offset', 0, Number.MAX_SAFE_INTEGER), limit: Math.max(1, number('limit', PAGE_DEFAULT, PAGE_MAX)) };
}

/** A filter value from `query`, one of `allowed` (undefined when absent or empty). */
function oneOf<T extends string>(query: URLSearchParams, key: string, allowed: readonly T[]): T | undefined {
  const value = query.get(key);
  if (value === null || value === '') return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw new StackbackError('BAD_REQUEST', `"${key}" must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

export interface Page {
  total: number;
  offset: number;
  limit: number;
}

/** GET /api/backups?source=&status=&kind=&offset=&limit=: newest first. */
export function backupPage(catalog: Catalog, query: URLSearchParams, remoteNames: string[] = []): Page & { backups: ListedBackup[] } {
  const { offset, limit } = pageOf(query);
  const filter: BackupFilter = { source: query.get('source') || undefined, status: oneOf(query, 'status', ['ok', 'partial']), kind: oneOf(query, 'kind', ['full', 'incremental']) };
  const { total, backups } = catalog.backupPage(filter, offset, limit);
  return { total, offset, limit, backups: listed(catalog, backups, remoteNames, catalog.lastVerifications(backups.map((b) => b.name))) };
}

const RUN_STATUSES = ['running', 'ok', 'partial', 'failed', 'interrupted', 'stalled'] as const;

/** GET /api/runs?kind=&status=&offset=&limit=: newest first. */
export function runPage(catalog: Catalog, query: URLSearchParams): Page & { runs: RunRow[] } {
  const { offset, limit } = pageOf(query);
  const kind = query.get('kind') || undefined;
  if (kind !== undefined && !/^[a-z_]{1,32}$/.test(kind)) throw new StackbackError('BAD_REQUEST', `"kind" must be a run kind such as backup, verify or prune, got ${JSON.stringify(kind)}`);
  const { total, runs } = catalog.runPage({ kind, status: oneOf(query, 'status', RUN_STATUSES) }, offset, limit);
  return { total, offset, limit, runs };
}

/** GET /api/charts: columns, oldest first; times in Unix seconds. */
export interface ChartSeries {
  backups: { name: string[]; finished_at: number[]; kind: string[]; bytes_stored: number[]; bytes_read: number[]; duration_s: number[] };
  repository: { at: number[]; bytes: number[] };
}

export function chartSeries(catalog: Catalog): ChartSeries {
  const seconds = (iso: string) => Date.parse(iso) / 1000;
  const rows = catalog.backupSeries();
  const sizes = catalog.repositorySizes();
  return {
    backups: {
      name: rows.map((r) => r.name),
      finished_at: rows.map((r) => seconds(r.finished_at)),
      kind: rows.map((r) => r.kind),
      bytes_stored: rows.map((r) => r.bytes_stored),
      bytes_read: rows.map((r) => r.bytes_read),
      duration_s: rows.map((r) => Math.max(0, Date.parse(r.finished_at) - Date.parse(r.started_at)) / 1000),
    },
    repository: { at: sizes.map((s) => seconds(s.at)), bytes: sizes.map((s) => s.bytes) },
  };
}

/** configFile: the config the commands name with --config (null: the default one, left out). */
export function backupDetail(catalog: Catalog, name: string, remoteNames: string[] = [], configFile: string | null = null): BackupDetail {
  validateBackupName(name);
  const backup = catalog.getBackup(name);
  if (!backup) throw new StackbackError('BACKUP_NOT_FOUND', `backup ${name} not found`, '`stackback list` shows the backups');
  return { ...backup, verified: catalog.lastVerifications(name).get(name) ?? null, remotes: offSite(catalog, remoteNames)(name), restore_commands: restoreCommands(backup.name, backup.artifacts, configFile) };
}

/** A word as a POSIX shell reads it: names of databases and collections may hold anything. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/** Per artifact: the restore beside the original first (safe to run), then the one that replaces it. */
function restoreCommands(backup: string, artifacts: ArtifactRow[], configFile: string | null): RestoreCommand[] {
  const base = (source: string) => ['stackback', 'restore', backup, ...(configFile ? ['--config', configFile] : []), '--source', source];
  const command = (words: string[]) => words.map(shellWord).join(' ');
  return artifacts.flatMap((a): RestoreCommand[] => {
    const entry = (effect: string, words: string[]) => ({ source: a.source, artifact: a.id, effect, command: command([...base(a.source), ...words]) });
    switch (a.kind) {
      case 'pg_dump':
        return [
          entry(`beside the original, as database ${a.target}_restored`, ['--database', a.target, '--target-db', `${a.target}_restored`]),
          entry(`replacing database ${a.target} (swapped in; the replaced one is kept as the safety copy)`, ['--database', a.target]),
        ];
      case 'qdrant_snapshot':
        return [
          entry(`beside the original, as collection ${a.target}_restored`, ['--collection', a.target, '--target-collection', `${a.target}_restored`]),
          entry(`replacing collection ${a.target} (a snapshot of the current one is stored first)`, ['--collection', a.target]),
        ];
      case 'files_tar':
        return [
          entry('unpacked under /var/tmp/stackback-restore, the originals left alone', ['--target-dir', '/var/tmp/stackback-restore']),
          entry('in place, over the current files', []),
        ];
      case 'qdrant_storage':
        return [entry('the storage folder, in place (Qdrant stopped by the hooks)', [])];
      default:
        return []; // pg_globals: replayed with --with-globals alongside a database
    }
  });
}

export const HISTORY_MAX = 10_000;

/** GET /api/history?limit=: the newest runs (the CLI's `history`). */
export function runHistory(catalog: Catalog, limit: number): RunRow[] {
  return catalog.listRuns(Math.min(Math.max(1, Math.trunc(limit) || 30), HISTORY_MAX));
}
