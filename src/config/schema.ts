/**
 * The configuration schema: the single source of truth for every key, its default, its
 * format and its documentation (`stackback config schema` prints it; the README's config
 * reference is generated from it). List-valued sections (sources.postgres) have an item
 * schema of their own, validated element by element so errors name the index.
 */

export const POSTGRES_SOURCE_SCHEMA = {
  name: {
    doc: 'Unique source name, [a-z0-9_-]+. Used in backup manifests and in `restore --source`.',
    format: 'source-name',
    default: '',
  },
  host: {
    doc: 'Socket folder (absolute path) or host name of the PostgreSQL server.',
    format: 'nonempty-string',
    default: '/var/run/postgresql',
  },
  port: { doc: 'Server port.', format: 'port-number', default: 5432 },
  user: { doc: 'Role to connect as; needs read access to everything dumped (usually a superuser).', format: 'nonempty-string', default: 'postgres' },
  password_file: {
    doc: 'File whose first line is the password, or null for socket/peer/trust auth or ~/.pgpass. Passwords never go on argv or into logs.',
    format: 'optional-path',
    default: null,
  },
  databases: {
    doc: 'Databases to back up: a list of names, or "all" for every database that accepts connections and is not a template.',
    format: 'name-list',
    default: 'all',
  },
  globals: { doc: 'Also dump roles and tablespaces (pg_dumpall --globals-only) once per backup.', format: Boolean, default: true },
  bin_dir: {
    doc: 'Folder holding pg_dump/pg_restore/pg_dumpall/psql. Null: pick /usr/lib/postgresql/<server major>/bin (or newer).',
    format: 'optional-path',
    default: null,
  },
  maintenance_db: {
    doc: 'Database to connect to for cluster-level work (listing databases, CREATE/ALTER/DROP DATABASE during restore).',
    format: 'nonempty-string',
    default: 'postgres',
  },
  exact_count_max_size: {
    doc: 'Tables up to this size get exact row counts in the manifest; larger ones get the planner estimate, marked as such.',
    format: 'size',
    default: '128MiB',
  },
  restore_copy_sessions: {
    doc: 'Restores load the rows of a big table through this many COPY sessions at once (pg_restore\'s own plus psql ones, 1 to 16), which takes the server about as many cores; 1 turns this off. Drills always use 1.',
    format: 'session-count',
    default: 2,
  },
  restore_copy_split_after: {
    doc: 'A table\'s rows are shared out between the restore_copy_sessions, in turns of 256 KiB, once this much of them has gone to pg_restore (so small tables stay in one session). At least 4MiB: smaller values count as 4MiB.',
    format: 'size',
    default: '64MiB',
  },
} as const;

export const QDRANT_SOURCE_SCHEMA = {
  name: {
    doc: 'Unique source name, [a-z0-9_-]+. Used in backup manifests and in `restore --source`.',
    format: 'source-name',
    default: '',
  },
  mode: {
    doc: 'api: collection snapshots through the REST API (Qdrant keeps running). storage_dir: a tar of a stopped Qdrant\'s storage folder (see pre_command/post_command).',
    format: ['api', 'storage_dir'],
    default: 'api',
  },
  url: { doc: 'Qdrant REST endpoint (mode api). Back up every node of a cluster directly, not through a load balancer.', format: 'http-url', default: 'http://127.0.0.1:6333' },
  api_key_file: {
    doc: 'File whose first line is the API key (needs manage access to restore), or null. The key never reaches logs, argv or status output.',
    format: 'optional-path',
    default: null,
  },
  collections: { doc: 'Collections to back up: a list of names, or "all".', format: 'name-list', default: 'all' },
  timeout: { doc: 'Timeout of each API call; snapshot creation of a big collection can take long.', format: 'timeout', default: '30m' },
  keep_server_snapshots: {
    doc: 'Keep the snapshot on the Qdrant server after it was copied into the repository (it is deleted by default: snapshots use server disk).',
    format: Boolean,
    default: false,
  },
  storage_path: { doc: 'Mode storage_dir: the Qdrant storage folder to archive and restore.', format: 'optional-path', default: null },
  pre_command: {
    doc: 'Mode storage_dir: shell command run before reading or replacing the storage folder (e.g. `systemctl stop qdrant`).',
    format: 'optional-string',
    default: null,
  },
  post_command: {
    doc: 'Mode storage_dir: shell command run afterwards, also when the backup or restore failed or was cancelled (e.g. `systemctl start qdrant`).',
    format: 'optional-string',
    default: null,
  },
  hook_timeout: {
    doc: 'Mode storage_dir: pre_command and post_command are stopped (their whole process group) after this long and the job fails. A cancelled job stops its pre_command at once.',
    format: 'timeout',
    default: '10m',
  },
} as const;

export const FILES_SOURCE_SCHEMA = {
  name: {
    doc: 'Unique source name, [a-z0-9_-]+. Used in backup manifests and in `restore --source`.',
    format: 'source-name',
    default: '',
  },
  paths: { doc: 'Absolute paths to back up (files or folders).', format: 'path-list', default: [] as string[] },
  exclude: { doc: 'Glob patterns matched against absolute paths, e.g. "**/*.tmp", "**/cache/**".', format: 'string-list', default: [] as string[] },
  one_file_system: { doc: 'Do not descend into other filesystems mounted below the paths.', format: Boolean, default: true },
} as const;

/** drill.postgres_server: where drills restore databases, when not on the source server. */
export const DRILL_SERVER_SCHEMA = {
  host: POSTGRES_SOURCE_SCHEMA.host,
  port: POSTGRES_SOURCE_SCHEMA.port,
  user: POSTGRES_SOURCE_SCHEMA.user,
  password_file: POSTGRES_SOURCE_SCHEMA.password_file,
  bin_dir: POSTGRES_SOURCE_SCHEMA.bin_dir,
  maintenance_db: POSTGRES_SOURCE_SCHEMA.maintenance_db,
} as const;

/** Every kind of source and the schema of one of its entries: sources.<kind>[]. */
export const SOURCE_SCHEMAS = { postgres: POSTGRES_SOURCE_SCHEMA, qdrant: QDRANT_SOURCE_SCHEMA, files: FILES_SOURCE_SCHEMA } as const;

export const SCHEMA = {
  repository: {
    path: {
      doc: 'Folder of the backup repository (chunks, manifests, locks). Relative paths are resolved against the config file.',
      format: 'nonempty-string',
      default: '/var/lib/stackback/repo',
    },
    compression_level: {
      doc: 'zstd level for chunks written from now on (1 fastest … 19 smallest). On pg_dump output level 2 measured as small as 3 at 60% of its CPU.',
      format: 'zstd-level',
      default: 2,
    },
    encryption: {
      doc: 'Encryption of a new repository (set when it is made; an existing repository keeps its own): aes-256-gcm encrypts every object, with chunk ids keyed so nothing about the data shows; none keeps it in plain text (format 1).',
      format: ['aes-256-gcm', 'none'],
      default: 'aes-256-gcm',
    },
    key_file: {
      doc: 'The repository key (made by `stackback init` if absent, never overwritten); mode 0600 or stricter, or it is refused. Without it the backups cannot be read: keep a copy elsewhere (`stackback key export`). Relative paths are resolved against the config file.',
      format: 'nonempty-string',
      default: '/etc/stackback/repo.key',
    },
    passphrase_file: {
      doc: 'File whose first line is a passphrase that wraps the key in key_file (scrypt), instead of key_file holding the key itself; mode 0600 or stricter. null: no passphrase.',
      format: 'optional-path',
      default: null,
    },
  },
  catalog: {
    path: {
      doc: 'SQLite catalog (backups, artifacts, chunks, run history). It is an index of the repository and can be rebuilt from it.',
      format: 'nonempty-string',
      default: '/var/lib/stackback/catalog.db',
    },
  },
  work_dir: {
    doc: 'Scratch folder for temporary files and the named pipes restores feed pg_restore through (kept out of /tmp, which may be small or in memory); must be local.',
    format: 'nonempty-string',
    default: '/var/lib/stackback/tmp',
  },
  lock_timeout: {
    doc: 'How long a command waits for the repository writer lock held by another process before giving up.',
    format: 'duration',
    default: '0s',
  },
  stall_timeout: {
    doc: 'A backup that gets no bytes from its source for this long (a pg_dump stuck behind a lock, a hung server) is aborted and recorded as stalled.',
    format: 'timeout',
    default: '30m',
  },
  timezone: {
    doc: 'IANA time zone of schedules and of the retention buckets (hour, day, week, month, year).',
    format: 'timezone',
    default: 'UTC',
  },
  restore: {
    reserve_free: {
      doc: 'Free space a restore must leave on its target (database server data folder, target folder) beyond what it needs; the preflight refuses otherwise.',
      format: 'size',
      default: '256MiB',
    },
  },
  drill: {
    postgres_database_prefix: {
      doc: 'Restore drills restore each database into a scratch database named <prefix><db>_<stamp> on the source server, dropped afterwards.',
      format: 'nonempty-string',
      default: 'stackback_drill_',
    },
    qdrant_collection_prefix: { doc: 'Scratch collections of Qdrant drills are named <prefix><collection>_<stamp>.', format: 'nonempty-string', default: 'stackback_drill_' },
    postgres_server: {
      doc: 'Drill PostgreSQL restores on this server instead of the source server: null, or a mapping with the keys below.',
      format: 'optional-mapping',
      default: null,
      item: DRILL_SERVER_SCHEMA,
    },
  },
  schedule: {
    full: { doc: 'When to take a full backup (a new chain): a cron expression in `timezone` (a seconds field may lead), or "off".', format: 'schedule', default: '0 3 * * 0' },
    incremental: { doc: 'When to take an incremental backup, or "off".', format: 'schedule', default: '0 */6 * * *' },
    verify: { doc: 'When to verify every backup (verify --all at verify_level), or "off".', format: 'schedule', default: '30 4 * * *' },
    verify_level: { doc: 'Level of the scheduled verify: quick, deep, or drill (restores every artifact into scratch targets and compares).', format: ['quick', 'deep', 'drill'], default: 'quick' },
    prune: { doc: 'When to apply the retention policy: "after_backup" (after each scheduled backup), a cron expression, or "off".', format: 'prune-schedule', default: 'after_backup' },
    catch_up: {
      doc: 'On daemon start, take a full backup at once if the last successful full is older than the full schedule\'s period (the server was down when it was due).',
      format: Boolean,
      default: true,
    },
  },
  control: {
    socket: {
      doc: 'Read-only Unix socket of the control channel (HTTP/1.1, JSON): status, backups, jobs and their progress. Routes that change anything answer 403 here.',
      format: 'nonempty-string',
      default: '/run/stackback/stackback.sock',
    },
    socket_mode: { doc: 'File mode of the read-only socket: who may watch the daemon. Modes writable by others (o+w) are refused.', format: 'socket-mode', default: '0660' },
    socket_group: { doc: 'Group of the read-only socket (name or number), or null for the daemon\'s own group.', format: 'optional-string', default: null },
    admin_socket: {
      doc: 'Admin Unix socket of the control channel: every route, including backup, restore, verify, delete, retention, job cancel and config reload.',
      format: 'nonempty-string',
      default: '/run/stackback/admin.sock',
    },
    admin_socket_mode: { doc: 'File mode of the admin socket: who may change backups and restore over live data. Modes writable by others (o+w) are refused.', format: 'socket-mode', default: '0600' },
    admin_socket_group: { doc: 'Group of the admin socket (name or number), or null for the daemon\'s own group.', format: 'optional-string', default: null },
    max_connections: {
      doc: 'Open connections each socket serves at once; more are answered 503 with Retry-After (and beyond twice as many, closed unanswered).',
      format: 'positive-count',
      default: 64,
    },
    max_queued_jobs: {
      doc: 'Jobs asked for through the control channel that may wait in the queue; more are answered 429 (scheduled jobs are always queued).',
      format: 'positive-count',
      default: 16,
    },
  },
  retention: {
    keep_last: { doc: 'Keep the N newest successful backups.', format: 'count', default: 3 },
    keep_hourly: { doc: 'Keep the newest successful backup of each of the last N hours that have one.', format: 'count', default: 24 },
    keep_daily: { doc: 'Keep the newest successful backup of each of the last N days that have one.', format: 'count', default: 7 },
    keep_weekly: { doc: 'Keep the newest successful backup of each of the last N ISO weeks that have one.', format: 'count', default: 4 },
    keep_monthly: { doc: 'Keep the newest successful backup of each of the last N months that have one.', format: 'count', default: 12 },
    keep_yearly: { doc: 'Keep the newest successful backup of each of the last N years that have one.', format: 'count', default: 0 },
    keep_within: { doc: 'Keep every successful backup younger than this, counted back from the newest backup (as restic does).', format: 'duration', default: '2d' },
    keep_full: { doc: 'Always keep the N newest successful full backups.', format: 'count', default: 2 },
    keep_failed_days: { doc: 'Partial backups are removed once older than this many days (they never count toward the rules above).', format: 'count', default: 7 },
    pre_restore_days: {
      doc: 'Safety copies made by restores are dropped once older than this many days: <db>_pre_restore_<stamp> databases on the PostgreSQL servers and prerestore-* backups.',
      format: 'count',
      default: 7,
    },
    gc_grace: {
      doc: 'Unreferenced chunks younger than this are left for a later prune: a second guard (after the writer lock) for anything still being written.',
      format: 'duration',
      default: '1h',
    },
  },
  log: {
    level: {
      doc: 'Log level.',
      format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
    },
  },
  sources: {
    postgres: {
      doc: 'PostgreSQL servers to back up (see the item keys below).',
      format: 'object-list',
      default: [] as unknown[],
      item: POSTGRES_SOURCE_SCHEMA,
    },
    qdrant: {
      doc: 'Qdrant servers to back up (see the item keys below).',
      format: 'object-list',
      default: [] as unknown[],
      item: QDRANT_SOURCE_SCHEMA,
    },
    files: {
      doc: 'Sets of plain files to back up (see the item keys below).',
      format: 'object-list',
      default: [] as unknown[],
      item: FILES_SOURCE_SCHEMA,
    },
  },
} as const;
