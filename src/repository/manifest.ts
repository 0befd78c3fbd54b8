import { StackbackError } from '../errors.ts';

/**
 * A manifest is the record of one completed backup: every artifact it holds, the ordered
 * chunks of each, and what the source reported about it. It is written last; a backup
 * without a manifest never happened.
 */
export const MANIFEST_FORMAT = 1;

export type BackupKind = 'full' | 'incremental';
export type BackupStatus = 'ok' | 'partial';

export interface ChunkRef {
  /** SHA-256 of the plaintext chunk. */
  id: string;
  size: number;
  /** Bytes of the stored object and their SHA-256: a cheap integrity check before restore. */
  stored_size: number;
  stored_sha256: string;
}

export type ArtifactKind = 'pg_dump' | 'pg_globals' | 'qdrant_snapshot' | 'qdrant_storage' | 'files_tar' | 'catalog';

export interface ArtifactManifest {
  /** Unique within the backup, e.g. "main/db/app" or "main/globals". */
  id: string;
  source: string;
  kind: ArtifactKind;
  /** What the artifact is of: a database name, "globals", … */
  target: string;
  size: number;
  sha256: string;
  chunks: ChunkRef[];
  meta: Record<string, unknown>;
}

export interface SourceOutcome {
  name: string;
  kind: string;
  status: 'ok' | 'failed';
  error?: string;
  /** Per-artifact failures inside a source that otherwise worked. */
  failed_artifacts?: { id: string; error: string }[];
  /** Artifacts stored but missing parts (files that could not be read): the backup is partial. */
  incomplete_artifacts?: { id: string; errors: string[] }[];
  /** Things worth knowing that did not fail anything (a file that vanished, a socket skipped). */
  warnings?: string[];
  /**
   * Signs that the source's backup protects less than it should, though nothing failed: it
   * yielded no artifact, far fewer than its previous backup (a database that disappeared), or
   * an empty file tree (an unmounted folder). Shown by `status` until a later backup of the source.
   */
  coverage?: string[];
}

/** Whether a backup holds a complete copy of this source: only then does it count for the source's freshness and retention. */
export function sourceSucceeded(outcome: SourceOutcome): boolean {
  return outcome.status === 'ok' && !outcome.failed_artifacts?.length && !outcome.incomplete_artifacts?.length;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  name: string;
  kind: BackupKind;
  chain: string;
  status: BackupStatus;
  started_at: string;
  finished_at: string;
  host: string;
  stackback_version: string;
  sources: SourceOutcome[];
  artifacts: ArtifactManifest[];
  stats: { bytes_read: number; bytes_stored: number; chunks: number; chunks_new: number };
}

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Backup names become file names: nothing that could climb out of manifests/. */
export function validateBackupName(name: string): string {
  if (name === '' || !NAME_PATTERN.test(name) || name.includes('..')) {
    throw new StackbackError(
      'BACKUP_NAME_INVALID',
      `invalid backup name ${JSON.stringify(name)}: names are 1-128 characters of letters, digits, '.', '_' and '-', start with a letter or digit, and contain no '..' or '/'`,
      '`stackback list` shows the names of existing backups',
    );
  }
  return name;
}

const NAME_PREFIX = { full: 'full', incremental: 'incr', prerestore: 'prerestore' } as const;

/** A restore's safety copy of what it replaced: kept by its own rule, never joined by scheduled incrementals. */
export function isSafetyCopy(name: string): boolean {
  return name.startsWith(`${NAME_PREFIX.prerestore}-`);
}

/** full-20261126T021132Z: sortable, readable, unique to the second (a suffix breaks ties). */
export function newBackupName(kind: keyof typeof NAME_PREFIX, at: Date, exists: (name: string) => boolean): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const base = `${NAME_PREFIX[kind]}-${stamp}`;
  let name = base;
  for (let n = 2; exists(name); n++) name = `${base}-${n}`;
  return name;
}

export function parseManifest(text: string, origin: string): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new StackbackError('REPO_CORRUPT', `manifest ${origin} is not valid JSON: ${(error as Error).message}`);
  }
  const manifest = value as Partial<Manifest>;
  if (manifest.format !== MANIFEST_FORMAT || typeof manifest.name !== 'string' || !Array.isArray(manifest.artifacts)) {
    throw new StackbackError('REPO_CORRUPT', `manifest ${origin} has an unknown format (format ${String(manifest.format)})`);
  }
  return manifest as Manifest;
}
