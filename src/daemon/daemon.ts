import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Catalog, newestBackupOf } from '../catalog/catalog.ts';
import { backupDetail, backupList, backupPage, chartSeries, runHistory, runPage } from '../catalog/views.ts';
import { type Config, ConfigInvalidError, DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.ts';
import { errorMessage, isStackbackError, StackbackError } from '../errors.ts';
import { cleanUpBeforeWriting, markInterruptedRuns } from '../jobs/housekeeping.ts';
import { createLogger, type Logger } from '../log.ts';
import { validateBackupName } from '../repository/manifest.ts';
import type { Lock } from '../repository/lock.ts';
import type { Repository } from '../repository/repository.ts';
import { openRepository } from '../jobs/repository-identity.ts';
import { remoteConfig, selectRemotes } from '../jobs/remote-repository.ts';
import { createSources } from '../sources/registry.ts';
import { isDeadProcessPipe } from '../sources/tool.ts';
import type { Source } from '../sources/source.ts';
import { STACKBACK_VERSION } from '../version.ts';
import { backupJob, copyJob, type CopyJobOptions, type DaemonServices, deleteJob, pruneJob, restoreJob, verifyJob } from './jobs.ts';
import { SystemdNotifier } from './notify.ts';
import { installLastResort } from './last-resort.ts';
import { JobQueue, type JobRunner } from './queue.ts';
import { type ScheduleName, scheduleInfo } from './schedule-info.ts';
import { Scheduler } from './scheduler.ts';
import { ForegroundActivity } from './foreground.ts';
import { createDaemonMetrics } from './metrics.ts';
import { createNotifier } from '../alerts/notifier.ts';
import { type ControlApi, controlHandler, createControlServer, type SocketRole } from './server.ts';
import { closeSockets, listenOnSockets, type SocketListener } from './socket.ts';
import { buildStatus, statusLine } from './status.ts';
import { configView } from './config-view.ts';
import { WebDashboard } from '../web/dashboard.ts';

/** How long SIGTERM waits for the running job to stop cleanly (systemd's TimeoutStopSec is longer). */
const STOP_GRACE_MS = 60_000;
const STATUS_REFRESH_MS = 5_000;
/** How long a stopping daemon waits for notifications still being delivered. */
const NOTIFY_DRAIN_MS = 5_000;
const STATUS_CACHE_MS = 1_000;

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '') throw new StackbackError('BAD_REQUEST', `"${key}" must be a non-empty string`);
  return value;
}

/** A list of non-empty strings, or undefined when absent, null or empty. */
function optionalStrings(body: Record<string, unknown>, key: string): string[] | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) throw new StackbackError('BAD_REQUEST', `"${key}" must be a list of non-empty strings`);
  return value.length > 0 ? [...new Set(value as string[])] : undefined;
}

/** A remote a request names, checked against the config now (REMOTE_NOT_FOUND, 404), not when its job runs. */
function configuredRemote(config: Config, name: string | undefined): string | undefined {
  return name === undefined || name === '' ? undefined : remoteConfig(config, name).name;
}

/** Refuses keys a route does not know: a misspelt option must not turn into "everything". */
function onlyKeys(body: Record<string, unknown>, known: string[]): void {
  const unknown = Object.keys(body).filter((key) => !known.includes(key));
  if (unknown.length > 0) throw new StackbackError('BAD_REQUEST', `unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} in the request body (known: ${known.join(', ')})`);
}

function flag(body: Record<string, unknown>, key: string): boolean {
  const value = body[key];
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw new StackbackError('BAD_REQUEST', `"${key}" must be true or false`);
  return value;
}

/**
 * `stackback daemon`: the long-running service. Holds the repository's daemon lock, runs
 * the schedules through one job queue, answers the control socket, reloads its config on
 * SIGHUP and stops cleanly on SIGTERM. Resolves with the process exit status.
 */
export async function runDaemon(configFile: string): Promise<number> {
  let config = loadConfig(configFile);
  const log = createLogger(config.log.level);
  const catalog = new Catalog(config.catalog.path);
  let repo: Repository;
  let daemonLock: Lock;
  try {
    // A fresh install gets its repository; one the catalog knows must be there (a disk not mounted stops the start, by name).
    repo = await openRepository(config, catalog, { createFirst: true });
    daemonLock = await repo.lockDaemon();
  } catch (error) {
    catalog.close();
    throw error;
  }
  let sources: Source[] = createSources(config);
  const startedAt = new Date();
  const foreground = new ForegroundActivity();
  const services: DaemonServices = { config: () => config, sources: () => sources, catalog, log, foreground };
  const queue = new JobQueue(() => config.control.maxQueuedJobs);
  installLastResort(queue, log);
  const notifier = new SystemdNotifier(log);
  const metrics = createDaemonMetrics({ config: () => config, catalog, log, startedAt, running: () => queue.current() ?? null, notificationChannels: () => alerts.channels().map((c) => c.name) });
  // Failures, staleness and recoveries reach people (webhooks, healthchecks, email, a command); never blocking a job.
  const alerts = createNotifier({ config: () => config, catalog, log, onDeliveryFailed: (channel) => metrics.notificationFailed(channel) });

  await startupCleanup(repo, catalog, config, sources, log);

  const submit = (kind: Parameters<JobQueue['submit']>[0], params: Record<string, unknown>, origin: 'schedule' | 'manual', run: JobRunner) => {
    const submitted = queue.submit(kind, params, origin, metrics.afterJob(run));
    if (!submitted.collapsed) {
      const job = submitted.job.id;
      const unsubscribe = queue.subscribe(job, (event) => {
        if (event.state === 'running' && !event.progress) alerts.jobStarted(submitted.job);
        if (event.state === 'ok' || event.state === 'partial' || event.state === 'failed' || event.state === 'cancelled') {
          unsubscribe();
          const ended = queue.get(job);
          if (ended) alerts.jobEnded(ended);
        }
      });
      // A job submitted to an idle queue starts at once, before the subscription above.
      if (queue.get(job)?.state === 'running') alerts.jobStarted(submitted.job);
    }
    log.info({ job: submitted.job.id, kind, params, origin }, submitted.collapsed ? `${kind} already queued as job ${submitted.job.id}` : `queued ${kind} job ${submitted.job.id}`);
    return submitted;
  };
  const submitBackup = (type: 'full' | 'incremental', only: string[] | undefined, origin: 'schedule' | 'manual') => {
    const run = backupJob(services, type, only);
    const withPrune: JobRunner = async (signal, progress) => {
      let outcome;
      try {
        outcome = await run(signal, progress);
      } catch (error) {
        // A full disk never frees itself (prune after_backup follows only successes): prune now;
        // retention still never removes the newest successful backup.
        if (origin === 'schedule' && config.schedule.prune !== null && isStackbackError(error) && error.code === 'DISK_SPACE') {
          log.warn('the backup failed for lack of space: applying the retention policy now to free some');
          submit('prune', { dry_run: false, trigger: 'disk_full' }, 'schedule', pruneJob(services, false, 'disk_full'));
        }
        throw error;
      }
      // Follow-ups never turn the backup, which is committed, into a failure (a daemon that is stopping takes no new jobs).
      const followUp = (what: string, queue: () => void) => {
        try {
          queue();
        } catch (error) {
          log.warn(`no ${what} after this backup: ${errorMessage(error)}`);
        }
      };
      // After every successful backup, manual or scheduled: off-site as soon as possible (before a prune, which may take a while).
      if (config.schedule.copy === 'after_backup' && config.remotes.length > 0) followUp('copy', () => submitCopy({}, 'schedule'));
      if (origin === 'schedule' && config.schedule.prune === 'after_backup') followUp('prune', () => submit('prune', { dry_run: false }, 'schedule', pruneJob(services, false)));
      return outcome;
    };
    return submit('backup', { type, ...(only ? { sources: only } : {}) }, origin, withPrune);
  };
  // A copy to every remote of every backup they lack: one waiting copy covers any number of backups before it.
  const submitCopy = (options: CopyJobOptions, origin: 'schedule' | 'manual') =>
    submit('copy', { ...(options.remotes ? { remotes: options.remotes } : {}), ...(options.backups ? { backups: options.backups } : {}) }, origin, copyJob(services, options));
  const onDue = (name: ScheduleName) => {
    if (name === 'full' || name === 'incremental') submitBackup(name, undefined, 'schedule');
    else if (name === 'verify') submit('verify', { backups: 'all', level: config.schedule.verifyLevel }, 'schedule', verifyJob(services, 'all', config.schedule.verifyLevel));
    else if (name === 'copy') {
      if (config.remotes.length > 0) submitCopy({}, 'schedule');
    } else submit('prune', { dry_run: false }, 'schedule', pruneJob(services, false));
  };
  const scheduler = new Scheduler(onDue);

  // The catalog part of the status is cached briefly: monitoring may ask in bursts, and
  // the running job and queue, which change fast, are filled in fresh every time.
  let cached: { at: number; jobsFinished: number; status: ReturnType<typeof buildStatus> } | undefined;
  const status = () => {
    const now = Date.now();
    if (!cached || now - cached.at > STATUS_CACHE_MS || cached.jobsFinished !== queue.finishedCount) {
      cached = { at: now, jobsFinished: queue.finishedCount, status: buildStatus(config, catalog, { pid: process.pid, startedAt, version: STACKBACK_VERSION, running: undefined, queued: [], channels: alerts.channels(), problems: web.problems() }, new Date(now)) };
    }
    return { ...cached.status, daemon: { ...cached.status.daemon!, uptime_seconds: Math.round((now - startedAt.getTime()) / 1000) }, running: queue.current() ?? null, queued: queue.queued() };
  };
  const reload = (): { ok: true } | { ok: false; problems: string[] } => {
    try {
      const next = loadConfig(configFile);
      if (restartOnly(next) !== restartOnly(config)) {
        log.warn('the control sockets and max_connections, repository.path and catalog.path take effect at the next restart');
      }
      config = next;
      sources = createSources(next);
      scheduler.apply(next);
      metrics.listen().catch((error: unknown) => log.error(`metrics.listen not applied: ${errorMessage(error)}`));
      void web.apply().then(() => (cached = undefined));
      log.info({ file: configFile }, 'config reloaded');
      return { ok: true };
    } catch (error) {
      const problems = error instanceof ConfigInvalidError ? error.problems : [errorMessage(error)];
      for (const problem of problems) log.error({ problem }, `config reload rejected: ${problem}`);
      log.error('the previous config keeps running');
      return { ok: false, problems };
    }
  };

  const api: ControlApi = {
    status,
    listBackups: () => backupList(catalog, remoteNames(config)),
    getBackup: (name) => backupDetail(catalog, name, remoteNames(config), config.file === DEFAULT_CONFIG_PATH ? null : config.file),
    history: (limit) => runHistory(catalog, limit),
    backupPage: (query) => backupPage(catalog, query, remoteNames(config)),
    runPage: (query) => runPage(catalog, query),
    charts: () => chartSeries(catalog),
    configView: () => configView(config),
    submitBackup: (body) => {
      const type = body.type ?? 'incremental';
      if (type !== 'full' && type !== 'incremental') throw new StackbackError('BAD_REQUEST', '"type" must be "full" or "incremental"');
      const only = body.sources;
      if (only !== undefined && (!Array.isArray(only) || !only.every((s) => typeof s === 'string' && sources.some((src) => src.name === s)))) {
        throw new StackbackError('BAD_REQUEST', `"sources" must be a list of configured source names (${sources.map((s) => s.name).join(', ')})`);
      }
      return submitBackup(type, only as string[] | undefined, 'manual');
    },
    submitRestore: (name, body) => {
      validateBackupName(name);
      const options = {
        source: optionalString(body, 'source'),
        database: optionalString(body, 'database'),
        targetDb: optionalString(body, 'target_db'),
        withGlobals: flag(body, 'with_globals'),
        forceDisconnect: flag(body, 'force_disconnect'),
        collection: optionalString(body, 'collection'),
        targetCollection: optionalString(body, 'target_collection'),
        noSafety: flag(body, 'no_safety'),
        targetDir: optionalString(body, 'target_dir'),
        path: optionalString(body, 'path'),
        from: configuredRemote(config, optionalString(body, 'from')),
        yes: flag(body, 'yes'),
        check: flag(body, 'check'),
      };
      return submit('restore', { backup: name, ...options }, 'manual', restoreJob(services, name, options));
    },
    submitVerify: (name, level, remote) => {
      if (name !== 'all') validateBackupName(name);
      const chosen = level ?? 'quick';
      if (chosen !== 'quick' && chosen !== 'deep' && chosen !== 'drill') throw new StackbackError('BAD_REQUEST', 'level must be quick, deep or drill');
      const names = name === 'all' ? 'all' : [name];
      const from = configuredRemote(config, remote ?? undefined);
      return submit('verify', { backups: names, level: chosen, ...(from ? { remote: from } : {}) }, 'manual', verifyJob(services, names, chosen, from));
    },
    submitDelete: (name) => {
      validateBackupName(name);
      return submit('delete', { backup: name }, 'manual', deleteJob(services, name));
    },
    submitPrune: (dryRun) => submit('prune', { dry_run: dryRun }, 'manual', pruneJob(services, dryRun)),
    submitCopy: (body) => {
      onlyKeys(body, ['remotes', 'backups']);
      const remotes = optionalStrings(body, 'remotes');
      const backups = optionalStrings(body, 'backups');
      selectRemotes(config, remotes); // REMOTE_NOT_FOUND (404) now, not when the job runs
      for (const name of backups ?? []) validateBackupName(name);
      return submitCopy({ remotes, backups }, 'manual');
    },
    jobs: () => queue.list(),
    job: (id) => queue.get(id),
    subscribe: (id, listener) => queue.subscribe(id, listener),
    cancel: (id) => queue.cancel(id),
    reload,
    metrics: () => metrics.render(),
  };

  const { control } = config;
  const listener = (role: SocketRole, path: string, mode: number, group: string | null): SocketListener => ({
    server: createControlServer(api, log, foreground, { role, adminSocket: control.adminSocket, maxConnections: control.maxConnections }),
    path,
    mode,
    group,
  });
  const sockets = [listener('read', control.socket, control.socketMode, control.socketGroup), listener('admin', control.adminSocket, control.adminSocketMode, control.adminSocketGroup)];
  const web = new WebDashboard({ handle: controlHandler(api, log), log, foreground, config: () => config, version: STACKBACK_VERSION });
  try {
    await metrics.listen();
    await listenOnSockets(sockets);
    await web.apply();
  } catch (error) {
    await web.close();
    await metrics.close();
    catalog.close();
    await daemonLock.release();
    throw error;
  }
  scheduler.apply(config);
  catchUp(config, catalog, log, () => submitBackup('full', undefined, 'schedule'));
  log.info({ socket: control.socket, admin_socket: control.adminSocket, pid: process.pid }, `stackback daemon ${STACKBACK_VERSION} ready on ${control.socket} (read-only) and ${control.adminSocket} (admin)`);
  await notifier.ready(statusLine(status(), config.timezone));
  void metrics.writeTextfile();
  const refresh = setInterval(() => {
    void notifier.status(statusLine(status(), config.timezone));
    alerts.checkStale(new Date());
  }, STATUS_REFRESH_MS);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`${signal} received: taking no new jobs, stopping the running one`);
      clearInterval(refresh);
      await notifier.stopping();
      scheduler.stop();
      const closing = Promise.all([closeSockets(sockets), web.close()]);
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          log.error(`the running job did not stop within ${STOP_GRACE_MS / 1000} s`);
          resolve();
        }, STOP_GRACE_MS);
      });
      await Promise.race([queue.shutdown(`the daemon is stopping (${signal})`), gaveUp]);
      clearTimeout(timer);
      // The stopped job's /fail ping and event still go out, briefly.
      await alerts.drain(NOTIFY_DRAIN_MS);
      await metrics.close();
      catalog.close();
      await closing;
      await daemonLock.release();
      log.info('daemon stopped');
      process.off('SIGHUP', onHup);
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      resolve(0);
    };
    // process.on, not once: execa's exit hook re-raises a signal that has no listener left,
    // which would kill the daemon before its clean stop ran.
    const onHup = () => void reload();
    const onTerm = () => void stop('SIGTERM');
    const onInt = () => void stop('SIGINT');
    process.on('SIGHUP', onHup);
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
}

const remoteNames = (config: Config) => config.remotes.map((r) => r.name);

/** The settings a reload cannot change in a running daemon. */
function restartOnly(config: Config): string {
  const { maxQueuedJobs: _reloadable, ...control } = config.control;
  return JSON.stringify([control, config.repository.path, config.catalog.path]);
}

/** Runs left `running` by a crash become interrupted; their leftovers go, if no CLI holds the repository. */
async function startupCleanup(repo: Repository, catalog: Catalog, config: Config, sources: Source[], log: Logger): Promise<void> {
  markInterruptedRuns(catalog, log);
  try {
    const lock = await repo.lockWriter({ command: 'daemon start-up cleanup', timeoutMs: 0 });
    try {
      await cleanUpBeforeWriting(repo, catalog, log);
      // Only stackback's own leftovers, and only while no other process can be using them.
      if (existsSync(config.workDir)) {
        for (const name of await readdir(config.workDir)) {
          if (name.startsWith('catalog-copy-') || name.startsWith('drill-') || isDeadProcessPipe(name)) await rm(path.join(config.workDir, name), { recursive: true, force: true });
        }
      }
    } finally {
      await lock.release();
    }
  } catch (error) {
    log.info(`start-up cleanup skipped: ${errorMessage(error)}`);
  }
  // Scratch databases of restores and drills that were killed: not awaited, a server that is down must not hold up the start.
  for (const source of sources) {
    source.cleanLeftovers?.(log).catch((error: unknown) => log.warn(`${source.name}: clean-up of databases left by killed restores skipped: ${errorMessage(error)}`));
  }
}

/** A full that came due while the daemon was down runs now: judged by the source whose last full is oldest. */
function catchUp(config: Config, catalog: Catalog, log: Logger, runFull: () => void): void {
  if (!config.schedule.catchUp || config.schedule.full === null) return;
  const period = scheduleInfo(config, new Date()).find((s) => s.name === 'full')?.period_ms;
  const backups = catalog.listBackups();
  const lastFulls = config.sources.map((s) => newestBackupOf(backups, s.name, 'full'));
  const age = Math.max(...lastFulls.map((b) => (b ? Date.now() - Date.parse(b.finished_at) : Infinity)));
  if (period !== null && period !== undefined && age > period) {
    log.info(lastFulls.every(Boolean) ? `the last successful full backup of a source is older than the full schedule's period: catching up now` : 'no full backup of every source yet: catching up now');
    runFull();
  }
}
