/**
 * Numbered catalog migrations. Each runs once, in order, inside a transaction; the
 * catalog's `user_version` records how many have run. Append only: never edit a
 * migration that has shipped.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: backups, their artifacts, the chunk index per chain, and the run history.
  `
  CREATE TABLE backups (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('full', 'incremental')),
    chain         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('ok', 'partial')),
    started_at    TEXT NOT NULL,
    finished_at   TEXT NOT NULL,
    bytes_read    INTEGER NOT NULL,
    bytes_stored  INTEGER NOT NULL,
    chunks        INTEGER NOT NULL,
    chunks_new    INTEGER NOT NULL,
    sources       TEXT NOT NULL          -- JSON: [{name, kind, status, error?}]
  );
  CREATE INDEX backups_chain ON backups (chain);

  CREATE TABLE artifacts (
    backup        TEXT NOT NULL REFERENCES backups (name) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    source        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    target        TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    chunk_count   INTEGER NOT NULL,
    meta          TEXT NOT NULL,         -- JSON, as the source reported it
    PRIMARY KEY (backup, id)
  );

  CREATE TABLE chunks (
    chain         TEXT NOT NULL,
    id            TEXT NOT NULL,
    size          INTEGER NOT NULL,
    stored_size   INTEGER NOT NULL,
    stored_sha256 TEXT NOT NULL,
    PRIMARY KEY (chain, id)
  ) WITHOUT ROWID;

  -- Which chunks each backup uses: lets garbage collection find unreferenced chunks as a
  -- set operation in SQLite instead of loading every manifest's chunk list.
  CREATE TABLE backup_chunks (
    backup        TEXT NOT NULL REFERENCES backups (name) ON DELETE CASCADE,
    chunk         TEXT NOT NULL,
    PRIMARY KEY (backup, chunk)
  ) WITHOUT ROWID;
  CREATE INDEX backup_chunks_chunk ON backup_chunks (chunk);

  CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,         -- backup | restore | verify | delete
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL CHECK (status IN ('running', 'ok', 'partial', 'failed', 'interrupted', 'stalled')),
    error         TEXT,
    backup        TEXT,
    bytes_read    INTEGER NOT NULL DEFAULT 0,
    bytes_stored  INTEGER NOT NULL DEFAULT 0,
    pid           INTEGER NOT NULL,
    host          TEXT NOT NULL,
    detail        TEXT                   -- JSON: command options, per-artifact results
  );
  CREATE INDEX runs_started ON runs (started_at);
  `,
  // 2: the verdict of every verification of a backup (quick, deep, drill), for list/show/status.
  `
  CREATE TABLE verifications (
    id            INTEGER PRIMARY KEY,
    backup        TEXT NOT NULL,
    level         TEXT NOT NULL CHECK (level IN ('quick', 'deep', 'drill')),
    at            TEXT NOT NULL,
    ok            INTEGER NOT NULL,
    detail        TEXT NOT NULL          -- JSON: per-artifact results, durations, differences
  );
  CREATE INDEX verifications_backup ON verifications (backup, id);
  `,
  // 3: who ran each run beyond its pid (a pid is reused after a reboot), and the catalog's
  // own facts, such as the id of the repository it indexes.
  `
  ALTER TABLE runs ADD COLUMN boot_id TEXT;
  ALTER TABLE runs ADD COLUMN start_time TEXT;
  CREATE TABLE facts (
    key           TEXT PRIMARY KEY,
    value         TEXT NOT NULL
  );
  `,
  // 4: what each remote (off-site copy) holds: its packs, where each chunk sits in them (a
  // cache of the packs' own indexes, reconciled with the bucket before use), and its backups.
  `
  CREATE TABLE remote_packs (
    remote        TEXT NOT NULL,
    chain         TEXT NOT NULL,
    pack          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    PRIMARY KEY (remote, chain, pack)
  ) WITHOUT ROWID;
  CREATE TABLE remote_chunks (
    remote        TEXT NOT NULL,
    chain         TEXT NOT NULL,
    id            TEXT NOT NULL,
    pack          TEXT NOT NULL,
    offset        INTEGER NOT NULL,
    length        INTEGER NOT NULL,
    PRIMARY KEY (remote, chain, id)
  ) WITHOUT ROWID;
  CREATE INDEX remote_chunks_pack ON remote_chunks (remote, chain, pack);
  CREATE TABLE remote_backups (
    remote        TEXT NOT NULL,
    backup        TEXT NOT NULL,
    seen_at       TEXT NOT NULL,         -- when this machine copied it there or first listed it
    PRIMARY KEY (remote, backup)
  ) WITHOUT ROWID;
  -- Backups on a remote that a verify found damaged there: the next copy sends their lost chunks again.
  CREATE TABLE remote_repairs (
    remote        TEXT NOT NULL,
    backup        TEXT NOT NULL,
    PRIMARY KEY (remote, backup)
  ) WITHOUT ROWID;
  `,
  // 5: the repository's size after every backup, prune and delete, for the dashboard's chart
  // (its first point: the size when this migration ran).
  `
  CREATE TABLE repository_sizes (
    at            TEXT NOT NULL,
    bytes         INTEGER NOT NULL
  );
  CREATE INDEX repository_sizes_at ON repository_sizes (at);
  INSERT INTO repository_sizes (at, bytes)
    SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), SUM(stored_size) FROM chunks HAVING COUNT(*) > 0;
  CREATE INDEX runs_kind ON runs (kind, id);
  `,
];
