// A year of catalog history for bench/dashboard.ts: the backups, artifacts, chunk index, runs,
// verifications and repository sizes of a daemon that made a daily full and hourly
// incrementals of one files source, verified and pruned after each backup and copied
// off-site every few minutes (to a remote the bench's config does not name: status only looks
// at configured remotes); and a sealed manifest per backup in the repository, since the
// daemon's start-up sync forgets indexed backups whose manifest is gone.
//
// Deterministic (a seeded generator, times counted back from the last full hour), so two
// runs of the bench measure the same catalog. Manifests carry no chunk lists and no chunk
// files exist: nothing the daemon does while idle or serving the dashboard reads them. The
// backup_chunks table stays empty for the same reason (only garbage collection uses it).
import { createHash } from 'node:crypto';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Catalog } from '../../src/catalog/catalog.ts';
import { CATALOG_ARTIFACT_ID } from '../../src/jobs/backup.ts';
import { type ArtifactManifest, type BackupKind, MANIFEST_FORMAT, type Manifest, type SourceOutcome, validateBackupName } from '../../src/repository/manifest.ts';
import { Repository } from '../../src/repository/repository.ts';
import { manifestKey } from '../../src/repository/storage.ts';
import { STACKBACK_VERSION } from '../../src/version.ts';

const MIB = 1024 * 1024;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The chunker's average chunk (src/repository/chunker.ts): chunks per artifact follow from its size. */
const CHUNK_BYTES = MIB;
const REMOTE = 'offsite';

export interface SeedOptions {
  catalogPath: string;
  repoPath: string;
  keyFile: string;
  /** The files source the config names (its name, and its paths: the artifacts' target). */
  source: { name: string; paths: string[] };
  backups: number;
  runs: number;
  /** Rows of repository_sizes: one per backup, from the newest back (at most `backups`). */
  repositorySizes: number;
  /** Backups end before this hour. */
  now?: Date;
  seed?: number;
}

export interface SeedSummary {
  backups: number;
  fulls: number;
  partial: number;
  artifacts: number;
  chunks: number;
  runs: number;
  runs_by_kind: Record<string, number>;
  runs_not_ok: number;
  verifications: number;
  repository_sizes: number;
  first_backup: string;
  last_backup: string;
  repository_bytes: number;
  catalog_bytes: number;
}

/** mulberry32: small, fast, and the same sequence for the same seed. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** full-20260101T000000Z, as newBackupName makes them. */
function backupName(kind: BackupKind, at: Date): string {
  return validateBackupName(`${kind === 'full' ? 'full' : 'incr'}-${at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`);
}

interface PlannedBackup {
  index: number;
  name: string;
  kind: BackupKind;
  chain: string;
  status: 'ok' | 'partial';
  started: Date;
  finished: Date;
  bytesRead: number;
  bytesStored: number;
  chunks: number;
  chunksNew: number;
  sources: SourceOutcome[];
  artifacts: Omit<ArtifactManifest, 'chunks'>[];
  error: string | null;
}

interface PlannedRun {
  kind: string;
  started: Date;
  finished: Date;
  status: 'ok' | 'partial' | 'failed';
  error: string | null;
  backup: string | null;
  bytesRead: number;
  bytesStored: number;
  detail: Record<string, unknown>;
  boot: number;
  verification?: { backup: string; level: string; ok: boolean; detail: unknown };
}

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const iso = (date: Date) => date.toISOString();
const at = (date: Date, ms: number) => new Date(date.getTime() + ms);

/** Plans the backups oldest first, one an hour: a full at 00:00 UTC (and the very first), incrementals in the other hours. */
function planBackups(options: SeedOptions, random: () => number, end: Date): PlannedBackup[] {
  const { source, backups: count } = options;
  const planned: PlannedBackup[] = [];
  let chain = '';
  for (let i = 0; i < count; i++) {
    const slot = new Date(end.getTime() - (count - 1 - i) * HOUR_MS);
    const started = at(slot, 1500 + Math.floor(random() * 3000));
    const kind: BackupKind = i === 0 || slot.getUTCHours() === 0 ? 'full' : 'incremental';
    const growth = i / count;
    // The tree grows from ~250 to ~400 MiB over the year, the catalog copy with the history.
    const tree = Math.round((250 + 150 * growth) * MIB * (0.98 + 0.04 * random()));
    const catalogBytes = Math.round((1 + 40 * growth) * MIB * (0.99 + 0.02 * random()));
    const treeChunks = Math.ceil(tree / CHUNK_BYTES);
    const catalogChunks = Math.ceil(catalogBytes / CHUNK_BYTES);
    const chunks = treeChunks + catalogChunks;
    if (kind === 'full') chain = `${started.getTime().toString(36)}-${sha(`chain ${i}`).slice(0, 8)}`;
    // Working hours change more of the tree; the catalog's pages change with every run.
    const hour = slot.getUTCHours();
    const changed = kind === 'full' ? 1 : hour >= 6 && hour < 18 ? 0.01 + 0.03 * random() : 0.001 + 0.004 * random();
    const chunksNew = kind === 'full' ? chunks : Math.max(1, Math.round(treeChunks * changed)) + Math.max(1, Math.round(catalogChunks * 0.3));
    const bytesStored = Math.round(chunksNew * CHUNK_BYTES * (0.42 + 0.06 * random()));
    const bytesRead = tree + catalogBytes;
    // A full writes every chunk (~20 MiB/s); an incremental reads and hashes everything, writes little (~60 MiB/s).
    const seconds = bytesRead / ((kind === 'full' ? 20 : 60) * MIB) * (0.8 + 0.4 * random());
    const finished = at(started, Math.round(seconds * 1000));
    // About 1% partial: a file the daemon could not read (never the newest day's).
    const partial = i < count - 24 && random() < 0.01;
    const unreadable = `/srv/docs/shared/${['ledger.xlsx', 'scan-0412.pdf', 'locked.db'][i % 3]}`;
    const outcome: SourceOutcome = partial
      ? { name: source.name, kind: 'files', status: 'ok', incomplete_artifacts: [{ id: `${source.name}/files`, errors: [`${unreadable}: EACCES: permission denied, open '${unreadable}'`] }] }
      : { name: source.name, kind: 'files', status: 'ok' };
    const name = backupName(kind, started);
    const files = Array.from({ length: 12 }, (_, f) => ({
      path: `${source.paths[0]}/${['reports', 'contracts', 'scans', 'shared'][f % 4]}/file-${f}.${['pdf', 'docx', 'xlsx'][f % 3]}`,
      type: 'File',
      size: Math.round(tree / 12),
      mode: 0o640,
      mtime: iso(at(slot, -((f + 1) * 5 + (i % 97)) * DAY_MS / 10)),
      uid: 1000,
      gid: 1000,
      user: 'docs',
      group: 'docs',
    }));
    planned.push({
      index: i,
      name,
      kind,
      chain,
      status: partial ? 'partial' : 'ok',
      started,
      finished,
      bytesRead,
      bytesStored,
      chunks,
      chunksNew,
      sources: [outcome],
      artifacts: [
        {
          id: `${source.name}/files`,
          source: source.name,
          kind: 'files_tar',
          target: source.paths.join(','),
          size: tree,
          sha256: sha(`${name} files`),
          meta: { paths: source.paths, files, file_count: files.length, warnings: [], read_errors: partial ? [`${unreadable}: EACCES: permission denied`] : [] },
        },
        { id: CATALOG_ARTIFACT_ID, source: 'stackback', kind: 'catalog', target: 'catalog', size: catalogBytes, sha256: sha(`${name} catalog`), meta: { backups: i } },
      ],
      error: partial ? `${source.name}/files incomplete: ${unreadable}: EACCES: permission denied, open '${unreadable}'` : null,
    });
  }
  return planned;
}

/**
 * The run history around the backups, per hourly slot: the backup's run, a quick verify of it
 * (deep at 03:00 UTC; in ~10% of slots none), a prune, now and then a failed backup attempt,
 * and copies to the remote spread over the hour filling up to `options.runs`.
 */
function planRuns(options: SeedOptions, random: () => number, backups: PlannedBackup[]): PlannedRun[] {
  const count = backups.length;
  const last = (i: number) => i >= count - 2;
  const boot = (date: Date) => Math.floor(date.getTime() / (30 * DAY_MS));
  const perSlot: PlannedRun[][] = backups.map((b, i) => {
    const runs: PlannedRun[] = [];
    if (!last(i) && random() < 0.02) {
      const attempt = at(b.started, -20 * 60_000);
      const diskFull = random() < 0.2;
      const error = diskFull
        ? `not enough free space for backup ${b.name}: the repository's file system has 1.2 GiB free, the backup needs about ${Math.ceil(b.bytesStored / MIB) + 2048} MiB`
        : `backup ${b.name} failed, nothing was stored:\n  ${options.source.name}: path(s) ${options.source.paths.join(', ')} of files source ${options.source.name} (${options.source.paths.join(', ')}) do not exist`;
      runs.push({
        kind: 'backup', started: attempt, finished: at(attempt, 800 + Math.floor(random() * 1500)), status: 'failed', error, backup: null, bytesRead: 0, bytesStored: 0,
        detail: { kind: b.kind, sources: [options.source.name], chain: b.chain, backup: b.name, error_code: diskFull ? 'DISK_SPACE' : 'BACKUP_FAILED', cleaned: true }, boot: boot(attempt),
      });
    }
    runs.push({
      kind: 'backup', started: at(b.started, -120), finished: at(b.finished, 40), status: b.status, error: b.error, backup: b.name, bytesRead: b.bytesRead, bytesStored: b.bytesStored,
      detail: { kind: b.kind, sources: [options.source.name], chain: b.chain, backup: b.name }, boot: boot(b.started),
    });
    let cursor = at(b.finished, 200);
    if (last(i) || random() < 0.9) {
      const level = b.started.getUTCHours() === 3 ? 'deep' : 'quick';
      const seconds = level === 'deep' ? b.bytesRead / (80 * MIB) : 0.2 + random() * 0.6;
      const damaged = !last(i) && random() < 0.003;
      const finished = at(cursor, Math.round(seconds * 1000));
      const artifacts = b.artifacts.map((a) => ({
        artifact: a.id,
        ok: !(damaged && a.kind === 'files_tar'),
        detail: damaged && a.kind === 'files_tar'
          ? `chunk ${sha(`${b.name} damaged`).slice(0, 16)}… missing (no such object in chain ${b.chain})`
          : level === 'deep'
            ? `every chunk and the artifact sha256 intact; ${a.kind === 'catalog' ? 'an SQLite database' : `files tar reads (${12 + 4} entries)`}`
            : `all ${Math.ceil(a.size / CHUNK_BYTES)} chunk(s) present with their recorded size`,
        ...(level === 'deep' ? { seconds: Math.round((seconds / 2) * 100) / 100 } : {}),
      }));
      runs.push({
        kind: 'verify', started: cursor, finished, status: damaged ? 'failed' : 'ok', error: damaged ? `damaged: ${b.name}` : null, backup: null, bytesRead: 0, bytesStored: 0,
        detail: { level, backups: 1, failed: damaged ? [b.name] : [], damaged_chunks: damaged ? 1 : 0 }, boot: boot(cursor),
        verification: { backup: b.name, level, ok: !damaged, detail: { artifacts } },
      });
      cursor = at(finished, 100);
    }
    const pruneFailed = !last(i) && random() < 0.003;
    const pruneEnd = at(cursor, pruneFailed ? 600_000 : 300 + Math.floor(random() * 900));
    runs.push({
      kind: 'prune', started: cursor, finished: pruneEnd, status: pruneFailed ? 'failed' : 'ok', backup: null, bytesRead: 0, bytesStored: 0, boot: boot(cursor),
      error: pruneFailed ? `the repository is locked by copy (pid 812 on ${os.hostname()}) and stayed so for 600 s: lock_timeout passed` : null,
      detail: pruneFailed ? {} : { removed: [], freed_bytes: 0, chains_removed: [], remotes: [{ remote: REMOTE, ok: true, removed: [], packs_removed: 0, freed_bytes: 0, locked: 0 }] },
    });
    return runs;
  });
  const fixed = perSlot.reduce((sum, runs) => sum + runs.length, 0);
  const copies = options.runs - fixed;
  if (copies < 0) throw new Error(`${options.runs} runs are too few for ${count} backups (their own runs alone are ${fixed})`);
  // The copies, spread evenly over the slots; the first of a slot takes the slot's backup off-site.
  backups.forEach((b, i) => {
    const n = Math.floor(((i + 1) * copies) / count) - Math.floor((i * copies) / count);
    const slotEnd = at(b.started, HOUR_MS - 60_000);
    let previousFailed = false;
    for (let c = 0; c < n; c++) {
      const start = new Date(Math.max(perSlot[i]!.at(-1)!.finished.getTime() + 1000, b.started.getTime() + ((c + 1) * (HOUR_MS - 120_000)) / (n + 1)));
      if (start >= slotEnd) break;
      const failed = !last(i) && random() < 0.02;
      const carries = c === 0 || previousFailed;
      const packs = carries ? Math.max(1, Math.ceil(b.bytesStored / (16 * MIB))) : 0;
      const seconds = failed ? 30 : carries ? 1 + b.bytesStored / (12 * MIB) : 0.3 + random() * 0.4;
      const error = `remote ${REMOTE}: connect ETIMEDOUT 203.0.113.24:443`;
      perSlot[i]!.push({
        kind: 'copy', started: start, finished: at(start, Math.round(seconds * 1000)), status: failed ? 'failed' : 'ok', error: failed ? error : null, backup: null, bytesRead: 0, bytesStored: 0, boot: boot(start),
        detail: { remotes: [failed ? { remote: REMOTE, ok: false, error, copied: [], bytes_sent: 0, packs_sent: 0, requests: 1 } : { remote: REMOTE, ok: true, copied: carries ? [b.name] : [], bytes_sent: carries ? b.bytesStored : 0, packs_sent: packs, requests: packs + 3 }] },
      });
      previousFailed = failed;
    }
  });
  const runs = perSlot.flat().sort((a, b) => a.started.getTime() - b.started.getTime());
  if (runs.length !== options.runs) throw new Error(`planned ${runs.length} runs, not ${options.runs}: too few minutes in an hour for the copies`);
  return runs;
}

/**
 * Fills the (fresh, initialised) catalog and the repository's manifests; the repository must
 * exist (stackback init) and its catalog must know it.
 */
export async function seedDashboardCatalog(options: SeedOptions): Promise<SeedSummary> {
  const random = generator(options.seed ?? 17);
  const now = options.now ?? new Date();
  const end = new Date(Math.floor(now.getTime() / HOUR_MS) * HOUR_MS - HOUR_MS);
  const backups = planBackups(options, random, end);
  const runs = planRuns(options, random, backups);

  // Migrations first, as every command runs them.
  new Catalog(options.catalogPath).close();
  const db = new Database(options.catalogPath);
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  const insertBackup = db.prepare(`INSERT INTO backups (name, kind, chain, status, started_at, finished_at, bytes_read, bytes_stored, chunks, chunks_new, sources)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const insertArtifact = db.prepare('INSERT INTO artifacts (backup, id, source, kind, target, size, sha256, chunk_count, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const insertChunk = db.prepare('INSERT INTO chunks (chain, id, size, stored_size, stored_sha256) VALUES (?, ?, ?, ?, ?)');
  const insertRun = db.prepare(`INSERT INTO runs (kind, started_at, finished_at, status, error, backup, bytes_read, bytes_stored, pid, host, boot_id, start_time, detail)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const insertVerification = db.prepare('INSERT INTO verifications (backup, level, at, ok, detail) VALUES (?, ?, ?, ?, ?)');
  const insertSize = db.prepare('INSERT INTO repository_sizes (at, bytes) VALUES (?, ?)');
  const host = os.hostname();
  let chunkRows = 0;
  let repositoryBytes = 0;
  const sizes: [string, number][] = [];
  db.transaction(() => {
    for (const b of backups) {
      insertBackup.run(b.name, b.kind, b.chain, b.status, iso(b.started), iso(b.finished), b.bytesRead, b.bytesStored, b.chunks, b.chunksNew, JSON.stringify(b.sources));
      for (const a of b.artifacts) insertArtifact.run(b.name, a.id, a.source, a.kind, a.target, a.size, a.sha256, Math.ceil(a.size / CHUNK_BYTES), JSON.stringify(a.meta));
      // The chunks this backup added to its chain: the index the repository's size is summed from.
      const storedEach = Math.floor(b.bytesStored / b.chunksNew);
      for (let c = 0; c < b.chunksNew; c++) {
        const id = sha(`${b.name} chunk ${c}`);
        const stored = c === 0 ? b.bytesStored - storedEach * (b.chunksNew - 1) : storedEach;
        insertChunk.run(b.chain, id, CHUNK_BYTES, stored, sha(id));
      }
      chunkRows += b.chunksNew;
      repositoryBytes += b.bytesStored;
      sizes.push([iso(at(b.finished, 45)), repositoryBytes]);
    }
    for (const r of runs) {
      const bootId = sha(`boot ${r.boot}`).replace(/^(.{8})(.{4})(.{4})(.{4})(.{12}).*$/, '$1-$2-$3-$4-$5');
      insertRun.run(r.kind, iso(r.started), iso(r.finished), r.status, r.error, r.backup, r.bytesRead, r.bytesStored, 800 + (r.boot % 90), host, bootId, String(1200 + r.boot), JSON.stringify(r.detail));
      if (r.verification) insertVerification.run(r.verification.backup, r.verification.level, iso(r.finished), r.verification.ok ? 1 : 0, JSON.stringify(r.verification.detail));
    }
    // Migration 5 left one point (an empty repository has none); the history replaces it.
    db.exec('DELETE FROM repository_sizes');
    for (const [when, bytes] of sizes.slice(-options.repositorySizes)) insertSize.run(when, bytes);
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();

  // The manifests, sealed with the repository's key as the daemon writes them (without the fsyncs).
  const repo = await Repository.open(options.repoPath, { keyFile: options.keyFile, passphraseFile: undefined });
  await mkdir(join(options.repoPath, 'manifests'), { recursive: true });
  for (const b of backups) {
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      name: b.name,
      kind: b.kind,
      chain: b.chain,
      status: b.status,
      started_at: iso(b.started),
      finished_at: iso(b.finished),
      host,
      stackback_version: STACKBACK_VERSION,
      sources: b.sources,
      artifacts: b.artifacts.map((a) => ({ ...a, chunks: [] })),
      stats: { bytes_read: b.bytesRead, bytes_stored: b.bytesStored, chunks: b.chunks, chunks_new: b.chunksNew },
    };
    const key = manifestKey(b.name);
    await writeFile(join(options.repoPath, key), repo.codec.seal('manifest', key, Buffer.from(`${JSON.stringify(manifest)}\n`)));
  }

  const runsByKind: Record<string, number> = {};
  for (const r of runs) runsByKind[r.kind] = (runsByKind[r.kind] ?? 0) + 1;
  return {
    backups: backups.length,
    fulls: backups.filter((b) => b.kind === 'full').length,
    partial: backups.filter((b) => b.status === 'partial').length,
    artifacts: backups.reduce((sum, b) => sum + b.artifacts.length, 0),
    chunks: chunkRows,
    runs: runs.length,
    runs_by_kind: runsByKind,
    runs_not_ok: runs.filter((r) => r.status !== 'ok').length,
    verifications: runs.filter((r) => r.verification).length,
    repository_sizes: Math.min(options.repositorySizes, sizes.length),
    first_backup: backups[0]!.name,
    last_backup: backups.at(-1)!.name,
    repository_bytes: repositoryBytes,
    catalog_bytes: (await stat(options.catalogPath)).size,
  };
}
