import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { currentProcessIdentity, type ProcessIdentity } from '../process-identity.ts';
import type { ChunkIndex } from '../repository/backup-writer.ts';
import { type ChunkRef, isSafetyCopy, type Manifest, type SourceOutcome, sourceSucceeded } from '../repository/manifest.ts';
import { MIGRATIONS } from './migrations.ts';
import { RemoteCatalog } from './remotes.ts';

export interface BackupRow {
  name: string;
  kind: 'full' | 'incremental';
  chain: string;
  status: 'ok' | 'partial';
  started_at: string;
  finished_at: string;
  bytes_read: number;
  bytes_stored: number;
  chunks: number;
  chunks_new: number;
  sources: SourceOutcome[];
}

export interface ArtifactRow {
  id: string;
  source: string;
  kind: string;
  target: string;
  size: number;
  sha256: string;
  chunk_count: number;
  meta: Record<string, unknown>;
}

export type RunStatus = 'running' | 'ok' | 'partial' | 'failed' | 'interrupted' | 'stalled';

export interface RunRow {
  id: number;
  kind: string;
  started_at: string;
  finished_at: string | null;
  status: RunStatus;
  error: string | null;
  backup: string | null;
  bytes_read: number;
  bytes_stored: number;
  pid: number;
  host: string;
  boot_id: string | null;
  start_time: string | null;
  detail: Record<string, unknown> | null;
}

/** The newest backup (oldest-first `backups`) that holds a complete copy of `source`; restore safety copies never count. */
export function newestBackupOf(backups: BackupRow[], source: string, kind?: BackupRow['kind']): BackupRow | undefined {
  return backups.findLast((b) => (kind === undefined || b.kind === kind) && !isSafetyCopy(b.name) && b.sources.some((o) => o.name === source && sourceSucceeded(o)));
}

export interface BackupFilter {
  source?: string | undefined;
  status?: BackupRow['status'] | undefined;
  kind?: BackupRow['kind'] | undefined;
}

type Raw<T> = { [K in keyof T]: T[K] extends object | null ? string | null : T[K] };

/** A backups row with its JSON column parsed. */
function backupRow(raw: Raw<BackupRow>): BackupRow {
  return { ...raw, sources: JSON.parse(raw.sources as string) as SourceOutcome[] } as BackupRow;
}

/** A runs row with its JSON column parsed. */
function runRow(raw: Raw<RunRow>): RunRow {
  return { ...raw, detail: raw.detail ? (JSON.parse(raw.detail) as Record<string, unknown>) : null } as RunRow;
}

/**
 * The SQLite catalog: an index of the repository (backups, artifacts, the chunk index that
 * lets incrementals skip chunks a chain holds) plus the history of runs. WAL mode, so the
 * daemon and a CLI reading `list` do not block each other.
 */
export class Catalog implements ChunkIndex {
  private readonly db: Database.Database;
  private readonly lookupChunk: Database.Statement<[string, string], ChunkRef>;
  private readonly chunkUse: Database.Statement<[string, string], unknown>;
  private readonly version: Database.Statement<[], number>;
  /** Reads that scan whole tables, kept until the catalog changes (status is built every few seconds). */
  private readonly memo = new Map<string, { version: string; value: unknown }>();

  constructor(file: string) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    // Only chunks a backup of the chain still names: a row left by an interrupted collection
    // (its file may be gone) must never let an incremental skip writing the chunk.
    this.lookupChunk = this.db.prepare(`SELECT c.id, c.size, c.stored_size, c.stored_sha256 FROM chunks c WHERE c.chain = ? AND c.id = ?
      AND EXISTS (SELECT 1 FROM backup_chunks bc JOIN backups b ON b.name = bc.backup WHERE bc.chunk = c.id AND b.chain = c.chain)`);
    // Prepared once: GC asks this for every chunk file, and a statement per call holds native memory until GC.
    this.chunkUse = this.db.prepare('SELECT 1 FROM backup_chunks bc JOIN backups b ON b.name = bc.backup WHERE bc.chunk = ? AND b.chain = ? LIMIT 1');
    this.version = this.db.prepare('SELECT total_changes()').pluck() as Database.Statement<[], number>;
  }

  /**
   * `compute()`, or its value from an earlier call if the catalog has not changed since: no
   * commit by another connection (PRAGMA data_version) and no change through this one
   * (total_changes()). Values must be treated as read-only by callers.
   */
  private unchanged<T>(name: string, compute: () => T): T {
    const version = `${this.db.pragma('data_version', { simple: true })}:${this.version.get()}`;
    const known = this.memo.get(name);
    if (known?.version === version) return known.value as T;
    const value = compute();
    this.memo.set(name, { version, value });
    return value;
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    for (let version = current; version < MIGRATIONS.length; version++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[version]!);
        this.db.pragma(`user_version = ${version + 1}`);
      })();
    }
  }

  close(): void {
    this.db.close();
  }

  /** A consistent copy of the whole catalog, taken with SQLite's online backup API while it is in use. */
  async copyTo(file: string): Promise<void> {
    await this.db.backup(file);
  }

  /** What the catalog knows of remote `name` (its packs and backups). */
  remote(name: string): RemoteCatalog {
    return new RemoteCatalog(this.db, name);
  }

  lookup(chain: string, id: string): ChunkRef | undefined {
    return this.lookupChunk.get(chain, id);
  }

  /** Indexes a committed backup (after its manifest is written) in one transaction. */
  recordBackup(manifest: Manifest): void {
    const insertBackup = this.db.prepare(`INSERT OR REPLACE INTO backups
      (name, kind, chain, status, started_at, finished_at, bytes_read, bytes_stored, chunks, chunks_new, sources)
      VALUES (@name, @kind, @chain, @status, @started_at, @finished_at, @bytes_read, @bytes_stored, @chunks, @chunks_new, @sources)`);
    const insertArtifact = this.db.prepare(`INSERT INTO artifacts (backup, id, source, kind, target, size, sha256, chunk_count, meta)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    const insertChunk = this.db.prepare('INSERT OR IGNORE INTO chunks (chain, id, size, stored_size, stored_sha256) VALUES (?, ?, ?, ?, ?)');
    const insertUse = this.db.prepare('INSERT OR IGNORE INTO backup_chunks (backup, chunk) VALUES (?, ?)');
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM artifacts WHERE backup = ?').run(manifest.name);
      this.db.prepare('DELETE FROM backup_chunks WHERE backup = ?').run(manifest.name);
      insertBackup.run({
        name: manifest.name,
        kind: manifest.kind,
        chain: manifest.chain,
        status: manifest.status,
        started_at: manifest.started_at,
        finished_at: manifest.finished_at,
        bytes_read: manifest.stats.bytes_read,
        bytes_stored: manifest.stats.bytes_stored,
        chunks: manifest.stats.chunks,
        chunks_new: manifest.stats.chunks_new,
        sources: JSON.stringify(manifest.sources),
      });
      for (const a of manifest.artifacts) {
        insertArtifact.run(manifest.name, a.id, a.source, a.kind, a.target, a.size, a.sha256, a.chunks.length, JSON.stringify(a.meta));
        for (const c of a.chunks) {
          insertChunk.run(manifest.chain, c.id, c.size, c.stored_size, c.stored_sha256);
          insertUse.run(manifest.name, c.id);
        }
      }
    })();
  }

  hasBackup(name: string): boolean {
    return this.db.prepare('SELECT 1 FROM backups WHERE name = ?').get(name) !== undefined;
  }

  /** Every backup, oldest first (a new array each call; the rows themselves are frozen and shared). */
  listBackups(): BackupRow[] {
    const rows = this.unchanged('listBackups', () =>
      (this.db.prepare('SELECT * FROM backups ORDER BY started_at, name').all() as Raw<BackupRow>[]).map((r) => Object.freeze(backupRow(r))),
    );
    return [...rows];
  }

  getBackup(name: string): (BackupRow & { artifacts: ArtifactRow[] }) | undefined {
    const row = this.db.prepare('SELECT * FROM backups WHERE name = ?').get(name) as Raw<BackupRow> | undefined;
    if (!row) return undefined;
    const artifacts = (this.db.prepare('SELECT * FROM artifacts WHERE backup = ? ORDER BY rowid').all(name) as Raw<ArtifactRow>[]).map(
      (a) => ({ ...a, meta: JSON.parse(a.meta as string) as Record<string, unknown> }) as ArtifactRow,
    );
    return { ...backupRow(row), artifacts };
  }

  /** Drops backups from the index (their chunks stay indexed until collectChain runs). */
  forgetBackup(...names: string[]): void {
    const remove = this.db.prepare('DELETE FROM backups WHERE name = ?');
    this.db.transaction(() => {
      for (const name of names) remove.run(name);
    })();
  }

  /**
   * Drops chunks found damaged or missing from the index, so that no backup dedups against
   * them again: the next backup of the chain that meets their content writes them anew.
   */
  forgetChunks(chain: string, ids: string[]): void {
    const remove = this.db.prepare('DELETE FROM chunks WHERE chain = ? AND id = ?');
    this.db.transaction(() => {
      for (const id of ids) remove.run(chain, id);
    })();
  }

  /** Drops a removed chain's chunk index. */
  forgetChain(chain: string): void {
    this.db.prepare('DELETE FROM chunks WHERE chain = ?').run(chain);
  }

  backupNamesInChain(chain: string): string[] {
    return this.db.prepare('SELECT name FROM backups WHERE chain = ? ORDER BY name').pluck().all(chain) as string[];
  }

  chains(): string[] {
    return this.db.prepare('SELECT DISTINCT chain FROM backups').pluck().all() as string[];
  }

  /** Backup runs that ended without success and whose leftovers were not cleaned yet. */
  unfinishedBackupRuns(): RunRow[] {
    const rows = this.db
      .prepare(`SELECT * FROM runs WHERE kind = 'backup' AND status IN ('interrupted', 'failed', 'stalled')
                AND (detail IS NULL OR json_extract(detail, '$.cleaned') IS NOT 1) ORDER BY id`)
      .all() as Raw<RunRow>[];
    return rows.map(runRow);
  }

  /** Whether any backup of `chain` uses the chunk (one indexed lookup: GC asks this per file). */
  chunkInUse(chain: string, id: string): boolean {
    return this.chunkUse.get(id, chain) !== undefined;
  }

  /** Drops index rows of `chain`'s chunks that no backup uses any more (after GC removed their files). */
  forgetUnusedChunks(chain: string): number {
    return this.db
      .prepare(`DELETE FROM chunks WHERE chain = ? AND NOT EXISTS (
                  SELECT 1 FROM backup_chunks bc JOIN backups b ON b.name = bc.backup WHERE bc.chunk = chunks.id AND b.chain = chunks.chain)`)
      .run(chain).changes;
  }

  backupNames(): string[] {
    return this.db.prepare('SELECT name FROM backups ORDER BY name').pluck().all() as string[];
  }

  /** Forgets every backup, artifact and chunk row (the run history stays): before a rebuild. */
  clearIndex(): void {
    this.db.transaction(() => {
      this.db.exec('DELETE FROM backup_chunks; DELETE FROM artifacts; DELETE FROM backups; DELETE FROM chunks;');
    })();
  }

  /**
   * Runs left `running` by a process that no longer exists (killed, crashed, or its boot
   * ended) become `interrupted`. Returns them, so their leftovers can be cleaned.
   */
  markInterruptedRuns(isAlive: (run: ProcessIdentity & { host: string }) => boolean): RunRow[] {
    const running = (this.db.prepare("SELECT * FROM runs WHERE status = 'running'").all() as Raw<RunRow>[]).filter(
      (r) => !isAlive({ pid: r.pid, host: r.host, ...(r.boot_id ? { boot_id: r.boot_id } : {}), ...(r.start_time ? { start_time: r.start_time } : {}) }),
    );
    const mark = this.db.prepare("UPDATE runs SET status = 'interrupted', finished_at = ?, error = 'the process ended without finishing this run (killed or crashed)' WHERE id = ?");
    this.db.transaction(() => {
      for (const run of running) mark.run(new Date().toISOString(), run.id);
    })();
    return running.map((r) => ({ ...runRow(r), status: 'interrupted' }));
  }

  /** Merges facts learnt while a run is under way (its chain, its backup name) into its detail. */
  updateRunDetail(id: number, detail: Record<string, unknown>): void {
    const current = this.db.prepare('SELECT detail FROM runs WHERE id = ?').pluck().get(id) as string | null;
    const merged = { ...(current ? (JSON.parse(current) as Record<string, unknown>) : {}), ...detail };
    this.db.prepare('UPDATE runs SET detail = ? WHERE id = ?').run(JSON.stringify(merged), id);
  }

  recordVerification(backup: string, level: string, ok: boolean, detail: unknown): void {
    this.db.prepare('INSERT INTO verifications (backup, level, at, ok, detail) VALUES (?, ?, ?, ?, ?)').run(backup, level, new Date().toISOString(), ok ? 1 : 0, JSON.stringify(detail));
  }

  /** The newest verification of each backup (or of those named), with its level and verdict. */
  lastVerifications(backups?: string | string[]): Map<string, { level: string; at: string; ok: boolean; detail: unknown }> {
    const names = typeof backups === 'string' ? [backups] : backups;
    const rows = this.db
      .prepare(`SELECT v.backup, v.level, v.at, v.ok, v.detail FROM verifications v
                WHERE v.id = (SELECT max(id) FROM verifications w WHERE w.backup = v.backup) ${names ? 'AND v.backup IN (SELECT value FROM json_each(?))' : ''}`)
      .all(...(names ? [JSON.stringify(names)] : [])) as { backup: string; level: string; at: string; ok: number; detail: string }[];
    return new Map(rows.map((r) => [r.backup, { level: r.level, at: r.at, ok: r.ok === 1, detail: JSON.parse(r.detail) as unknown }]));
  }

  /** Bytes of every chunk object the index knows: the repository's size on disk, near enough. */
  repositoryBytes(): number {
    return this.unchanged('repositoryBytes', () => (this.db.prepare('SELECT COALESCE(SUM(stored_size), 0) FROM chunks').pluck().get() as number) ?? 0);
  }

  /** The newest finished run of a kind (backups by their detail.kind: full or incremental). */
  lastRun(kind: string, backupKind?: string): RunRow | undefined {
    const row = (
      backupKind
        ? this.db.prepare("SELECT * FROM runs WHERE kind = ? AND status <> 'running' AND json_extract(detail, '$.kind') = ? ORDER BY id DESC LIMIT 1").get(kind, backupKind)
        : this.db.prepare("SELECT * FROM runs WHERE kind = ? AND status <> 'running' ORDER BY id DESC LIMIT 1").get(kind)
    ) as Raw<RunRow> | undefined;
    return row ? runRow(row) : undefined;
  }

  startRun(kind: string, detail: Record<string, unknown>): number {
    const me = currentProcessIdentity();
    const result = this.db
      .prepare(`INSERT INTO runs (kind, started_at, status, pid, host, boot_id, start_time, detail) VALUES (?, ?, 'running', ?, ?, ?, ?, ?)`)
      .run(kind, new Date().toISOString(), me.pid, os.hostname(), me.boot_id ?? null, me.start_time ?? null, JSON.stringify(detail));
    return Number(result.lastInsertRowid);
  }

  finishRun(
    id: number,
    outcome: { status: Exclude<RunStatus, 'running'>; error?: string; backup?: string; bytesRead?: number; bytesStored?: number; detail?: Record<string, unknown> },
  ): void {
    this.db
      .prepare(`UPDATE runs SET finished_at = ?, status = ?, error = ?, backup = COALESCE(?, backup),
        bytes_read = ?, bytes_stored = ?, detail = COALESCE(?, detail) WHERE id = ?`)
      .run(
        new Date().toISOString(),
        outcome.status,
        outcome.error ?? null,
        outcome.backup ?? null,
        outcome.bytesRead ?? 0,
        outcome.bytesStored ?? 0,
        outcome.detail ? JSON.stringify(outcome.detail) : null,
        id,
      );
    // Runs that change what the repository holds leave a point of its size for the dashboard's chart.
    const kind = this.db.prepare('SELECT kind FROM runs WHERE id = ?').pluck().get(id);
    if ((outcome.status === 'ok' || outcome.status === 'partial') && (kind === 'backup' || kind === 'prune' || kind === 'delete')) {
      this.db.prepare('INSERT INTO repository_sizes (at, bytes) VALUES (?, ?)').run(new Date().toISOString(), this.repositoryBytes());
    }
  }

  /** A fact about the catalog itself (e.g. `repository_id`), or undefined. */
  fact(key: string): string | undefined {
    return this.db.prepare('SELECT value FROM facts WHERE key = ?').pluck().get(key) as string | undefined;
  }

  setFact(key: string, value: string): void {
    this.db.prepare('INSERT INTO facts (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  /** One page of backups, newest first, with the number that match the filters in all. */
  backupPage(filter: BackupFilter, offset: number, limit: number): { total: number; backups: BackupRow[] } {
    const where = `WHERE (@status IS NULL OR status = @status) AND (@kind IS NULL OR kind = @kind)
      AND (@source IS NULL OR EXISTS (SELECT 1 FROM json_each(backups.sources) s WHERE json_extract(s.value, '$.name') = @source))`;
    const params = { status: filter.status ?? null, kind: filter.kind ?? null, source: filter.source ?? null };
    const total = this.db.prepare(`SELECT COUNT(*) FROM backups ${where}`).pluck().get(params) as number;
    const rows = this.db.prepare(`SELECT * FROM backups ${where} ORDER BY started_at DESC, name DESC LIMIT @limit OFFSET @offset`).all({ ...params, limit, offset }) as Raw<BackupRow>[];
    return { total, backups: rows.map(backupRow) };
  }

  /** One page of runs, newest first, with the number that match the filters in all. */
  runPage(filter: { kind?: string; status?: string }, offset: number, limit: number): { total: number; runs: RunRow[] } {
    const where = 'WHERE (@kind IS NULL OR kind = @kind) AND (@status IS NULL OR status = @status)';
    const params = { kind: filter.kind ?? null, status: filter.status ?? null };
    const total = this.db.prepare(`SELECT COUNT(*) FROM runs ${where}`).pluck().get(params) as number;
    const rows = this.db.prepare(`SELECT * FROM runs ${where} ORDER BY id DESC LIMIT @limit OFFSET @offset`).all({ ...params, limit, offset }) as Raw<RunRow>[];
    return { total, runs: rows.map(runRow) };
  }

  /** Every backup's size and duration, oldest first: the dashboard's charts (read-only, shared). */
  backupSeries(): { name: string; kind: string; started_at: string; finished_at: string; bytes_read: number; bytes_stored: number }[] {
    return this.unchanged('backupSeries', () => this.db.prepare('SELECT name, kind, started_at, finished_at, bytes_read, bytes_stored FROM backups ORDER BY finished_at, name').all() as ReturnType<Catalog['backupSeries']>);
  }

  /** The repository's size after each backup, prune and delete, oldest first. */
  repositorySizes(): { at: string; bytes: number }[] {
    return this.db.prepare('SELECT at, bytes FROM repository_sizes ORDER BY at').all() as { at: string; bytes: number }[];
  }

  listRuns(limit = 50): RunRow[] {
    return (this.db.prepare('SELECT * FROM runs ORDER BY id DESC LIMIT ?').all(limit) as Raw<RunRow>[]).map(runRow);
  }
}
