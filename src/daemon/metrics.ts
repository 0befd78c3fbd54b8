import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Counter, Gauge, Registry } from 'prom-client';
import { type Catalog, newestBackupOf } from '../catalog/catalog.ts';
import { isLoopbackHost } from '../config/formats.ts';
import type { Config } from '../config/load.ts';
import { errorMessage, StackbackError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { writeFileDurably } from '../repository/atomic-file.ts';
import { isSafetyCopy } from '../repository/manifest.ts';
import { STACKBACK_VERSION } from '../version.ts';
import type { JobRunner, JobView } from './queue.ts';
import { addressText, TcpListener } from './tcp-listener.ts';
import { buildStatus } from './status.ts';

/**
 * Prometheus metrics (issue 17): one registry of stackback's own series, every value read
 * from the catalog when it is scraped (collect callbacks), so a scrape is always current and
 * every series a person alerts on exists from the daemon's first start — counters at 0, "last
 * success" timestamps at 0 (never). Served on `GET /metrics` of both control sockets, on an
 * optional TCP listener (metrics.listen, loopback unless metrics.allow_non_loopback), and
 * written to metrics.textfile for node_exporter's textfile collector after every job.
 * Base units: seconds since the epoch for times, bytes for sizes.
 */
export interface DaemonMetrics {
  /** The exposition text (Prometheus text format 0.0.4), from the catalog and the daemon's state now. */
  render(): Promise<string>;
  /** The Content-Type of `render()`'s text. */
  readonly contentType: string;
  /** Writes metrics.textfile atomically (temp file in the same folder, fsync, rename) when it is set; never throws (logs). */
  writeTextfile(): Promise<void>;
  /**
   * Makes the TCP listener match metrics.listen now: starts it, moves it to a new address,
   * or stops it (null). Serves GET /metrics only (404 otherwise). Resolves once listening;
   * rejects (CONFIG_INVALID) when the address cannot be bound or is not loopback while
   * metrics.allow_non_loopback is false — the old listener, if any, keeps serving then.
   */
  listen(): Promise<void>;
  /** The address the TCP listener is bound to, or null. */
  address(): net.AddressInfo | null;
  /**
   * `run`, followed by a textfile write once the queue has recorded the job's end (whatever
   * its outcome): wrap every runner the daemon queues with it.
   */
  afterJob(run: JobRunner): JobRunner;
  /** Counts a failed notification delivery (stackback_notification_failures_total{channel}). */
  notificationFailed(channel: string): void;
  /** Stops the listener and closes the catalog reader. */
  close(): Promise<void>;
}

export interface DaemonMetricsOptions {
  config: () => Config;
  catalog: Catalog;
  log: Logger;
  startedAt: Date;
  /** The job running now, or null. */
  running: () => JobView | null;
  /** Notification channel names, so that their failure counters exist (at 0) before any failure. */
  notificationChannels?: () => string[];
}

/** The job kinds of the run history that have a schedule and their own "last run" series. */
const JOBS = ['backup', 'verify', 'copy', 'prune'] as const;
/** Every way a finished run ends (runs.status). */
const RESULTS = ['ok', 'partial', 'failed', 'interrupted', 'stalled'] as const;
const BACKUP_KINDS = ['full', 'incremental'] as const;
const VERIFY_LEVELS = ['quick', 'deep', 'drill'] as const;
const BACKUP_STATUSES = ['ok', 'partial'] as const;

/** Connections the metrics TCP listener serves at once. */
const MAX_METRICS_CONNECTIONS = 16;

const seconds = (iso: string | null | undefined): number => {
  if (!iso) return 0;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : 0;
};

/**
 * Queries the catalog's tables need for aggregates the Catalog class has no method for (counts
 * per job and result, the newest success per job, verdicts per source): through a read-only
 * connection of its own, which in WAL mode never blocks the daemon's writes.
 */
class CatalogReader {
  private db: Database.Database | undefined;
  private readonly file: string;

  constructor(file: string) {
    this.file = file;
  }

  private open(): Database.Database {
    if (!this.db) {
      this.db = new Database(this.file, { readonly: true, fileMustExist: true });
      this.db.pragma('busy_timeout = 5000');
    }
    return this.db;
  }

  /** Finished runs per kind and status. */
  runCounts(): { kind: string; status: string; n: number }[] {
    return this.open().prepare("SELECT kind, status, count(*) AS n FROM runs WHERE status <> 'running' GROUP BY kind, status").all() as { kind: string; status: string; n: number }[];
  }

  /** When the newest run of each kind that ended ok finished. */
  lastSuccesses(): Map<string, string> {
    const rows = this.open().prepare("SELECT kind, max(finished_at) AS at FROM runs WHERE status = 'ok' GROUP BY kind").all() as { kind: string; at: string }[];
    return new Map(rows.map((r) => [r.kind, r.at]));
  }

  /**
   * Per verification level and source: the newest verdict's time and the newest good one's. A
   * verdict names its artifacts, whose ids start with their source's name ("main/db/app"), so
   * this holds for backups that were pruned since. A source is good in a verification when all
   * of its artifacts were.
   */
  verdictsBySource(): { level: string; source: string; last: string; last_ok: string | null }[] {
    return this.open()
      .prepare(
        `SELECT level, source, max(at) AS last, max(CASE WHEN ok = 1 THEN at END) AS last_ok FROM (
           SELECT v.id, v.level, v.at,
                  substr(json_extract(j.value, '$.artifact'), 1, instr(json_extract(j.value, '$.artifact'), '/') - 1) AS source,
                  min(json_extract(j.value, '$.ok')) AS ok
           FROM verifications v, json_each(v.detail, '$.artifacts') j
           WHERE json_valid(v.detail)
           GROUP BY v.id, source)
         GROUP BY level, source`,
      )
      .all() as { level: string; source: string; last: string; last_ok: string | null }[];
  }

  close(): void {
    this.db?.close();
    this.db = undefined;
  }
}

export function createDaemonMetrics(options: DaemonMetricsOptions): DaemonMetrics {
  const { config, catalog, log, startedAt, running } = options;
  const reader = new CatalogReader(config().catalog.path);
  const registry = new Registry();

  // One snapshot of the catalog per scrape, shared by the collect callbacks (prom-client calls them one after another).
  let snapshot: { at: number; value: ReturnType<typeof readState> } | undefined;
  const state = () => {
    const now = Date.now();
    if (!snapshot || now - snapshot.at > 200) snapshot = { at: now, value: readState(new Date(now)) };
    return snapshot.value;
  };
  function readState(now: Date) {
    const current = config();
    const backups = catalog.listBackups();
    const status = buildStatus(current, catalog, null, now);
    return {
      config: current,
      backups,
      status,
      lastRuns: new Map(JOBS.map((job) => [job, catalog.lastRun(job)])),
      runCounts: reader.runCounts(),
      lastSuccesses: reader.lastSuccesses(),
      verdicts: reader.verdictsBySource(),
    };
  }

  new Gauge({
    name: 'stackback_up',
    help: 'Whether the stackback daemon is up and answering (1). Alert on absent(stackback_up) or the scrape job\'s up == 0.',
    registers: [registry],
    collect() {
      this.set(1);
    },
  });
  new Gauge({
    name: 'stackback_build_info',
    help: 'The running stackback version (always 1).',
    labelNames: ['version'],
    registers: [registry],
    collect() {
      this.reset();
      this.set({ version: STACKBACK_VERSION }, 1);
    },
  });
  new Gauge({
    name: 'stackback_start_time_seconds',
    help: 'When the daemon started, in seconds since the epoch.',
    registers: [registry],
    collect() {
      this.set(startedAt.getTime() / 1000);
    },
  });
  new Gauge({
    name: 'stackback_last_success_timestamp_seconds',
    help: 'When the newest successful run ended, in seconds since the epoch (0: never). backup: per source and kind (full, incremental), from the newest backup that holds a complete copy of the source; verify: per source and level (quick, deep, drill); copy and prune: per job.',
    labelNames: ['job', 'kind', 'source'],
    registers: [registry],
    collect() {
      const { config: current, backups, lastSuccesses, verdicts } = state();
      this.reset();
      for (const { name } of current.sources) {
        for (const kind of BACKUP_KINDS) this.set({ job: 'backup', kind, source: name }, seconds(newestBackupOf(backups, name, kind)?.finished_at));
        for (const level of VERIFY_LEVELS) this.set({ job: 'verify', kind: level, source: name }, seconds(verdicts.find((v) => v.level === level && v.source === name)?.last_ok));
      }
      for (const job of ['copy', 'prune'] as const) this.set({ job }, seconds(lastSuccesses.get(job)));
    },
  });
  const lastRunGauge = (name: string, help: string, value: (run: NonNullable<ReturnType<Catalog['lastRun']>>) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['job'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [job, run] of state().lastRuns) if (run) this.set({ job }, value(run));
      },
    });
  lastRunGauge('stackback_last_run_timestamp_seconds', 'When the newest finished run of the job ended, in seconds since the epoch (absent: no run yet).', (run) => seconds(run.finished_at ?? run.started_at));
  lastRunGauge('stackback_last_run_success', 'Whether the newest finished run of the job ended ok (1) or not (0: partial, failed, interrupted or stalled; absent: no run yet).', (run) => (run.status === 'ok' ? 1 : 0));
  lastRunGauge('stackback_last_run_duration_seconds', 'How long the newest finished run of the job took, in seconds (absent: no run yet).', (run) =>
    run.finished_at ? Math.max(0, (Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000) : 0,
  );
  new Counter({
    name: 'stackback_runs_total',
    help: 'Finished runs by job and result (ok, partial, failed, interrupted, stalled), from the catalog\'s run history.',
    labelNames: ['job', 'result'],
    registers: [registry],
    collect() {
      this.reset();
      for (const job of JOBS) for (const result of RESULTS) this.inc({ job, result }, 0);
      for (const { kind, status, n } of state().runCounts) this.inc({ job: kind, result: status }, n);
    },
  });
  new Gauge({
    name: 'stackback_job_running',
    help: 'Whether a job of this kind runs now (1) or not (0).',
    labelNames: ['job'],
    registers: [registry],
    collect() {
      this.reset();
      const now = running()?.kind;
      for (const job of new Set<string>([...JOBS, 'restore', 'delete', ...(now ? [now] : [])])) this.set({ job }, job === now ? 1 : 0);
    },
  });
  const newestBackup = () => state().backups.findLast((b) => !isSafetyCopy(b.name));
  new Gauge({
    name: 'stackback_backup_bytes_read',
    help: 'Bytes the newest backup read from its sources (0: no backup yet).',
    registers: [registry],
    collect() {
      this.set(newestBackup()?.bytes_read ?? 0);
    },
  });
  new Gauge({
    name: 'stackback_backup_bytes_stored',
    help: 'Bytes the newest backup added to the repository, after deduplication and compression (0: no backup yet).',
    registers: [registry],
    collect() {
      this.set(newestBackup()?.bytes_stored ?? 0);
    },
  });
  new Gauge({
    name: 'stackback_repository_bytes',
    help: 'Bytes of every chunk object the catalog indexes: the local repository\'s size, near enough.',
    registers: [registry],
    collect() {
      this.set(state().status.repository.bytes);
    },
  });
  new Gauge({
    name: 'stackback_backups',
    help: 'Backups in the catalog by status (ok, partial).',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      this.reset();
      const { backups } = state();
      for (const status of BACKUP_STATUSES) this.set({ status }, backups.filter((b) => b.status === status).length);
    },
  });
  new Gauge({
    name: 'stackback_drill_last_success_timestamp_seconds',
    help: 'When the newest restore drill that succeeded for the source was recorded, in seconds since the epoch (0: never).',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      const { config: current, verdicts } = state();
      this.reset();
      for (const { name } of current.sources) this.set({ source: name }, seconds(verdicts.find((v) => v.level === 'drill' && v.source === name)?.last_ok));
    },
  });
  new Gauge({
    name: 'stackback_drill_last_timestamp_seconds',
    help: 'When the newest restore drill of the source was recorded, whatever its verdict (0: never). Greater than stackback_drill_last_success_timestamp_seconds: the last drill failed.',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      const { config: current, verdicts } = state();
      this.reset();
      for (const { name } of current.sources) this.set({ source: name }, seconds(verdicts.find((v) => v.level === 'drill' && v.source === name)?.last));
    },
  });
  new Gauge({
    name: 'stackback_remote_last_copy_timestamp_seconds',
    help: 'When the newest copy that succeeded for the remote ended, in seconds since the epoch (0: never).',
    labelNames: ['remote'],
    registers: [registry],
    collect() {
      this.reset();
      for (const remote of state().status.remotes) this.set({ remote: remote.name }, seconds(remote.last_copy_at));
    },
  });
  new Gauge({
    name: 'stackback_remote_last_attempt_timestamp_seconds',
    help: 'When the newest copy attempt at the remote ended, whatever its outcome (0: never).',
    labelNames: ['remote'],
    registers: [registry],
    collect() {
      this.reset();
      for (const remote of state().status.remotes) this.set({ remote: remote.name }, seconds(remote.last_attempt_at));
    },
  });
  new Gauge({
    name: 'stackback_remote_pending_backups',
    help: 'Local backups the remote should hold (its retention and filters applied) that are not there yet.',
    labelNames: ['remote'],
    registers: [registry],
    collect() {
      this.reset();
      for (const remote of state().status.remotes) this.set({ remote: remote.name }, remote.missing);
    },
  });
  const notificationFailures = new Counter({
    name: 'stackback_notification_failures_total',
    help: 'Notification deliveries that failed after their retries, by channel, since the daemon started.',
    labelNames: ['channel'],
    registers: [registry],
    collect() {
      for (const channel of options.notificationChannels?.() ?? []) this.inc({ channel }, 0);
    },
  });

  const render = async () => {
    snapshot = undefined;
    try {
      return await registry.metrics();
    } finally {
      snapshot = undefined;
    }
  };

  let writing: Promise<void> = Promise.resolve();
  const writeTextfile = (): Promise<void> => {
    const file = config().metrics.textfile;
    if (!file) return writing;
    // One write at a time: the last one to start is the one that stays.
    writing = writing.then(async () => {
      try {
        await replaceTextfile(file, await render());
      } catch (error) {
        log.error({ file, err: errorMessage(error) }, `metrics.textfile ${file} not written: ${errorMessage(error)}`);
      }
    });
    return writing;
  };

  const listener = new TcpListener('metrics.listen', log);
  const listen = async (): Promise<void> => {
    const { listen: wanted, allowNonLoopback } = config().metrics;
    if (wanted && !allowNonLoopback && !isLoopbackHost(wanted.host)) {
      throw new StackbackError('CONFIG_INVALID', `metrics.listen ${addressText(wanted)} is not a loopback address: the metrics would be open to the network`, 'listen on 127.0.0.1 or ::1, or set metrics.allow_non_loopback: true to mean it');
    }
    if ((await listener.follow(wanted, () => metricsServer(render, log))) && wanted) log.info({ listen: addressText(wanted) }, `metrics served on http://${addressText(wanted)}/metrics`);
  };

  return {
    render,
    contentType: registry.contentType,
    writeTextfile,
    listen,
    address: () => listener.address(),
    afterJob: (run) => async (signal, progress) => {
      try {
        return await run(signal, progress);
      } finally {
        // After the queue's own bookkeeping (a few microtasks on), so the file no longer shows the job running.
        setImmediate(() => void writeTextfile());
      }
    },
    notificationFailed: (channel) => notificationFailures.inc({ channel }),
    async close() {
      await listener.close();
      await writing;
      reader.close();
    },
  };
}

/** The TCP listener: GET (and HEAD) /metrics, nothing else. */
function metricsServer(render: () => Promise<string>, log: Logger): http.Server {
  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, (request, response) => {
    const url = new URL(request.url ?? '/', 'http://stackback');
    const reply = (status: number, body: string, headers: http.OutgoingHttpHeaders = {}) => {
      response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...headers });
      response.end(request.method === 'HEAD' ? undefined : body);
    };
    if (url.pathname !== '/metrics') return reply(404, 'not found: stackback serves only /metrics here\n');
    if (request.method !== 'GET' && request.method !== 'HEAD') return reply(405, `${request.method} is not allowed on /metrics\n`, { allow: 'GET, HEAD' });
    render().then(
      (text) => reply(200, text, { 'content-type': METRICS_CONTENT_TYPE }),
      (error: unknown) => {
        log.error({ err: errorMessage(error) }, `metrics not rendered: ${errorMessage(error)}`);
        reply(500, `metrics not rendered: ${errorMessage(error)}\n`);
      },
    );
  });
  server.maxConnections = MAX_METRICS_CONNECTIONS;
  return server;
}

/** The Content-Type of the exposition (Prometheus text format 0.0.4). */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/**
 * Replaces `file` whole (temp file in the same folder, ending in .tmp so the textfile collector
 * skips it; fsync; rename): a reader sees the old file or the new one. Mode 0644 past the
 * unit's UMask=0027: node_exporter runs as another user.
 */
function replaceTextfile(file: string, text: string): Promise<void> {
  return writeFileDurably(path.dirname(file), file, Buffer.from(text), { mode: 0o644 });
}
