import type Database from 'better-sqlite3';
import type { PackEntry, PackLocation } from '../repository/storage/packs.ts';
import type { PackIndexStore } from '../repository/storage/remote.ts';

/** One copy run's outcome for one remote: when it ended, and its error when it failed there. */
export interface CopyOutcome {
  at: string;
  ok: boolean;
  error: string | null;
}

/**
 * The catalog's knowledge of one remote (migration 4): its packs and chunk locations — the
 * PackIndexStore a RemoteStorage reconciles with the bucket before reading — and which
 * backups are there, for `status`, `list` and the copy's "what is missing".
 */
export class RemoteCatalog implements PackIndexStore {
  readonly remote: string;
  private readonly db: Database.Database;
  private readonly locateChunk: Database.Statement<[string, string, string], PackLocation>;
  private readonly insertChunk: Database.Statement<[string, string, string, string, number, number]>;
  private readonly packSizeOf: Database.Statement<[string, string, string], number>;

  constructor(db: Database.Database, remote: string) {
    this.db = db;
    this.remote = remote;
    this.locateChunk = db.prepare('SELECT pack, offset, length FROM remote_chunks WHERE remote = ? AND chain = ? AND id = ?');
    this.packSizeOf = db.prepare<[string, string, string], number>('SELECT size FROM remote_packs WHERE remote = ? AND chain = ? AND pack = ?').pluck();
    this.insertChunk = db.prepare('INSERT OR IGNORE INTO remote_chunks (remote, chain, id, pack, offset, length) VALUES (?, ?, ?, ?, ?, ?)');
  }

  packs(chain: string): Map<string, number> {
    const rows = this.db.prepare('SELECT pack, size FROM remote_packs WHERE remote = ? AND chain = ?').all(this.remote, chain) as { pack: string; size: number }[];
    return new Map(rows.map((r) => [r.pack, r.size]));
  }

  packSize(chain: string, packId: string): number | undefined {
    return this.packSizeOf.get(this.remote, chain, packId);
  }

  addPack(chain: string, packId: string, size: number, entries: PackEntry[]): void {
    this.db.transaction(() => {
      this.db.prepare('INSERT OR REPLACE INTO remote_packs (remote, chain, pack, size) VALUES (?, ?, ?, ?)').run(this.remote, chain, packId, size);
      for (const e of entries) this.insertChunk.run(this.remote, chain, e.id, packId, e.offset, e.length);
    })();
  }

  forgetPack(chain: string, packId: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM remote_packs WHERE remote = ? AND chain = ? AND pack = ?').run(this.remote, chain, packId);
      this.db.prepare('DELETE FROM remote_chunks WHERE remote = ? AND chain = ? AND pack = ?').run(this.remote, chain, packId);
    })();
  }

  locate(chain: string, id: string): PackLocation | undefined {
    return this.locateChunk.get(this.remote, chain, id);
  }

  chunkIds(chain: string): Iterable<string> {
    return this.db.prepare('SELECT id FROM remote_chunks WHERE remote = ? AND chain = ?').pluck().iterate(this.remote, chain) as Iterable<string>;
  }

  packEntries(chain: string, packId: string): PackEntry[] {
    return this.db.prepare('SELECT id, offset, length FROM remote_chunks WHERE remote = ? AND chain = ? AND pack = ? ORDER BY offset').all(this.remote, chain, packId) as PackEntry[];
  }

  /** Forgets everything about the remote's packs (its repository was replaced). */
  forgetAll(): void {
    this.db.transaction(() => {
      for (const table of ['remote_packs', 'remote_chunks', 'remote_backups', 'remote_repairs']) this.db.prepare(`DELETE FROM ${table} WHERE remote = ?`).run(this.remote);
    })();
  }

  /** The backups on the remote, by name, with when this machine first saw them there. */
  backups(): Map<string, string> {
    const rows = this.db.prepare('SELECT backup, seen_at FROM remote_backups WHERE remote = ?').all(this.remote) as { backup: string; seen_at: string }[];
    return new Map(rows.map((r) => [r.backup, r.seen_at]));
  }

  recordBackup(name: string, at: Date): void {
    this.db.prepare('INSERT OR IGNORE INTO remote_backups (remote, backup, seen_at) VALUES (?, ?, ?)').run(this.remote, name, at.toISOString());
  }

  /** Makes the remote's backup list exactly `names` (as its LIST of manifests said at `at`). */
  setBackups(names: string[], at: Date): void {
    this.db.transaction(() => {
      const keep = new Set(names);
      for (const name of this.backups().keys()) if (!keep.has(name)) this.db.prepare('DELETE FROM remote_backups WHERE remote = ? AND backup = ?').run(this.remote, name);
      for (const name of names) this.recordBackup(name, at);
    })();
  }

  /** Chunks a verify found damaged or missing on the remote: forgotten, and `backups` marked for the next copy to repair. */
  forgetDamaged(chain: string, ids: string[], backups: string[]): void {
    this.db.transaction(() => {
      for (const id of ids) this.db.prepare('DELETE FROM remote_chunks WHERE remote = ? AND chain = ? AND id = ?').run(this.remote, chain, id);
      for (const backup of backups) this.db.prepare('INSERT OR IGNORE INTO remote_repairs (remote, backup) VALUES (?, ?)').run(this.remote, backup);
    })();
  }

  /** Backups whose lost chunks the next copy sends again. */
  repairs(): string[] {
    return this.db.prepare('SELECT backup FROM remote_repairs WHERE remote = ?').pluck().all(this.remote) as string[];
  }

  repaired(backup: string): void {
    this.db.prepare('DELETE FROM remote_repairs WHERE remote = ? AND backup = ?').run(this.remote, backup);
  }

  /**
   * This remote's copies, from the runs of kind 'copy' (newest first): the newest finished
   * attempt at it and the newest one that succeeded there. A run that ended before its
   * per-remote outcome was recorded (interrupted, cancelled, no lock) failed for every remote
   * it named. Reads only.
   */
  copyOutcomes(): { attempt: CopyOutcome | null; success: CopyOutcome | null } {
    const runs = this.db
      .prepare("SELECT status, started_at, finished_at, error, detail FROM runs WHERE kind = 'copy' AND status <> 'running' AND instr(detail, ?) > 0 ORDER BY id DESC")
      .iterate(JSON.stringify(this.remote)) as Iterable<{ status: string; started_at: string; finished_at: string | null; error: string | null; detail: string }>;
    let attempt: CopyOutcome | null = null;
    for (const run of runs) {
      let entries: unknown;
      try {
        entries = (JSON.parse(run.detail) as { remotes?: unknown }).remotes;
      } catch {
        continue;
      }
      if (!Array.isArray(entries)) continue;
      const at = run.finished_at ?? run.started_at;
      let outcome: CopyOutcome | undefined;
      for (const entry of entries as unknown[]) {
        if (entry === this.remote) outcome = { at, ok: false, error: run.error ?? `the copy run ended ${run.status}` };
        else if (typeof entry === 'object' && entry !== null && (entry as { remote?: unknown }).remote === this.remote) {
          const { ok, error } = entry as { ok?: unknown; error?: unknown };
          outcome = { at, ok: ok === true, error: ok === true ? null : typeof error === 'string' ? error : (run.error ?? `the copy run ended ${run.status}`) };
        }
      }
      if (!outcome) continue;
      attempt ??= outcome;
      if (outcome.ok) return { attempt, success: outcome };
    }
    return { attempt, success: null };
  }
}
