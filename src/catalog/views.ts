import { StackbackError } from '../errors.ts';
import { validateBackupName } from '../repository/manifest.ts';
import type { ArtifactRow, BackupRow, Catalog, RunRow } from './catalog.ts';

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
/** remotes: as in the list, with when each got it. */
export type BackupDetail = BackupRow & { artifacts: ArtifactRow[]; verified: (Verdict & { detail: unknown }) | null; remotes: OffSite[] };

/** Where each backup is off-site, from the catalog's knowledge of the configured remotes `remoteNames`. */
function offSite(catalog: Catalog, remoteNames: string[]): (backup: string) => OffSite[] {
  const known = remoteNames.map((name) => ({ name, backups: catalog.remote(name).backups() }));
  return (backup) => known.flatMap(({ name, backups }) => {
    const seen = backups.get(backup);
    return seen === undefined ? [] : [{ name, seen_at: seen }];
  });
}

export function backupList(catalog: Catalog, remoteNames: string[] = []): ListedBackup[] {
  const verified = catalog.lastVerifications();
  const remotesOf = offSite(catalog, remoteNames);
  return catalog.listBackups().map((b) => {
    const v = verified.get(b.name);
    return { ...b, verified: v ? { level: v.level, at: v.at, ok: v.ok } : null, remotes: remotesOf(b.name).map((r) => r.name) };
  });
}

export function backupDetail(catalog: Catalog, name: string, remoteNames: string[] = []): BackupDetail {
  validateBackupName(name);
  const backup = catalog.getBackup(name);
  if (!backup) throw new StackbackError('BACKUP_NOT_FOUND', `backup ${name} not found`, '`stackback list` shows the backups');
  return { ...backup, verified: catalog.lastVerifications(name).get(name) ?? null, remotes: offSite(catalog, remoteNames)(name) };
}

export const HISTORY_MAX = 10_000;

export function runHistory(catalog: Catalog, limit: number): RunRow[] {
  return catalog.listRuns(Math.min(Math.max(1, Math.trunc(limit) || 30), HISTORY_MAX));
}
