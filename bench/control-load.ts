// Latency of the daemon's control channel under load: bursts of concurrent
// `GET /api/backup/status`, first with the daemon idle, then while a full backup of the
// realistic pgbench database is dumping. Target: p99 < 100 ms during the backup.
//
//   npm run bench:control -- [--requests N] [--scale S] [--rounds R] [--json]
//                                        (200 requests, scale 10, 3 rounds by default)
//
// Each round runs the built daemon (dist/) on a fresh repository, so every round's backup
// is a real full one, and stops it with SIGTERM, which must end it with exit code 0.
// The verdict takes the median of the rounds' p99, as single rounds are noisy here.
import { mkdir, rm } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { daemonRequest, followJob } from '../src/daemon/client.ts';
import type { JobView } from '../src/daemon/queue.ts';
import type { StatusDocument } from '../src/daemon/status.ts';
import { DB, formatTable, megabytes, positiveInt, printReport, runMain, seconds, stackback, startBench, withScratch, writeConfig, type Bench, type Options } from './support.ts';

const TARGET_P99_MS = 100;
/** A burst request that takes this long counts as failed: far past any target, not a hang. */
const REQUEST_TIMEOUT_MS = 10_000;
const READY_TIMEOUT_MS = 20_000;
/** Covers the backup's planning phase (connecting, sizing the database) at large scales. */
const DUMPING_TIMEOUT_MS = 120_000;
const POLL_MS = 10;

interface ControlOptions extends Options {
  requests: number;
}

/** One burst request: latency, and what it saw running (null: nothing, or no usable answer). */
interface Answer {
  ms: number;
  ok: boolean;
  runningId: number | null;
  error: string | null;
}

interface BurstStats {
  answered: number;
  failures: number;
  first_failure: string | null;
  /** Latency over the answered requests; null when none was answered. */
  ms: { min: number; median: number; p90: number; p99: number; max: number } | null;
}

interface Round {
  idle: BurstStats;
  backup: BurstStats & { job: number; saw_running: number; backup_s: number };
}

function parseOptions(argv: string[]): ControlOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      requests: { type: 'string', default: '200' },
      scale: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '3' },
      json: { type: 'boolean', default: false },
    },
  });
  return {
    requests: positiveInt(values.requests, '--requests'),
    scale: positiveInt(values.scale, '--scale'),
    runs: positiveInt(values.rounds, '--rounds'),
    json: values.json,
  };
}

/** Headroom over a burst's connections: the bench's own job polling and event stream. */
const BENCH_CONNECTIONS = 8;

/**
 * Schedules off, so the only job is the bench's own backup. Bursts go to the read-only
 * socket, as monitoring does; it takes the whole burst at once instead of answering 503.
 */
function daemonSettings(socket: string, adminSocket: string, requests: number): Record<string, unknown> {
  return {
    timezone: 'UTC',
    schedule: { full: 'off', incremental: 'off', verify: 'off', prune: 'off', catch_up: false },
    control: { socket, admin_socket: adminSocket, max_connections: requests + BENCH_CONNECTIONS },
  };
}

/**
 * One GET on a connection of its own (agent: false: the global agent would reuse kept-alive
 * connections), timed from the connection to the answer's last byte. Never rejects.
 */
function timedStatus(socketPath: string): Promise<Answer> {
  let started = performance.now();
  return new Promise((resolve) => {
    const done = (ok: boolean, runningId: number | null, error: string | null) => resolve({ ms: performance.now() - started, ok, runningId, error });
    const request = http.get({ socketPath, path: '/api/backup/status', agent: false, timeout: REQUEST_TIMEOUT_MS }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', (error) => done(false, null, error.message));
      response.on('end', () => {
        if (response.statusCode !== 200) return done(false, null, `HTTP ${response.statusCode}`);
        try {
          const status = JSON.parse(Buffer.concat(chunks).toString('utf8')) as StatusDocument;
          done(true, status.running?.id ?? null, null);
        } catch {
          done(false, null, 'the answer is not JSON');
        }
      });
    });
    // Not timed from the call: setting up a whole burst of requests keeps this process busy
    // for 10-60 ms before the first is even sent, a wait no client of the daemon has.
    request.once('socket', (socket) => socket.once('connect', () => (started = performance.now())));
    request.on('timeout', () => request.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    request.on('error', (error) => done(false, null, error.message));
  });
}

/** `count` requests started at once; their answers still compete with each other in this process. */
function burst(socket: string, count: number): Promise<Answer[]> {
  return Promise.all(Array.from({ length: count }, () => timedStatus(socket)));
}

/** Nearest-rank percentile of ascending `sorted`. */
const percentile = (sorted: number[], p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
const ascending = (xs: number[]) => [...xs].sort((a, b) => a - b);

function burstStats(answers: Answer[]): BurstStats {
  const answered = answers.filter((a) => a.ok);
  const sorted = ascending(answered.map((a) => a.ms));
  const ms = sorted.length === 0 ? null : { min: sorted[0]!, median: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: sorted.at(-1)! };
  return { answered: answered.length, failures: answers.length - answered.length, first_failure: answers.find((a) => !a.ok)?.error ?? null, ms };
}

function startDaemon(config: string) {
  const { file, args } = stackback('stackback daemon', ['daemon', '--config', config]);
  // A daemon that ignores SIGTERM is killed after 10 s, and then fails the exit-0 check.
  const child = execa(file, args, { all: true, reject: false, stdin: 'ignore', forceKillAfterDelay: 10_000 });
  const daemon = { child, exited: false };
  // reject: false, so the promise only ever resolves.
  void child.then(() => (daemon.exited = true));
  return daemon;
}

type Daemon = ReturnType<typeof startDaemon>;

async function waitUntilAnswering(daemon: Daemon, socket: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (daemon.exited) throw new Error(`the daemon exited before answering:\n${(await daemon.child).all}`);
    // Before the daemon listens, the socket is missing and the request fails: try again.
    const answer = await daemonRequest(socket, 'GET', '/api/backup/status', undefined, 1000).catch(() => undefined);
    if (answer?.status === 200) return;
    if (Date.now() > deadline) throw new Error(`the daemon did not answer on ${socket} within ${READY_TIMEOUT_MS / 1000} s`);
    await sleep(50);
  }
}

/** Runs `body` against a daemon on `config`, then stops it with SIGTERM; it must exit 0. */
async function withDaemon<T>(config: string, socket: string, body: () => Promise<T>): Promise<T> {
  const daemon = startDaemon(config);
  try {
    await waitUntilAnswering(daemon, socket);
    const result = await body();
    daemon.child.kill('SIGTERM');
    const { exitCode, signal, all } = await daemon.child;
    if (exitCode !== 0) throw new Error(`the daemon did not exit 0 on SIGTERM (${exitCode ?? signal}):\n${all}`);
    return result;
  } finally {
    // A failed round must not leave the daemon behind, holding the folder about to be removed.
    if (!daemon.exited) {
      daemon.child.kill('SIGKILL');
      await daemon.child;
    }
  }
}

async function getJob(socket: string, id: number): Promise<JobView> {
  const { status, body } = await daemonRequest(socket, 'GET', `/api/jobs/${id}`);
  if (status !== 200) throw new Error(`GET /api/jobs/${id} answered ${status}: ${JSON.stringify(body)}`);
  return body as JobView;
}

/** Polls tightly: a small database is dumped in well under a second. */
async function waitUntilDumping(socket: string, id: number): Promise<void> {
  const deadline = Date.now() + DUMPING_TIMEOUT_MS;
  for (;;) {
    const job = await getJob(socket, id);
    if (job.state === 'running' && job.progress?.phase === 'dumping') return;
    if (job.state !== 'queued' && job.state !== 'running') throw new Error(`backup job ${id} ended (${job.state}) before it was seen dumping: use a larger --scale`);
    if (Date.now() > deadline) throw new Error(`backup job ${id} was not dumping within ${DUMPING_TIMEOUT_MS / 1000} s (phase ${job.progress?.phase ?? 'none'})`);
    await sleep(POLL_MS);
  }
}

async function startFullBackup(adminSocket: string): Promise<number> {
  const { status, body } = await daemonRequest(adminSocket, 'POST', '/api/backup/create', { type: 'full' });
  if (status !== 202) throw new Error(`POST /api/backup/create answered ${status}: ${JSON.stringify(body)}`);
  return (body as { job: JobView }).job.id;
}

/** A burst while a full backup is dumping; the backup must then end ok. */
async function backupBurst(socket: string, adminSocket: string, requests: number): Promise<Round['backup']> {
  const id = await startFullBackup(adminSocket);
  await waitUntilDumping(socket, id);
  const answers = await burst(socket, requests);
  const last = await followJob(socket, id, () => {});
  if (last.state !== 'ok') throw new Error(`backup job ${id} ended ${last.state}: ${last.error?.message ?? JSON.stringify(last.result)}`);
  const job = await getJob(socket, id);
  const backupSeconds = (Date.parse(job.finished_at!) - Date.parse(job.started_at!)) / 1000;
  return { ...burstStats(answers), job: id, saw_running: answers.filter((a) => a.runningId === id).length, backup_s: backupSeconds };
}

async function runRound(bench: Bench, requests: number, index: number): Promise<Round> {
  const dir = join(bench.scratch, `round-${index}`);
  const log = (what: string) => process.stderr.write(`[round ${index}/${bench.options.runs}] ${what}\n`);
  await mkdir(dir);
  try {
    const socket = join(dir, 'control.sock');
    const adminSocket = join(dir, 'admin.sock');
    const { config } = await writeConfig(bench, dir, DB, daemonSettings(socket, adminSocket, requests));
    // The admin socket is listened on last: once it answers, both do.
    return await withDaemon(config, adminSocket, async () => {
      log(`idle daemon: ${requests} concurrent GET /api/backup/status`);
      const idle = burstStats(await burst(socket, requests));
      log(`full backup dumping: ${requests} concurrent GET /api/backup/status`);
      return { idle, backup: await backupBurst(socket, adminSocket, requests) };
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The median over the rounds of each round's p99; null when some round answered nothing. */
function medianP99(stats: BurstStats[]): number | null {
  const p99s = stats.map((s) => s.ms?.p99);
  return p99s.every((p): p is number => p !== undefined) ? percentile(ascending(p99s), 50) : null;
}

function summarize(rounds: Round[]) {
  const idle = medianP99(rounds.map((r) => r.idle));
  const backup = medianP99(rounds.map((r) => r.backup));
  const failures = rounds.reduce((sum, r) => sum + r.idle.failures + r.backup.failures, 0);
  const verdict = backup !== null && backup < TARGET_P99_MS ? 'PASS' : 'MISS';
  return { idle_p99_ms_median: idle, backup_p99_ms_median: backup, target_p99_ms: TARGET_P99_MS, verdict, failures };
}

const ms = (value: number | null | undefined) => (value === null || value === undefined ? '-' : value.toFixed(1));

function burstRow(label: string, s: BurstStats, saw: string): string[] {
  return [label, String(s.answered), String(s.failures), saw, ms(s.ms?.min), ms(s.ms?.median), ms(s.ms?.p90), ms(s.ms?.p99), ms(s.ms?.max)];
}

function report(options: ControlOptions, databaseBytes: number, rounds: Round[], summary: ReturnType<typeof summarize>): string {
  const table = formatTable([
    ['round: daemon', 'answered', 'failed', 'saw backup', 'min ms', 'median ms', 'p90 ms', 'p99 ms', 'max ms'],
    ...rounds.flatMap((r, i) => [burstRow(`${i + 1}: idle`, r.idle, '-'), burstRow(`${i + 1}: full backup running`, r.backup, String(r.backup.saw_running))]),
  ]);
  const backups = rounds.map((r, i) => `round ${i + 1}: job ${r.backup.job} ok in ${seconds(r.backup.backup_s)} s`).join(', ');
  const failures = rounds.flatMap((r) => [r.idle.first_failure, r.backup.first_failure]).filter((f) => f !== null);
  const target = formatTable([
    ['target', 'value', 'limit', ''],
    [`p99 during a running backup (median of ${rounds.length} round(s))`, `${ms(summary.backup_p99_ms_median)} ms`, `< ${TARGET_P99_MS} ms`, summary.verdict],
    [`p99 idle (median of ${rounds.length} round(s), for comparison)`, `${ms(summary.idle_p99_ms_median)} ms`, '', ''],
  ]);
  return [
    `stackback control channel under load: scale ${options.scale}, database ${megabytes(databaseBytes)} MiB, ` +
      `${options.requests} concurrent GET /api/backup/status per burst, each on its own connection`,
    '',
    table,
    `(latency over the answered requests, nearest-rank percentiles; full backups: ${backups})`,
    ...(failures.length > 0 ? [`first failure: ${failures[0]}`] : []),
    '',
    target,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  await withScratch(async (scratch, onCleanup) => {
    const { bench, databaseBytes } = await startBench(options, scratch, onCleanup);
    const rounds: Round[] = [];
    for (let i = 1; i <= options.runs; i++) rounds.push(await runRound(bench, options.requests, i));
    const summary = summarize(rounds);
    // Unanswered requests are a failure of the daemon, not a missed target.
    if (summary.failures > 0) process.exitCode = 1;
    const json = options.json ? { scale: options.scale, requests: options.requests, rounds: options.runs, database_bytes: databaseBytes, ...summary, samples: rounds } : null;
    printReport(report(options, databaseBytes, rounds, summary), json);
  });
}

runMain(main);
