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

export type ListedBackup = BackupRow & { verified: Verdict | null };
export type BackupDetail = BackupRow & { artifacts: ArtifactRow[]; verified: (Verdict & { detail: unknown }) | null };

export function backupList(catalog: Catalog): ListedBackup[] {
  const verified = catalog.lastVerifications();
  return catalog.listBackups().map((b) => {
    const v = verified.get(b.name);
    return { ...b, verified: v ? { level: v.level, at: v.at, ok: v.ok } : null };
  });
}

export function backupDetail(catalog: Catalog, name: string): BackupDetail {
  validateBackupName(name);
  const backup = catalog.getBackup(name);
  if (!backup) throw new StackbackError('BACKUP_NOT_FOUND', `backup ${name} not found`, '`stackback list` shows the backups');
  return { ...backup, verified: catalog.lastVerifications(name).get(name) ?? null };
}

export const HISTORY_MAX = 10_000;

export function runHistory(catalog: Catalog, limit: number): RunRow[] {
  return catalog.listRuns(Math.min(Math.max(1, Math.trunc(limit) || 30), HISTORY_MAX));
}
