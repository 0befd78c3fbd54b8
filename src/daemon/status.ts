import { type BackupRow, type Catalog, newestBackupOf, type RunRow } from '../catalog/catalog.ts';
import { isSafetyCopy } from '../repository/manifest.ts';
import type { Config, RemoteConfig } from '../config/load.ts';
import { errorMessage } from '../errors.ts';
import { backupsForRemote } from '../jobs/copy.ts';
import { repositoryState } from '../jobs/repository-identity.ts';
import { keyExportWarning } from '../jobs/repository-key.ts';
import type { JobView } from './queue.ts';
import { type ScheduleInfo, scheduleInfo } from './schedule-info.ts';

/**
 * `stackback status` and `GET /api/backup/status`: is the daemon up, what runs, what comes
 * next, how the last run of each kind went, and warnings a person should act on. Healthy
 * means a daemon is up and there is no warning.
 */
export interface LastRun {
  status: string;
  /** verify: the level it ran at. */
  level?: string;
  started_at: string;
  finished_at: string | null;
  backup: string | null;
  bytes_stored: number;
  error: string | null;
}

/** What the catalog knows of one configured remote (the bucket itself is not contacted). */
export interface RemoteStatus {
  name: string;
  /** s3://bucket/prefix, from the config. */
  location: string;
  /** When the newest copy that succeeded for this remote finished, or null (never). */
  last_copy_at: string | null;
  /** When the newest copy attempt at this remote ended (whatever its outcome), or null. */
  last_attempt_at: string | null;
  /** That attempt's error when it failed, else null. */
  last_error: string | null;
  /** Backups the catalog knows to be on the remote (copied there, or seen in its list). */
  backups: number;
  /** Local backups not on the remote yet. */
  missing: number;
}

export interface StatusDocument {
  healthy: boolean;
  daemon: { pid: number; started_at: string; uptime_seconds: number; version: string } | null;
  running: JobView | null;
  queued: JobView[];
  schedules: ScheduleInfo[];
  last: { full: LastRun | null; incremental: LastRun | null; verify: LastRun | null; prune: LastRun | null };
  /** key_id: the key an encrypted repository needs, or null (a plain repository, or none there). */
  repository: { path: string; bytes: number; backups: number; key_id: string | null };
  /** One entry per configured remote, in config order (RemoteStatus documents the fields). */
  remotes: RemoteStatus[];
  /** Each notification channel's delivery state (only while a daemon runs: it delivers). */
  notifications: ChannelStatus[];
  warnings: string[];
}

export interface DaemonState {
  pid: number;
  startedAt: Date;
  version: string;
  running: JobView | undefined;
  queued: JobView[];
  /** The notification channels' delivery state (src/alerts/notifier.ts). */
  channels?: ChannelStatus[];
  /** The daemon's own problems a person should act on (a dashboard it cannot serve). */
  problems?: string[];
}

/** One notification channel, as `status` shows it. */
export interface ChannelStatus {
  name: string;
  kind: string;
  /** Since when deliveries through it fail (null: the last one went through, or none was tried). */
  failing_since: string | null;
  last_error: string | null;
}

function last(run: RunRow | undefined): LastRun | null {
  return run ? { status: run.status, ...(typeof run.detail?.level === 'string' ? { level: run.detail.level } : {}), started_at: run.started_at, finished_at: run.finished_at, backup: run.backup, bytes_stored: run.bytes_stored, error: run.error } : null;
}

export function humanDuration(ms: number): string {
  const hours = ms / 3_600_000;
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`;
  if (hours < 1) return `${Math.round(ms / 60_000)} min`;
  if (hours < 48) return `${Math.round(hours)} h`;
  return `${Math.round(hours / 24)} days`;
}

export function buildStatus(config: Config, catalog: Catalog, daemon: DaemonState | null, now: Date): StatusDocument {
  const schedules = scheduleInfo(config, now);
  const lastRuns = {
    full: last(catalog.lastRun('backup', 'full')),
    incremental: last(catalog.lastRun('backup', 'incremental')),
    verify: last(catalog.lastRun('verify')),
    prune: last(catalog.lastRun('prune')),
  };
  const backups = catalog.listBackups();
  const warnings: string[] = [];
  if (!daemon) warnings.push('the daemon is not running: no scheduled backups happen');
  let keyId: string | null = null;
  try {
    const repository = repositoryState(config, catalog);
    if (repository.state === 'missing' || repository.state === 'mismatch') warnings.push(repository.error.message);
    if (repository.state === 'ok' && repository.keyId !== null) {
      keyId = repository.keyId;
      const notExported = keyExportWarning(catalog, keyId);
      if (notExported) warnings.push(notExported);
    }
  } catch (error) {
    warnings.push(errorMessage(error)); // an unreadable repo.json
  }
  const expected = expectedBackupPeriod(schedules);
  // Per source: a backup of one source (backup --source X) says nothing about the others.
  for (const { name } of config.sources) {
    const stale = sourceStaleness(backups, name, expected, now);
    if (stale) warnings.push(stale.message);
    const latest = backups.findLast((b) => !isSafetyCopy(b.name) && b.sources.some((o) => o.name === name));
    for (const note of latest?.sources.find((o) => o.name === name)?.coverage ?? []) warnings.push(`source ${name}: ${note} (backup ${latest!.name})`);
  }
  for (const kind of ['full', 'incremental'] as const) {
    const run = lastRuns[kind];
    if (run && run.status !== 'ok') warnings.push(`last ${kind} backup ${run.status}${run.error ? `: ${run.error}` : ''}`);
  }
  const remotes = config.remotes.map((remote) => remoteStatus(config, catalog, backups, remote, schedules, now, warnings));
  const diskFull = diskFullWarning(catalog);
  if (diskFull) warnings.push(diskFull);
  if (lastRuns.verify && lastRuns.verify.status !== 'ok') warnings.push(`last verify ${lastRuns.verify.status}${lastRuns.verify.error ? `: ${lastRuns.verify.error}` : ''}`);
  if (lastRuns.prune && lastRuns.prune.status !== 'ok') warnings.push(`last prune ${lastRuns.prune.status}${lastRuns.prune.error ? `: ${lastRuns.prune.error}` : ''}`);
  warnings.push(...(daemon?.problems ?? []));
  const notifications = daemon?.channels ?? [];
  for (const channel of notifications) {
    if (channel.failing_since) warnings.push(`${channel.kind} ${channel.name} failing since ${channel.failing_since}: ${channel.last_error ?? 'delivery failed'}; \`stackback notify test --channel ${channel.name}\` tries it`);
  }
  return {
    healthy: daemon !== null && warnings.length === 0,
    daemon: daemon ? { pid: daemon.pid, started_at: daemon.startedAt.toISOString(), uptime_seconds: Math.round((now.getTime() - daemon.startedAt.getTime()) / 1000), version: daemon.version } : null,
    running: daemon?.running ?? null,
    queued: daemon?.queued ?? [],
    schedules,
    last: lastRuns,
    repository: { path: config.repository.path, bytes: catalog.repositoryBytes(), backups: backups.length, key_id: keyId },
    remotes,
    notifications,
    warnings,
  };
}

/** How long a backup may wait for its copy when copies run after every backup, or not at all. */
const OFFSITE_GRACE_MS = 24 * 3_600_000;

/** The period the backup schedules promise: the shorter of full's and incremental's cron periods, or null when neither runs on a cron. */
export function expectedBackupPeriod(schedules: ScheduleInfo[]): number | null {
  const periods = schedules.filter((s) => (s.name === 'full' || s.name === 'incremental') && s.period_ms !== null).map((s) => s.period_ms!);
  return periods.length > 0 ? Math.min(...periods) : null;
}

/**
 * Whether `source` lacks a recent successful backup (the rule of status's warning, which the
 * notifier's stale events share): none at all, or the newest older than twice the expected
 * period. Undefined when it is fresh or no backup schedule sets an expectation.
 */
export function sourceStaleness(backups: BackupRow[], source: string, expected: number | null, now: Date): { reason: 'never' | 'old'; newest: BackupRow | undefined; message: string } | undefined {
  if (expected === null) return undefined;
  const newest = newestBackupOf(backups, source);
  if (!newest) return { reason: 'never', newest, message: `source ${source}: no successful backup yet` };
  const age = now.getTime() - Date.parse(newest.finished_at);
  // Twice the period: one missed run is a warning, not every slightly late one.
  if (age > 2 * expected) return { reason: 'old', newest, message: `source ${source}: last successful backup is ${humanDuration(age)} old, schedule expects ${humanDuration(expected)}` };
  return undefined;
}

/**
 * Whether remote `name` is behind (status's warning, and the notifier's stale event): the
 * newest backup has not reached it within one copy period after it finished — the gap between
 * two runs of a copy cron, 24 h for after_backup, and 24 h when copies are off, since then
 * nothing is off-site unless someone copies by hand. `there`: the backups on the remote.
 */
export function remoteLateness(config: Config, name: string, backups: BackupRow[], there: { has(backup: string): boolean }, lastError: string | null, schedules: ScheduleInfo[], now: Date): { newest: BackupRow; message: string } | undefined {
  const newest = backups.findLast((b) => !isSafetyCopy(b.name));
  if (!newest || there.has(newest.name)) return undefined;
  const age = now.getTime() - Date.parse(newest.finished_at);
  const schedule = config.schedule.copy;
  const cronPeriod = schedules.find((s) => s.name === 'copy')?.period_ms ?? null;
  const period = schedule !== null && schedule !== 'after_backup' && cronPeriod !== null ? cronPeriod : OFFSITE_GRACE_MS;
  if (age <= period) return undefined;
  const fix = `run \`stackback copy --remote ${name}\``;
  const failed = lastError ? `; the last copy there failed: ${lastError}` : '';
  return {
    newest,
    message:
      schedule === null
        ? `remote ${name}: the newest backup ${newest.name} finished ${humanDuration(age)} ago and is not off-site: schedule.copy is off, so nothing is copied there unless someone runs a copy; ${fix}, or set schedule.copy`
        : `remote ${name}: the newest backup ${newest.name} finished ${humanDuration(age)} ago and is not off-site yet (copies run ${schedule === 'after_backup' ? 'after every backup' : `on "${schedule}"`}, so it should be there within ${humanDuration(period)})${failed}; ${fix}`,
  };
}

/** What is stale right now, by the rules of status's warnings: one entry per source without a recent successful backup and per remote behind. */
export interface Staleness {
  subject: 'source' | 'remote';
  name: string;
  /** never: a source without any successful backup; old: its newest is too old; behind: a remote lacks the newest backup. */
  reason: 'never' | 'old' | 'behind';
  /** The newest backup (of the source, or the one the remote lacks), if any. */
  backup: string | null;
  /** The period the schedules promise (sources) or the copy period (remotes). */
  expected_ms: number | null;
  message: string;
}

/** Every source and remote of `config` that is stale at `now` (a few catalog queries: cheap enough to ask every few seconds). */
export function staleness(config: Config, catalog: Catalog, now: Date): Staleness[] {
  const schedules = scheduleInfo(config, now);
  const backups = catalog.listBackups();
  const expected = expectedBackupPeriod(schedules);
  const found: Staleness[] = [];
  for (const { name } of config.sources) {
    const stale = sourceStaleness(backups, name, expected, now);
    if (stale) found.push({ subject: 'source', name, reason: stale.reason, backup: stale.newest?.name ?? null, expected_ms: expected, message: stale.message });
  }
  for (const remote of config.remotes) {
    const known = catalog.remote(remote.name);
    const { attempt } = known.copyOutcomes();
    const behind = remoteLateness(config, remote.name, backups, known.backups(), attempt && !attempt.ok ? attempt.error : null, schedules, now);
    if (behind) found.push({ subject: 'remote', name: remote.name, reason: 'behind', backup: behind.newest.name, expected_ms: null, message: behind.message });
  }
  return found;
}

/**
 * One remote's entry, and its warning when the newest backup has not reached it within one
 * copy period after it finished: the gap between two runs of a copy cron, 24 h for
 * after_backup — and 24 h when copies are off, since then nothing is off-site unless someone
 * copies by hand.
 */
function remoteStatus(config: Config, catalog: Catalog, backups: BackupRow[], remote: RemoteConfig, schedules: ScheduleInfo[], now: Date, warnings: string[]): RemoteStatus {
  const { name } = remote;
  const known = catalog.remote(name);
  const there = known.backups();
  const { attempt, success } = known.copyOutcomes();
  const lastError = attempt && !attempt.ok ? attempt.error : null;
  const behind = remoteLateness(config, name, backups, there, lastError, schedules, now);
  if (behind) warnings.push(behind.message);
  return {
    name,
    location: `s3://${remote.bucket}/${remote.prefix}`,
    last_copy_at: success?.at ?? null,
    last_attempt_at: attempt?.at ?? null,
    last_error: lastError,
    backups: there.size,
    missing: backupsForRemote(config, remote, backups, now).filter((b) => !there.has(b.name)).length,
  };
}

/** After the newest backup failed for lack of space (repository or work_dir): what the prunes since did about it. */
function diskFullWarning(catalog: Catalog): string | undefined {
  const backup = catalog.lastRun('backup');
  if (backup?.status !== 'failed' || backup.detail?.error_code !== 'DISK_SPACE') return undefined;
  const prune = catalog.lastRun('prune');
  if (!prune || prune.started_at < backup.started_at) return 'the last backup failed for lack of space and no prune has run since: free space, or run `stackback prune`';
  if (prune.status !== 'ok') return `the last backup failed for lack of space; the prune after it ${prune.status}${prune.error ? `: ${prune.error}` : ''}`;
  const removed = Array.isArray(prune.detail?.removed) ? prune.detail.removed.length : 0;
  const freed = typeof prune.detail?.freed_bytes === 'number' ? prune.detail.freed_bytes : 0;
  return removed > 0
    ? `the last backup failed for lack of space: a prune since removed ${removed} backup(s), freeing ${freed} bytes; the next backup will tell whether that is enough`
    : 'the last backup failed for lack of space and the retention policy keeps every backup: free space, move repository.path or work_dir, or tighten retention';
}

/** The one line systemd shows in `systemctl status`. */
export function statusLine(status: StatusDocument, timeZone: string): string {
  const format = (iso: string) => new Date(iso).toLocaleString('sv-SE', { timeZone, hour12: false }).slice(0, 16) + (timeZone === 'UTC' ? ' UTC' : '');
  const activity = status.running
    ? `running ${status.running.kind}${status.running.params.type ? ` (${String(status.running.params.type)})` : ''}${status.running.progress?.bytes_done ? `, ${Math.round(status.running.progress.bytes_done / 1048576)} MiB` : ''}`
    : 'idle';
  const next = status.schedules.filter((s) => s.next && (s.name === 'full' || s.name === 'incremental')).sort((a, b) => a.next!.localeCompare(b.next!))[0];
  const lastFull = status.last.full;
  return [
    activity,
    next ? `next ${next.name} ${format(next.next!)}` : 'no backup scheduled',
    lastFull ? `last full ${lastFull.status === 'ok' ? 'OK' : lastFull.status.toUpperCase()} ${format(lastFull.started_at)}` : 'no full backup yet',
    ...(status.warnings.length ? [`${status.warnings.length} warning(s)`] : []),
  ].join('; ');
}
