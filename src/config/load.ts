import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import convict from 'convict';
import YAML from 'yaml';
import { StackbackError } from '../errors.ts';
import { CREDENTIALS_IN_URL, isLoopbackHost, normalizeS3Prefix, parseBandwidth, parseDuration, parseListenAddress, parseSize, registerFormats } from './formats.ts';
import {
  DRILL_SERVER_SCHEMA,
  EMAIL_SCHEMA,
  HEALTHCHECK_SCHEMA,
  OBJECT_LOCK_SCHEMA,
  REMOTE_RETENTION_SCHEMA,
  REMOTE_SCHEMA,
  SCHEMA,
  SOURCE_SCHEMAS,
  WEBHOOK_SCHEMA,
} from './schema.ts';

export const DEFAULT_CONFIG_PATH = '/etc/stackback/stackback.yaml';

export interface PostgresSourceConfig {
  kind: 'postgres';
  name: string;
  host: string;
  port: number;
  user: string;
  passwordFile: string | null;
  databases: 'all' | string[];
  globals: boolean;
  binDir: string | null;
  maintenanceDb: string;
  exactCountMaxBytes: number;
  /** COPY sessions a big table's rows are loaded through on restore (1: pg_restore's alone). */
  restoreCopySessions: number;
  restoreCopySplitAfterBytes: number;
}

export interface QdrantSourceConfig {
  kind: 'qdrant';
  name: string;
  mode: 'api' | 'storage_dir';
  url: string;
  apiKeyFile: string | null;
  collections: 'all' | string[];
  timeoutMs: number;
  keepServerSnapshots: boolean;
  storagePath: string | null;
  preCommand: string | null;
  postCommand: string | null;
  hookTimeoutMs: number;
}

export interface FilesSourceConfig {
  kind: 'files';
  name: string;
  paths: string[];
  exclude: string[];
  oneFileSystem: boolean;
}

export type SourceConfig = PostgresSourceConfig | QdrantSourceConfig | FilesSourceConfig;

/** One entry of `remotes`: an S3-compatible bucket that receives copies of the backups. */
export interface RemoteConfig {
  /** [a-z0-9_-]+, unique among remotes */
  name: string;
  type: 's3';
  /** http(s) URL without a trailing slash; null: AWS's endpoint for the region */
  endpoint: string | null;
  region: string;
  bucket: string;
  /** '' or a relative path ending in '/' (db1 → db1/); no '.', '..' or empty segments */
  prefix: string;
  forcePathStyle: boolean;
  /** absolute path; null: the AWS environment / credential chain */
  credentialsFile: string | null;
  /** e.g. STANDARD_IA; null: the bucket's default */
  storageClass: string | null;
  /** 1..64 */
  uploadConcurrency: number;
  /** bytes per second; null: unlimited */
  bandwidthLimitBytes: number | null;
  objectLock: { mode: 'GOVERNANCE' | 'COMPLIANCE'; days: number } | null;
  /** the remote's policy; null: the local one (Config.retention) */
  retention: RetentionConfig | null;
  /** how long retries of one request may go on before the copy fails */
  retryForMs: number;
  /** a request with no progress for this long is abandoned (and retried) */
  requestTimeoutMs: number;
  /** 1 MiB .. 512 MiB */
  packSizeBytes: number;
}

export interface Config {
  file: string;
  repository: { path: string; compressionLevel: number; encryption: 'aes-256-gcm' | 'none'; keyFile: string; passphraseFile: string | null };
  catalog: { path: string };
  workDir: string;
  lockTimeoutMs: number;
  stallTimeoutMs: number;
  timezone: string;
  restore: { reserveFreeBytes: number };
  drill: { postgresDatabasePrefix: string; qdrantCollectionPrefix: string; postgresServer: PostgresSourceConfig | null };
  schedule: ScheduleConfig;
  control: ControlConfig;
  retention: RetentionConfig;
  log: { level: string };
  sources: SourceConfig[];
  remotes: RemoteConfig[];
  notify: NotifyConfig;
  metrics: MetricsConfig;
  web: WebConfig;
}

export type NotifyOn = 'failure' | 'partial' | 'stale' | 'recovered' | 'success' | 'start';
export type NotifyJobKind = 'backup' | 'verify' | 'copy' | 'prune';

/** One entry of notify.healthchecks: a healthchecks.io-style check. */
export interface HealthcheckConfig {
  /** unique among all channels; default healthchecks-<index+1> */
  name: string;
  /** absolute path of the file holding the ping URL */
  urlFile: string;
  /** non-empty, no duplicates */
  jobs: NotifyJobKind[];
}

/** One entry of notify.webhooks. */
export interface WebhookConfig {
  /** unique among all channels; default webhook-<index+1> */
  name: string;
  /** absolute path of the file holding the URL */
  urlFile: string;
  format: 'json' | 'ntfy' | 'slack';
  /** absolute path, or null */
  headersFile: string | null;
}

/** notify.email */
export interface EmailConfig {
  /** unique among all channels; default 'email' */
  name: string;
  /** port: 587 by default, 465 when tls; starttls and tls are never both true; user and passwordFile are both set or both null */
  smtp: { host: string; port: number; starttls: boolean; tls: boolean; user: string | null; passwordFile: string | null };
  from: string;
  /** non-empty */
  to: string[];
}

export interface NotifyConfig {
  /** no duplicates */
  on: NotifyOn[];
  /** 0: never remind */
  repeatMs: number;
  retryForMs: number;
  healthchecks: HealthcheckConfig[];
  webhooks: WebhookConfig[];
  email: EmailConfig | null;
  /** [absolute program path, arg…], run without a shell; null: none */
  command: string[] | null;
}

export interface MetricsConfig {
  /** host without IPv6 brackets; loopback unless allowNonLoopback */
  listen: { host: string; port: number } | null;
  allowNonLoopback: boolean;
  /** absolute path ending in .prom */
  textfile: string | null;
}

export interface WebConfig {
  /** host without IPv6 brackets; null: no dashboard */
  listen: { host: string; port: number } | null;
  /** absolute path */
  tokenFile: string;
  allowActions: boolean;
  sessionTtlMs: number;
}

/** The two sockets of the control channel (src/daemon/server.ts says what each serves). */
export interface ControlConfig {
  /** The read-only socket. */
  socket: string;
  socketMode: number;
  socketGroup: string | null;
  adminSocket: string;
  adminSocketMode: number;
  adminSocketGroup: string | null;
  maxConnections: number;
  maxQueuedJobs: number;
}

export interface ScheduleConfig {
  /** Cron expressions; null when "off". */
  full: string | null;
  incremental: string | null;
  verify: string | null;
  verifyLevel: 'quick' | 'deep' | 'drill';
  /** A cron expression, 'after_backup', or null when "off". */
  prune: string | null;
  /** Copies to the remotes: a cron expression, 'after_backup', or null when "off" (nothing to do without remotes). */
  copy: string | null;
  catchUp: boolean;
}

export interface RetentionConfig {
  keepLast: number;
  keepHourly: number;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
  keepYearly: number;
  keepWithinMs: number;
  keepFull: number;
  keepFailedDays: number;
  preRestoreDays: number;
  gcGraceMs: number;
}

/** A config that failed validation; `problems` holds one "key.path: what is wrong" line each. */
export class ConfigInvalidError extends StackbackError {
  readonly problems: string[];
  constructor(file: string, problems: string[]) {
    super('CONFIG_INVALID', `invalid config ${file}:\n  ${problems.join('\n  ')}`, 'fix the keys named above; `stackback config check` re-validates');
    this.problems = problems;
  }
}

const offToNull = (value: string): string | null => (value === 'off' ? null : value);

function postgresConfig(v: Record<string, unknown>, absolute: (p: string) => string): PostgresSourceConfig {
  return {
    kind: 'postgres',
    name: v.name as string,
    host: v.host as string,
    port: v.port as number,
    user: v.user as string,
    passwordFile: v.password_file === null ? null : absolute(v.password_file as string),
    databases: v.databases as 'all' | string[],
    globals: v.globals as boolean,
    binDir: v.bin_dir === null ? null : absolute(v.bin_dir as string),
    maintenanceDb: v.maintenance_db as string,
    exactCountMaxBytes: parseSize(v.exact_count_max_size)!,
    restoreCopySessions: v.restore_copy_sessions as number,
    restoreCopySplitAfterBytes: parseSize(v.restore_copy_split_after)!,
  };
}

function retentionConfig(v: Record<string, unknown>): RetentionConfig {
  return {
    keepLast: v.keep_last as number,
    keepHourly: v.keep_hourly as number,
    keepDaily: v.keep_daily as number,
    keepWeekly: v.keep_weekly as number,
    keepMonthly: v.keep_monthly as number,
    keepYearly: v.keep_yearly as number,
    keepWithinMs: parseDuration(v.keep_within)!,
    keepFull: v.keep_full as number,
    keepFailedDays: v.keep_failed_days as number,
    preRestoreDays: v.pre_restore_days as number,
    gcGraceMs: parseDuration(v.gc_grace)!,
  };
}

interface RemoteEntry {
  at: string;
  values: Record<string, unknown>;
  objectLock: Record<string, unknown> | null;
  /** the keys given (not null) in remotes[].retention, or null when it is null */
  retention: Record<string, unknown> | null;
}

const isMapping = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

// convict lets a mapping where a list belongs pass as the empty list: that would back up, or copy, nothing without a word.
const MAPPING_NOT_LIST = (key: string) => `${key}: must be a list (each entry starts with "- "), got a mapping`;

/** Validates remotes[]: each entry, its object_lock and retention mappings, unique names, no shared or nested bucket prefixes. */
function validateRemotes(raw: unknown, problems: string[]): RemoteEntry[] {
  const entries: RemoteEntry[] = [];
  if (isMapping(raw)) problems.push(MAPPING_NOT_LIST('remotes'));
  (Array.isArray(raw) ? raw : []).forEach((item: unknown, index) => {
    const at = `remotes[${index}]`;
    if (!isMapping(item)) {
      problems.push(`${at}: must be a mapping of keys`);
      return;
    }
    const section = validateSection(REMOTE_SCHEMA, item, `${at}.`);
    problems.push(...section.problems);
    const lock = isMapping(item.object_lock) ? validateSection(OBJECT_LOCK_SCHEMA, item.object_lock, `${at}.object_lock.`) : undefined;
    const retention = isMapping(item.retention) ? validateSection(REMOTE_RETENTION_SCHEMA, item.retention, `${at}.retention.`) : undefined;
    problems.push(...(lock?.problems ?? []), ...(retention?.problems ?? []));
    if (section.problems.length > 0 || (lock?.problems.length ?? 0) > 0 || (retention?.problems.length ?? 0) > 0) return;
    entries.push({
      at,
      values: section.values,
      objectLock: lock ? lock.values : null,
      retention: retention ? Object.fromEntries(Object.entries(retention.values).filter(([, v]) => v !== null)) : null,
    });
  });

  const names = new Map<string, string>();
  const places: { at: string; bucket: string; prefix: string }[] = [];
  for (const { at, values } of entries) {
    const name = values.name as string;
    const earlier = names.get(name);
    if (earlier) problems.push(`${at}.name: remote name "${name}" is already used by ${earlier}`);
    else names.set(name, at);
    // Two remotes writing under the same prefix, or one under the other's, would each prune
    // the other's objects as unused: refused. (The endpoint stands for the service; null is AWS,
    // whose bucket names are global, whatever the region.)
    const endpoint = values.endpoint === null ? 'aws' : (values.endpoint as string).replace(/\/+$/, '').toLowerCase();
    const bucket = `${endpoint} ${values.bucket as string}`;
    const prefix = normalizeS3Prefix(values.prefix as string | null);
    const clash = places.find((p) => p.bucket === bucket && (p.prefix.startsWith(prefix) || prefix.startsWith(p.prefix)));
    if (clash) {
      problems.push(
        `${at}.prefix: ${prefix === clash.prefix ? 'the same bucket and prefix as' : 'nests with the prefix of'} ${clash.at} ("${prefix}" and "${clash.prefix}" in bucket ${values.bucket as string}): each remote needs a prefix of its own that does not contain another`,
      );
    } else places.push({ at, bucket, prefix });
  }
  return entries;
}

function remoteConfig(entry: RemoteEntry, topRetention: Record<string, unknown>, absolute: (p: string) => string): RemoteConfig {
  const v = entry.values;
  return {
    name: v.name as string,
    type: v.type as 's3',
    endpoint: v.endpoint === null ? null : (v.endpoint as string).replace(/\/+$/, ''),
    region: v.region as string,
    bucket: v.bucket as string,
    prefix: normalizeS3Prefix(v.prefix as string | null),
    forcePathStyle: v.force_path_style as boolean,
    credentialsFile: v.credentials_file === null ? null : absolute(v.credentials_file as string),
    storageClass: v.storage_class as string | null,
    uploadConcurrency: v.upload_concurrency as number,
    bandwidthLimitBytes: v.bandwidth_limit === null ? null : parseBandwidth(v.bandwidth_limit)!,
    objectLock: entry.objectLock === null ? null : { mode: entry.objectLock.mode as 'GOVERNANCE' | 'COMPLIANCE', days: entry.objectLock.days as number },
    retention: entry.retention === null ? null : retentionConfig({ ...topRetention, ...entry.retention }),
    retryForMs: parseDuration(v.retry_for)!,
    requestTimeoutMs: parseDuration(v.request_timeout)!,
    packSizeBytes: parseSize(v.pack_size)!,
  };
}

interface NotifyEntries {
  healthchecks: Record<string, unknown>[];
  webhooks: Record<string, unknown>[];
  email: { values: Record<string, unknown> } | null;
}

/**
 * Validates notify.healthchecks[], notify.webhooks[] and notify.email element by element (the
 * top-level schema checks only that they are lists / a mapping), fills the default channel
 * names and checks that names are unique across all channels.
 */
function validateNotify(raw: unknown, problems: string[]): NotifyEntries {
  const notify = isMapping(raw) ? raw : {};
  const lists = { healthchecks: HEALTHCHECK_SCHEMA, webhooks: WEBHOOK_SCHEMA } as const;
  const defaultName = { healthchecks: 'healthchecks', webhooks: 'webhook' } as const;
  const entries: NotifyEntries = { healthchecks: [], webhooks: [], email: null };
  const names = new Map<string, string>();
  const claim = (name: string, at: string) => {
    const earlier = names.get(name);
    if (earlier) problems.push(`${at}.name: channel name "${name}" is already used by ${earlier}`);
    else names.set(name, at);
  };
  for (const kind of ['healthchecks', 'webhooks'] as const) {
    const key = `notify.${kind}`;
    if (isMapping(notify[kind])) problems.push(MAPPING_NOT_LIST(key));
    (Array.isArray(notify[kind]) ? (notify[kind] as unknown[]) : []).forEach((item, index) => {
      const at = `${key}[${index}]`;
      if (!isMapping(item)) {
        problems.push(`${at}: must be a mapping of keys`);
        return;
      }
      const section = validateSection(lists[kind], item, `${at}.`);
      problems.push(...section.problems);
      if (section.problems.length > 0) return;
      const values = { ...section.values, name: section.values.name ?? `${defaultName[kind]}-${index + 1}` };
      claim(values.name as string, at);
      entries[kind].push(values);
    });
  }
  if (isMapping(notify.email)) {
    const at = 'notify.email';
    if (notify.email.smtp !== undefined && !isMapping(notify.email.smtp)) problems.push(`${at}.smtp: must be a mapping of keys, got ${JSON.stringify(notify.email.smtp)}`);
    else {
      const section = validateSection(EMAIL_SCHEMA, notify.email, `${at}.`);
      problems.push(...section.problems);
      // Checked on what was written (with the defaults), so they show up beside any other problem.
      const smtp = { starttls: true, tls: false, user: null, password_file: null, ...((notify.email.smtp ?? {}) as Record<string, unknown>) };
      const before = problems.length;
      if (smtp.tls === true && smtp.starttls === true) {
        problems.push(`${at}.smtp.tls: cannot be true together with ${at}.smtp.starttls (true by default): tls is implicit TLS from the first byte (port 465), starttls upgrades a plain connection (port 587); set starttls: false`);
      }
      if ((smtp.user === null) !== (smtp.password_file === null)) {
        problems.push(smtp.user === null ? `${at}.smtp.password_file: needs ${at}.smtp.user` : `${at}.smtp.user: needs ${at}.smtp.password_file (passwords live only in files)`);
      }
      if (section.problems.length === 0 && problems.length === before) {
        const values = { ...section.values, name: section.values.name ?? 'email' };
        claim(values.name as string, at);
        entries.email = { values };
      }
    }
  }
  return entries;
}

function notifyConfig(v: Record<string, unknown>, entries: NotifyEntries, absolute: (p: string) => string): NotifyConfig {
  const email = entries.email?.values;
  const smtp = email?.smtp as Record<string, unknown> | undefined;
  return {
    on: [...new Set(v.on as NotifyOn[])],
    repeatMs: v.repeat === 'off' ? 0 : parseDuration(v.repeat)!,
    retryForMs: parseDuration(v.retry_for)!,
    healthchecks: entries.healthchecks.map((h) => ({ name: h.name as string, urlFile: absolute(h.url_file as string), jobs: [...new Set(h.jobs as NotifyJobKind[])] })),
    webhooks: entries.webhooks.map((w) => ({
      name: w.name as string,
      urlFile: absolute(w.url_file as string),
      format: w.format as 'json' | 'ntfy' | 'slack',
      headersFile: w.headers_file === null ? null : absolute(w.headers_file as string),
    })),
    email: email && smtp
      ? {
          name: email.name as string,
          smtp: {
            host: smtp.host as string,
            port: (smtp.port as number | null) ?? (smtp.tls === true ? 465 : 587),
            starttls: smtp.starttls as boolean,
            tls: smtp.tls as boolean,
            user: smtp.user as string | null,
            passwordFile: smtp.password_file === null ? null : absolute(smtp.password_file as string),
          },
          from: (email.from as string).trim(),
          to: (email.to as string[]).map((t) => t.trim()),
        }
      : null,
    command: v.command === null ? null : [...(v.command as string[])],
  };
}

/** metrics.listen must stay on loopback unless metrics.allow_non_loopback says otherwise. */
function validateMetrics(v: unknown, problems: string[]): void {
  if (!isMapping(v)) return;
  // An unparsable listen value is the format's error already.
  const listen = parseListenAddress(v.listen);
  if (listen && !isLoopbackHost(listen.host) && v.allow_non_loopback !== true) {
    problems.push(
      `metrics.listen: ${JSON.stringify(v.listen)} is not a loopback address (127.0.0.0/8, ::1, localhost): the metrics would be readable, unauthenticated, by anyone who can reach it; set metrics.allow_non_loopback: true to mean it`,
    );
  }
}

function metricsConfig(v: Record<string, unknown>): MetricsConfig {
  return {
    listen: v.listen === null ? null : parseListenAddress(v.listen)!,
    allowNonLoopback: v.allow_non_loopback as boolean,
    textfile: v.textfile as string | null,
  };
}

/** The bundled development config (`npm start`), relative to the project folder. */
export const DEV_CONFIG_PATH = 'config/stackback.dev.yaml';

/**
 * --config FILE, else $STACKBACK_CONFIG, else /etc/stackback/stackback.yaml; on a machine
 * without that file, run from a stackback checkout, the bundled development config, so
 * `npx stackback status` finds the daemon `npm start` runs.
 */
export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  const chosen = flag ?? env.STACKBACK_CONFIG;
  if (chosen !== undefined && chosen !== '') return path.resolve(chosen);
  if (!existsSync(DEFAULT_CONFIG_PATH) && existsSync(path.join(cwd, DEV_CONFIG_PATH))) return path.join(cwd, DEV_CONFIG_PATH);
  return DEFAULT_CONFIG_PATH;
}

let formatsRegistered = false;

function newValidator(schema: object) {
  if (!formatsRegistered) {
    registerFormats();
    formatsRegistered = true;
  }
  // env and argv are not config sources: one file is the whole truth.
  return convict(schema as convict.Schema<unknown>, { env: {}, args: [] });
}

/**
 * Turns convict's "key: message: value was X" lines into "prefix.key: message, got X".
 */
function convictProblems(error: unknown, prefix: string): string[] {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n').filter(Boolean).map((line) => {
    const undeclared = /^configuration param '(.+)' not declared in the schema$/.exec(line);
    if (undeclared) return `${prefix}${undeclared[1]}: unknown key`;
    const separator = line.indexOf(': ');
    if (separator < 0) return `${prefix}${line}`;
    const key = line.slice(0, separator);
    let message = line.slice(separator + 2);
    const valueAt = message.lastIndexOf(': value was ');
    // A URL with a password in it is refused without being repeated: the error reaches logs and terminals.
    if (valueAt >= 0) message = `${message.slice(0, valueAt)}${message.startsWith(CREDENTIALS_IN_URL) ? '' : `, got ${message.slice(valueAt + ': value was '.length)}`}`;
    return `${prefix}${key}: ${message}`;
  });
}

function validateSection(schema: object, value: unknown, prefix: string): { problems: string[]; values: Record<string, unknown> } {
  const validator = newValidator(schema);
  try {
    validator.load(value as object);
    validator.validate({ allowed: 'strict' });
    return { problems: [], values: validator.getProperties() as Record<string, unknown> };
  } catch (error) {
    return { problems: convictProblems(error, prefix), values: {} };
  }
}

function parseYaml(file: string, text: string): unknown {
  const document = YAML.parseDocument(text, { prettyErrors: true });
  if (document.errors.length > 0) {
    throw new ConfigInvalidError(file, document.errors.map((e) => `YAML syntax: ${e.message.split('\n')[0]}`));
  }
  const value = document.toJS() as unknown;
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigInvalidError(file, ['(top level): must be a mapping of keys']);
  return value;
}

export function loadConfig(file: string): Config {
  if (!existsSync(file)) {
    throw new StackbackError('CONFIG_NOT_FOUND', `config file ${file} does not exist`, 'pass --config FILE or set STACKBACK_CONFIG');
  }
  return parseConfig(file, readFileSync(file, 'utf8'));
}

/** Validates config text; every problem is collected before anything is thrown. */
export function parseConfig(file: string, text: string): Config {
  const raw = parseYaml(file, text) as Record<string, unknown>;
  const problems: string[] = [];
  // `notify:`, `metrics:` or `web:` with every key below commented out is null: the defaults. Any other
  // non-mapping would only give convict's confusing "did you override its parent?" lines.
  for (const key of ['notify', 'metrics', 'web'] as const) {
    if (raw[key] === null) delete raw[key];
    else if (raw[key] !== undefined && !isMapping(raw[key])) {
      problems.push(`${key}: must be a mapping of keys, got ${JSON.stringify(raw[key])}`);
      delete raw[key];
    }
  }
  // convict descends into a mapping given for an optional-mapping key and cannot handle one
  // nested in it (notify.email.smtp): the top level sees {} there; validateNotify checks it whole.
  const notify = raw.notify as Record<string, unknown> | undefined;
  const top = validateSection(SCHEMA, notify && isMapping(notify.email) ? { ...raw, notify: { ...notify, email: {} } } : raw, '');
  problems.push(...top.problems);

  const rawSources = (raw.sources ?? {}) as Record<string, unknown>;
  const entries: { kind: keyof typeof SOURCE_SCHEMAS; at: string; values: Record<string, unknown> }[] = [];
  for (const kind of Object.keys(SOURCE_SCHEMAS) as (keyof typeof SOURCE_SCHEMAS)[]) {
    if (isMapping(rawSources[kind])) problems.push(MAPPING_NOT_LIST(`sources.${kind}`));
    const items = Array.isArray(rawSources[kind]) ? (rawSources[kind] as unknown[]) : [];
    items.forEach((item, index) => {
      const at = `sources.${kind}[${index}]`;
      if (item === null || typeof item !== 'object' || Array.isArray(item)) {
        problems.push(`${at}: must be a mapping of keys`);
        return;
      }
      const section = validateSection(SOURCE_SCHEMAS[kind], item, `${at}.`);
      problems.push(...section.problems);
      if (section.problems.length === 0) entries.push({ kind, at, values: section.values });
    });
  }

  const seen = new Map<string, string>();
  for (const { at, values } of entries) {
    const name = values.name as string;
    const earlier = seen.get(name);
    if (earlier) problems.push(`${at}.name: source name "${name}" is already used by ${earlier}`);
    else seen.set(name, at);
  }
  for (const { kind, at, values } of entries) {
    if (kind === 'qdrant' && values.mode === 'storage_dir' && values.storage_path === null) problems.push(`${at}.storage_path: is required with mode storage_dir`);
  }
  const remotes = validateRemotes(raw.remotes, problems);
  const notifyEntries = validateNotify(raw.notify, problems);
  validateMetrics(raw.metrics, problems);

  const rawDrillServer = (raw.drill as { postgres_server?: unknown } | undefined)?.postgres_server;
  const drillServer = rawDrillServer && typeof rawDrillServer === 'object' && !Array.isArray(rawDrillServer) ? validateSection(DRILL_SERVER_SCHEMA, rawDrillServer, 'drill.postgres_server.') : undefined;
  if (drillServer) problems.push(...drillServer.problems);

  const base = path.dirname(file);
  const absolute = (p: string) => path.resolve(base, p);
  const control = top.values.control as { socket: string; admin_socket: string } | undefined;
  if (control && absolute(control.socket) === absolute(control.admin_socket)) problems.push('control.admin_socket: must not be the same file as control.socket (the read-only socket)');

  if (problems.length > 0) throw new ConfigInvalidError(file, problems);
  const props = top.values as {
    repository: { path: string; compression_level: number; encryption: 'aes-256-gcm' | 'none'; key_file: string; passphrase_file: string | null };
    catalog: { path: string };
    work_dir: string;
    lock_timeout: string;
    stall_timeout: string;
    timezone: string;
    restore: { reserve_free: string | number };
    drill: { postgres_database_prefix: string; qdrant_collection_prefix: string; postgres_server: Record<string, unknown> | null };
    schedule: Record<string, string | boolean>;
    control: { socket: string; socket_mode: string; socket_group: string | null; admin_socket: string; admin_socket_mode: string; admin_socket_group: string | null; max_connections: number; max_queued_jobs: number };
    retention: Record<string, number | string>;
    log: { level: string };
    notify: Record<string, unknown>;
    metrics: Record<string, unknown>;
    web: { listen: unknown; token_file: string; allow_actions: boolean; session_ttl: string };
  };
  return {
    file,
    repository: {
      path: absolute(props.repository.path),
      compressionLevel: props.repository.compression_level,
      encryption: props.repository.encryption,
      keyFile: absolute(props.repository.key_file),
      passphraseFile: props.repository.passphrase_file === null ? null : absolute(props.repository.passphrase_file),
    },
    catalog: { path: absolute(props.catalog.path) },
    workDir: absolute(props.work_dir),
    lockTimeoutMs: parseDuration(props.lock_timeout)!,
    stallTimeoutMs: parseDuration(props.stall_timeout)!,
    timezone: props.timezone,
    restore: { reserveFreeBytes: parseSize(props.restore.reserve_free)! },
    drill: {
      postgresDatabasePrefix: props.drill.postgres_database_prefix,
      qdrantCollectionPrefix: props.drill.qdrant_collection_prefix,
      postgresServer: drillServer ? postgresConfig({ ...drillServer.values, name: 'drill-server', databases: 'all', globals: false, exact_count_max_size: 0, restore_copy_sessions: 1, restore_copy_split_after: 0 }, absolute) : null,
    },
    schedule: {
      full: offToNull(props.schedule.full as string),
      incremental: offToNull(props.schedule.incremental as string),
      verify: offToNull(props.schedule.verify as string),
      verifyLevel: props.schedule.verify_level as 'quick' | 'deep' | 'drill',
      prune: offToNull(props.schedule.prune as string),
      copy: offToNull(props.schedule.copy as string),
      catchUp: props.schedule.catch_up as boolean,
    },
    control: {
      socket: absolute(props.control.socket),
      socketMode: Number.parseInt(props.control.socket_mode, 8),
      socketGroup: props.control.socket_group,
      adminSocket: absolute(props.control.admin_socket),
      adminSocketMode: Number.parseInt(props.control.admin_socket_mode, 8),
      adminSocketGroup: props.control.admin_socket_group,
      maxConnections: props.control.max_connections,
      maxQueuedJobs: props.control.max_queued_jobs,
    },
    retention: retentionConfig(props.retention),
    log: { level: props.log.level },
    sources: entries.map(({ kind, values: v }): SourceConfig => {
      if (kind === 'files') {
        return { kind, name: v.name as string, paths: (v.paths as string[]).map((p) => path.resolve(p)), exclude: v.exclude as string[], oneFileSystem: v.one_file_system as boolean };
      }
      if (kind === 'qdrant') {
        return {
          kind,
          name: v.name as string,
          mode: v.mode as 'api' | 'storage_dir',
          url: (v.url as string).replace(/\/+$/, ''),
          apiKeyFile: v.api_key_file === null ? null : absolute(v.api_key_file as string),
          collections: v.collections as 'all' | string[],
          timeoutMs: parseDuration(v.timeout)!,
          keepServerSnapshots: v.keep_server_snapshots as boolean,
          storagePath: v.storage_path === null ? null : absolute(v.storage_path as string),
          preCommand: v.pre_command as string | null,
          postCommand: v.post_command as string | null,
          hookTimeoutMs: parseDuration(v.hook_timeout)!,
        };
      }
      return postgresConfig(v, absolute);
    }),
    remotes: remotes.map((entry) => remoteConfig(entry, props.retention, absolute)),
    notify: notifyConfig(props.notify, notifyEntries, absolute),
    metrics: metricsConfig(props.metrics),
    web: {
      listen: props.web.listen === null ? null : parseListenAddress(props.web.listen)!,
      tokenFile: absolute(props.web.token_file),
      allowActions: props.web.allow_actions,
      sessionTtlMs: parseDuration(props.web.session_ttl)!,
    },
  };
}
