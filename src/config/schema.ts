/**
 * The configuration schema: the single source of truth for every key, its default, its
 * format and its documentation (`stackback config schema` prints it; the README's config
 * reference is generated from it). List-valued sections (sources.postgres, remotes) have an
 * item schema of their own, validated element by element so errors name the index.
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
  globals: { doc: 'Also dump roles and tablespaces (pg_dumpall --globals-only) once per backup.', format: 'flag', default: true },
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
    format: 'flag',
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
  one_file_system: { doc: 'Do not descend into other filesystems mounted below the paths.', format: 'flag', default: true },
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

/** retention: the policy over backups (and, with remotes[].retention, the base of each remote's). */
export const RETENTION_SCHEMA = {
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
} as const;

const OPTIONAL_RETENTION_FORMAT = { count: 'optional-count', duration: 'optional-duration' } as const;

/**
 * remotes[].retention: the keys of the top-level retention, each overriding it on that
 * remote; a key left out (or null) takes the top-level value.
 */
export const REMOTE_RETENTION_SCHEMA = Object.fromEntries(
  Object.entries(RETENTION_SCHEMA).map(([key, leaf]) => [
    key,
    { doc: `On this remote instead of retention.${key}; null or left out: the value of retention.${key}.`, format: OPTIONAL_RETENTION_FORMAT[leaf.format], default: null },
  ]),
) as { [K in keyof typeof RETENTION_SCHEMA]: { doc: string; format: string; default: null } };

/** remotes[].object_lock */
export const OBJECT_LOCK_SCHEMA = {
  mode: {
    doc: 'S3 Object Lock mode of every object written: GOVERNANCE (users with s3:BypassGovernanceRetention may still delete) or COMPLIANCE (nobody can, not even the account root, until the days are over).',
    format: ['GOVERNANCE', 'COMPLIANCE'],
    default: 'GOVERNANCE',
  },
  days: { doc: 'Days each object stays locked after it is written (1 to 36500); required.', format: 'lock-days', default: null },
} as const;

/** One entry of remotes[]: an S3-compatible bucket that receives copies of the backups. */
export const REMOTE_SCHEMA = {
  name: {
    doc: 'Unique remote name, [a-z0-9_-]+. Used by `copy --remote`, `restore --from`, `list --remote`.',
    format: 'source-name',
    default: '',
  },
  type: { doc: 'Kind of remote: s3 (any S3-compatible object storage).', format: ['s3'], default: 's3' },
  endpoint: {
    doc: 'http(s) URL of the S3 API, e.g. https://s3.eu-central-1.amazonaws.com, https://<account>.r2.cloudflarestorage.com, http://minio:9000. null: AWS\'s endpoint for region.',
    format: 's3-endpoint',
    default: null,
  },
  region: { doc: 'Region used for request signing (SigV4); must match the bucket\'s on AWS. R2 takes "auto"; most self-hosted servers us-east-1.', format: 's3-region', default: 'us-east-1' },
  bucket: { doc: 'Bucket name (S3 naming rules: 3 to 63 lower case letters, digits, "." and "-"). It must exist; stackback does not create it.', format: 's3-bucket', default: '' },
  prefix: {
    doc: 'Key prefix of everything stackback writes to the bucket, e.g. db1/ (a "/" is added when missing), so several servers can share one bucket; "": the bucket\'s root. Prefixes sharing a bucket must not nest (one must not start with another).',
    format: 's3-prefix',
    default: '',
  },
  force_path_style: {
    doc: 'Address the bucket as <endpoint>/<bucket> instead of <bucket>.<endpoint>: true for MinIO, Ceph RGW, Garage and most self-hosted servers.',
    format: 'flag',
    default: false,
  },
  credentials_file: {
    doc: 'File with the access key (AWS shared-credentials format: aws_access_key_id, aws_secret_access_key, optional aws_session_token; see the README); refused if it grants any access to others (mode 0600, or 0640 root:stackback). null: the standard AWS environment variables / credential chain. Relative paths are resolved against the config file.',
    format: 'optional-path',
    default: null,
  },
  storage_class: { doc: 'Storage class of every object written, e.g. STANDARD_IA; null: the bucket\'s default.', format: 's3-storage-class', default: null },
  upload_concurrency: { doc: 'Uploads in flight at once (1 to 64).', format: 'upload-concurrency', default: 4 },
  bandwidth_limit: { doc: 'Upload bandwidth cap in bytes per second, e.g. 20MiB (or 20MiB/s); null: no limit.', format: 'bandwidth', default: null },
  object_lock: {
    doc: 'S3 Object Lock retention set on every object written, e.g. { mode: GOVERNANCE, days: 30 } (the bucket must have Object Lock enabled; prune keeps objects still locked), or null.',
    format: 'optional-mapping',
    default: null,
    item: OBJECT_LOCK_SCHEMA,
  },
  retention: {
    doc: 'Retention policy on this remote: null for the same policy as the local repository, or a mapping of retention keys that override the top-level ones (keys left out keep the top-level value).',
    format: 'optional-mapping',
    default: null,
    item: REMOTE_RETENTION_SCHEMA,
  },
  retry_for: {
    doc: 'How long one request is retried (exponential backoff with jitter, on throttling, 5xx answers, resets and timeouts) before the copy fails with the reason; 0s: no retries.',
    format: 'timeout',
    default: '15m',
  },
  request_timeout: { doc: 'A request that makes no progress for this long is abandoned (and retried while retry_for allows).', format: 'request-timeout', default: '2m' },
  pack_size: {
    doc: 'Small chunks are packed into objects of about this size on the remote (each request costs a round trip and a fee): 1MiB to 512MiB.',
    format: 'pack-size',
    default: '16MiB',
  },
} as const;

/** The events notify.on can subscribe to (NotifyOn). */
export const NOTIFY_EVENTS = ['failure', 'partial', 'stale', 'recovered', 'success', 'start'] as const;
/** The job kinds a healthchecks-style check can follow (NotifyJobKind). */
export const NOTIFY_JOB_KINDS = ['backup', 'verify', 'copy', 'prune'] as const;

/** One entry of notify.healthchecks[]: a healthchecks.io-style check pinged around each run. */
export const HEALTHCHECK_SCHEMA = {
  name: {
    doc: 'Channel name, [a-z0-9_-]+, unique among all notify channels (healthchecks, webhooks, email); used by `notify test --channel` and in status. null: healthchecks-<position, from 1>.',
    format: 'channel-name',
    default: null,
  },
  url_file: {
    doc: 'Required. File whose first line is the check\'s ping URL (it holds the check\'s key: keep it out of the config), e.g. https://hc-ping.com/<uuid>; stackback appends /start and /fail. Also Uptime Kuma push URLs, Cronitor, self-hosted healthchecks. Relative paths are resolved against the config file.',
    format: 'required-path',
    default: null,
  },
  jobs: {
    doc: 'Job kinds whose runs ping this check: a non-empty list of backup, verify, copy, prune.',
    format: 'notify-jobs',
    default: ['backup'] as string[],
  },
} as const;

/** One entry of notify.webhooks[]: an HTTP POST of each event. */
export const WEBHOOK_SCHEMA = {
  name: {
    doc: 'Channel name, [a-z0-9_-]+, unique among all notify channels. null: webhook-<position, from 1>.',
    format: 'channel-name',
    default: null,
  },
  url_file: {
    doc: 'Required. File whose first line is the URL events are POSTed to (it can hold a token: keep it out of the config). Relative paths are resolved against the config file.',
    format: 'required-path',
    default: null,
  },
  format: {
    doc: 'Body of each POST: json (stackback\'s event document), ntfy (a ntfy.sh message: title, priority, tags), slack (an incoming-webhook message; Mattermost and Rocket.Chat take it too).',
    format: ['json', 'ntfy', 'slack'],
    default: 'json',
  },
  headers_file: {
    doc: 'File of extra request headers, one "Name: value" per line (e.g. Authorization: Bearer …), or null. Relative paths are resolved against the config file.',
    format: 'optional-path',
    default: null,
  },
} as const;

/** notify.email.smtp */
export const SMTP_SCHEMA = {
  host: { doc: 'Required. Host name or address of the SMTP server.', format: 'host-name', default: '' },
  port: { doc: 'SMTP port. null: 587 (submission, STARTTLS), or 465 when tls is true.', format: 'optional-port', default: null },
  starttls: { doc: 'Require STARTTLS (the connection is refused if the server does not offer it). Cannot be combined with tls.', format: 'flag', default: true },
  tls: { doc: 'Implicit TLS from the first byte (SMTPS, usually port 465) instead of STARTTLS; set starttls: false with it.', format: 'flag', default: false },
  user: { doc: 'User name to authenticate as, or null for no authentication (then password_file must be null too).', format: 'optional-string', default: null },
  password_file: {
    doc: 'File whose first line is the SMTP password (mode 0600, or 0640 root:stackback); required with user. The password never reaches logs. Relative paths are resolved against the config file.',
    format: 'optional-path',
    default: null,
  },
} as const;

/** notify.email: alerts by mail (nodemailer). */
export const EMAIL_SCHEMA = {
  name: { doc: 'Channel name, [a-z0-9_-]+, unique among all notify channels.', format: 'channel-name', default: 'email' },
  smtp: SMTP_SCHEMA,
  from: { doc: 'Required. Sender address, e.g. backup@example.com or "stackback <backup@example.com>".', format: 'email-address', default: null },
  to: { doc: 'Required. Non-empty list of recipient addresses.', format: 'email-list', default: [] as string[] },
} as const;

export const SCHEMA = {
  repository: {
    path: {
      doc: 'Folder of the backup repository (chunks, manifests, locks). Relative paths are resolved against the config file.',
      format: 'nonempty-string',
      default: '/var/lib/stackback/repo',
    },
    compression_level: {
      doc: 'zstd level for chunks written from now on (1 fastest … 19 smallest). On pg_dump output level 1 stores within 0.3% of level 2 for 75% of its CPU, and is smaller than 3 (per 1 MiB chunk).',
      format: 'zstd-level',
      default: 1,
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
    copy: {
      doc: 'When to copy new backups to every remote: "after_backup" (after each successful backup), a cron expression, or "off". Without remotes it does nothing.',
      format: 'prune-schedule',
      default: 'after_backup',
    },
    catch_up: {
      doc: 'On daemon start, take a full backup at once if the last successful full is older than the full schedule\'s period (the server was down when it was due).',
      format: 'flag',
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
  retention: RETENTION_SCHEMA,
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
  remotes: {
    doc: 'S3-compatible buckets every backup is also copied to (see the item keys below); [] for none.',
    format: 'object-list',
    default: [] as unknown[],
    item: REMOTE_SCHEMA,
  },
  notify: {
    on: {
      doc: 'Events sent to the webhooks, email and command: failure and partial (a backup, verify/drill, copy or prune failed or ended partial), stale (no recent successful backup, or a remote behind), recovered (the next success after a failure, or staleness ended), success, start. Healthchecks are pinged on every run whatever this says.',
      format: 'notify-events',
      default: ['failure', 'partial', 'stale', 'recovered'] as string[],
    },
    repeat: {
      doc: 'One incident, one message: while a job kind keeps failing (or stays stale), a reminder is sent this often; "off" or 0s: never remind. At most 24d.',
      format: 'repeat-interval',
      default: '24h',
    },
    retry_for: {
      doc: 'How long the delivery of one message to one channel is retried (backoff) before it is logged as failed and shown in status; 0s: no retries. Delivery never blocks or fails a job.',
      format: 'timeout',
      default: '10m',
    },
    healthchecks: {
      doc: 'healthchecks.io-style checks pinged with /start, success and /fail around each run of their job kinds, with the end of the run\'s log as the body (see the item keys below); [] for none.',
      format: 'object-list',
      default: [] as unknown[],
      item: HEALTHCHECK_SCHEMA,
    },
    webhooks: {
      doc: 'HTTP endpoints each event is POSTed to (see the item keys below); [] for none.',
      format: 'object-list',
      default: [] as unknown[],
      item: WEBHOOK_SCHEMA,
    },
    email: {
      doc: 'Alerts by email through an SMTP server: null, or a mapping with the keys below.',
      format: 'optional-mapping',
      default: null,
      item: EMAIL_SCHEMA,
    },
    command: {
      doc: 'A program run for each event, with the event document as JSON on its stdin: null, or a list [program, arg, …] whose program is an absolute path. No shell is involved.',
      format: 'notify-command',
      default: null,
    },
  },
  metrics: {
    listen: {
      doc: 'Also serve Prometheus metrics (GET /metrics) on this TCP address, "host:port" (e.g. 127.0.0.1:9464, [::1]:9464), or null for the control socket only. A host other than loopback (127.0.0.0/8, ::1, localhost) needs allow_non_loopback: true.',
      format: 'listen-address',
      default: null,
    },
    allow_non_loopback: {
      doc: 'Allow metrics.listen on an address other than loopback (the metrics are then readable by anyone who can reach it; there is no authentication).',
      format: 'flag',
      default: false,
    },
    textfile: {
      doc: 'Absolute path of a *.prom file rewritten atomically after every job, for node_exporter\'s textfile collector (its --collector.textfile.directory), or null.',
      format: 'prom-textfile',
      default: null,
    },
  },
  web: {
    listen: {
      doc: 'Serve the web dashboard on this TCP address, "host:port" (e.g. 127.0.0.1:8750, [::1]:8750), or null (off). Any address may be set, loopback or not; one reachable from other machines should sit behind a TLS proxy (the token and session cookie travel with every request).',
      format: 'listen-address',
      default: null,
    },
    token_file: {
      doc: 'File holding the dashboard\'s access token (sign-in, or `Authorization: Bearer` for scripts); mode 0600 (or 0640 with group stackback). Created with a random token on first start when missing and its folder is writable; `stackback web token` creates it otherwise. Relative paths are resolved against the config file.',
      format: 'nonempty-string',
      default: '/etc/stackback/web.token',
    },
    allow_actions: {
      doc: 'Let the dashboard start backups, verifies, drills and copies (each request with its CSRF token). Restores are never started from the page: it shows the CLI command instead.',
      format: 'flag',
      default: false,
    },
    session_ttl: {
      doc: 'How long a dashboard sign-in lasts before the token is asked for again.',
      format: 'timeout',
      default: '12h',
    },
  },
} as const;
