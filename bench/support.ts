// What the benchmarks share: options, the throwaway cluster with the realistic pgbench
// database of /work/shared/reference/bench-data.md (for the PostgreSQL ones), timed
// children, a scratch folder that is always removed, stackback configs and plain-text tables.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { startPgCluster, type PgCluster } from '../test/support/pg-cluster.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The project's Node 24: the system Node is too old to run src/ with type stripping.
const NODE = join(ROOT, 'node_modules/.bin/node');
// The built CLI, as `npx stackback` runs it (the npm scripts build it first).
const CLI = join(ROOT, 'dist/stackback.js');
const GNU_TIME = '/usr/bin/time';
export const DB = 'bench';
export const MIB = 1024 * 1024;

export interface Options {
  scale: number;
  runs: number;
  json: boolean;
  /**
   * Another build's CLI (`--baseline PATH`) that `npm run bench` measures beside this one;
   * optional so that benches which frame their own options need not spell it out.
   */
  baseline?: string | null;
}

/** Wall time of one child, and its peak RSS and CPU when asked for. */
export interface Measure {
  seconds: number;
  peakRss: number | null;
  /** The process's own CPU, user + system, all its threads (not its children's); null when not sampled. */
  cpuSeconds?: number | null;
  /** CPU of the children it waited for (pg_dump under stackback). */
  childCpuSeconds?: number | null;
}

export interface Step {
  label: string;
  file: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  rss?: boolean;
  /** Sample the process's CPU from /proc (its own, and its reaped children's). */
  cpu?: boolean;
  /** Return the exit code instead of throwing when the child fails. */
  allowFailure?: boolean;
}

export interface Bench {
  options: Options;
  cluster: PgCluster;
  scratch: string;
  /** Client tools connect as the superuser over the socket. */
  pgEnv: NodeJS.ProcessEnv;
}

function parseOptions(argv: string[], defaultRuns: number): Options {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { runs: { type: 'string', default: String(defaultRuns) }, json: { type: 'boolean', default: false }, baseline: { type: 'string' } },
  });
  if (positionals.length > 1) throw new Error(`expected at most one argument (the scale), got: ${positionals.join(' ')}`);
  return {
    scale: positiveInt(positionals[0] ?? '50', 'scale'),
    runs: positiveInt(values.runs, '--runs'),
    json: values.json,
    baseline: values.baseline === undefined ? null : baselineCli(values.baseline),
  };
}

/**
 * The CLI of `--baseline PATH`: a checkout folder's built dist/stackback.js, or a stackback.js
 * named directly. Checked now rather than after the database is built.
 */
function baselineCli(path: string): string {
  const given = resolve(path);
  const cli = existsSync(given) && statSync(given).isDirectory() ? join(given, 'dist/stackback.js') : given;
  if (!existsSync(cli)) throw new Error(`--baseline ${path}: ${cli} does not exist (give a checkout built with npm ci && npm run build, or its dist/stackback.js)`);
  return cli;
}

/** `[scale] [--runs N] [--json] [--baseline PATH]` from the command line, for a bench that frames its own rounds. */
export function parseBenchOptions(defaultRuns: number, argv: string[] = process.argv.slice(2)): Options {
  return parseOptions(argv, defaultRuns);
}

export function positiveInt(text: string, what: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${what} must be a positive integer, got "${text}"`);
  return value;
}

/**
 * Runs one child to completion and times it. Peak RSS comes from GNU time (%M, KiB), which
 * reports the largest of the process and the children it reaped (pg_dump, pg_restore);
 * without GNU time, the process's own VmHWM is sampled instead.
 */
export async function run(bench: Pick<Bench, 'scratch'>, step: Step): Promise<Measure & { stdout: string; exitCode: number | null }> {
  const rssFile = step.rss && existsSync(GNU_TIME) ? join(bench.scratch, 'rss.txt') : null;
  const [file, args] = rssFile ? [GNU_TIME, ['-f', '%M', '-o', rssFile, step.file, ...step.args]] : [step.file, step.args];
  const started = performance.now();
  const child = execa(file, args, { env: step.env, stdin: 'ignore', reject: false });
  const stopSampling = step.rss && !rssFile && child.pid !== undefined ? sampleVmHwm(child.pid) : null;
  // Under GNU time the measured process is time's child.
  const stopCpu = step.cpu && child.pid !== undefined ? sampleCpu(child.pid, rssFile !== null) : null;
  const result = await child;
  const seconds = (performance.now() - started) / 1000;
  const sampled = stopSampling?.() ?? null;
  const cpu = stopCpu?.() ?? null;
  if (result.failed && !step.allowFailure) {
    throw new Error(`${step.label} failed (exit ${result.exitCode ?? result.signal}):\n${result.stderr || result.message}`);
  }
  const peakRss = rssFile ? await readGnuTimeRss(rssFile) : sampled;
  // A child killed by a signal has no exit code.
  return { seconds, peakRss, ...(cpu ? { cpuSeconds: cpu.own, childCpuSeconds: cpu.children } : {}), stdout: result.stdout, exitCode: result.exitCode ?? null };
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * Calls `read` now and every 50 ms until the returned stop function is called, which gives
 * what `read` returned last (a reading of a process that has exited keeps the one before).
 */
function sampleEvery50ms<T>(read: (last: T | null) => T | null): () => T | null {
  let last: T | null = null;
  const tick = () => {
    try {
      last = read(last) ?? last;
    } catch {
      // The process has exited: the last reading stands.
    }
  };
  tick();
  const timer = setInterval(tick, 50);
  return () => {
    clearInterval(timer);
    return last;
  };
}

/**
 * Polls /proc/<pid>/stat (utime, stime: every thread of the process, living or ended; cutime,
 * cstime: the children it reaped), so at most the final 50 ms before exit are missed.
 * `viaParent`: the process to sample is `pid`'s first child.
 */
function sampleCpu(pid: number, viaParent: boolean): () => { own: number; children: number } | null {
  let target: number | undefined = viaParent ? undefined : pid;
  return sampleEvery50ms(() => {
    target ??= Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')[0]) || undefined;
    if (target === undefined) return null;
    // Fields after the command name, which is in parentheses and may hold spaces.
    const stat = readFileSync(`/proc/${target}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = (i: number) => Number(fields[i - 3]);
    return { own: (ticks(14) + ticks(15)) / CLOCK_TICKS, children: (ticks(16) + ticks(17)) / CLOCK_TICKS };
  });
}

async function readGnuTimeRss(file: string): Promise<number> {
  // The last line is %M; a line before it may say how the command ended.
  const last = (await readFile(file, 'utf8')).trim().split('\n').pop() ?? '';
  const kib = Number(last);
  if (!Number.isFinite(kib) || last === '') throw new Error(`unexpected GNU time output in ${file}: ${last}`);
  return kib * 1024;
}

/** Polls VmHWM, a high-water mark, so only growth in the last 50 ms before exit can be missed. */
function sampleVmHwm(pid: number): () => number | null {
  return sampleEvery50ms((peak) => {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Math.max(peak ?? 0, Number(match[1]) * 1024) : null;
  });
}

export function pgTool(bench: Bench, label: string, tool: string, args: string[], rss = false): Step {
  return { label, file: join(bench.cluster.binDir, tool), args, env: bench.pgEnv, rss };
}

/** A step running this checkout's built CLI, or `cli` (a baseline's) under the same Node. */
export function stackback(label: string, args: string[], rss = false, cpu = false, cli = CLI): Step {
  return { label, file: NODE, args: [cli, ...args], rss, cpu };
}

/**
 * Flushes what earlier steps left dirty (the server's buffers and WAL, the kernel's page
 * cache) before a timed write-heavy step: otherwise a restore pays for the checkpoint and
 * writeback of whatever ran before it, and the order of the steps decides the ratio.
 */
export async function settle(bench: Bench): Promise<void> {
  await bench.cluster.psql('postgres', 'CHECKPOINT');
  await execa('sync');
}

/** The realistic pgbench database of bench-data.md: pgbench's schema, rows that compress ~2.3x. */
async function buildDatabase(bench: Bench): Promise<void> {
  const { scale } = bench.options;
  await bench.cluster.psql('postgres', `CREATE DATABASE ${DB}`);
  await run(bench, pgTool(bench, 'pgbench -I dt', 'pgbench', ['-i', '-s', String(scale), '-I', 'dt', DB]));
  await bench.cluster.psql(DB, realisticRows(scale));
  await run(bench, pgTool(bench, 'pgbench -I vp', 'pgbench', ['-i', '-s', String(scale), '-I', 'vp', DB]));
  // The build leaves dirty buffers behind; flush them now rather than during a timed run.
  await bench.cluster.psql(DB, 'CHECKPOINT');
}

function realisticRows(n: number): string {
  return `
INSERT INTO pgbench_branches (bid, bbalance) SELECT g, 0 FROM generate_series(1, ${n}) g;
INSERT INTO pgbench_tellers (tid, bid, tbalance)
  SELECT g, (g - 1) / 10 + 1, 0 FROM generate_series(1, 10 * ${n}) g;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
  SELECT g, (g - 1) / 100000 + 1, hashint4(g) % 100000,
         left(md5(g::text) || ' '
           || (array['alpha','beta','gamma','delta','north','south','pending','shipped','failed','retry'])
              [1 + abs(hashint4(g + 1)) % 10]
           || ' ' || to_char(timestamp '2020-01-01' + (abs(hashint4(g + 2)) % 100000000) * interval '1 second',
                             'YYYY-MM-DD HH24:MI:SS')
           || ' ' || substr(md5((g * 7)::text), 1, 16), 84)
  FROM generate_series(1, 100000 * ${n}) g;
`;
}

export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/**
 * A config for a fresh repository and catalog, so the first backup in it is a real full one.
 * `extra` adds top-level settings (the daemon's schedule and control socket, say).
 */
export async function writeConfig(bench: Bench, dir: string, database = DB, extra: Record<string, unknown> = {}): Promise<{ config: string; repository: string }> {
  const repository = join(dir, 'repo');
  const config = join(dir, 'stackback.yaml');
  const settings = {
    // The key beside the repository: nothing of a bench lands in /etc.
    repository: { path: repository, key_file: join(dir, 'repo.key') },
    catalog: { path: join(dir, 'catalog.db') },
    work_dir: join(dir, 'work'),
    log: { level: 'warn' },
    ...extra,
    sources: {
      postgres: [{ name: 'bench', host: bench.cluster.socketDir, port: bench.cluster.port, user: 'postgres', databases: [database], globals: false }],
    },
  };
  await writeFile(config, stringify(settings));
  return { config, repository };
}

// Aggregation over repetitions: fastest wall time (as the anchors use), and the worst case
// of peak RSS and bytes (bytes differ between runs only by the dump's timestamps).
export const fastest = (xs: number[]) => Math.min(...xs);
export const largest = (xs: number[]) => Math.max(...xs);
export const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
export const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? null : a / b);

export function verdict(value: number | null, limit: number | null): string {
  if (value === null) return 'skipped';
  if (limit === null) return '';
  return value <= limit ? 'PASS' : 'MISS';
}

export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('   ').trimEnd()).join('\n');
}

export const seconds = (s: number | undefined) => (s === undefined ? '-' : s.toFixed(2));
export const megabytes = (b: number | null | undefined) => (b === null || b === undefined ? '-' : (b / MIB).toFixed(1));

/** One repetition's measurements; `index` counts from 1. */
export type RunOnce<S> = (bench: Bench, index: number) => Promise<S>;
/** Sums up the repetitions: a text report, and the summary that goes into the JSON one. */
export type Finish<S> = (options: Options, databaseBytes: number, samples: S[]) => { text: string; summary: object };

/**
 * The common frame of a benchmark: parses `[scale] [--runs N] [--json] [--baseline PATH]`, starts a throwaway
 * cluster, builds the realistic database in it, runs the repetitions one after another in
 * this one process (so that ratios compare like with like on a machine whose speed drifts),
 * and always cleans up.
 */
export function runBenchmark<S>(defaultRuns: number, runOnce: RunOnce<S>, finish: Finish<S>): void {
  runMain(() => withBench(defaultRuns, runOnce, finish));
}

/** Runs a benchmark's main function: a failure is one line on stderr and exit code 1. */
export function runMain(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}

/** Registers what must be stopped (a server) before the scratch folder is removed. */
export type OnCleanup = (stop: () => Promise<void>) => void;

/**
 * Runs `body` in a fresh temp folder and always removes it afterwards, on Ctrl-C too, after
 * stopping what the body registered with `onCleanup`.
 */
export async function withScratch(body: (scratch: string, onCleanup: OnCleanup) => Promise<void>): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'stackback-bench-'));
  let stop: (() => Promise<void>) | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await stop?.();
      await rm(scratch, { recursive: true, force: true });
    })());
  // Ctrl-C would otherwise leave a server running and gigabytes in the temp folder.
  // Not `once`: execa's signal-exit handler runs after ours and kills the process when it
  // finds no other SIGINT listener left.
  process.on('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    await body(scratch, (fn) => {
      stop = fn;
    });
  } finally {
    await cleanup();
  }
}

/** With --json, stdout carries the JSON document alone so it can be piped; the text goes to stderr. */
export function printReport(text: string, json: object | null): void {
  (json ? process.stderr : process.stdout).write(text);
  if (json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
}

/**
 * Starts the throwaway cluster (stopped through `onCleanup`) and builds the realistic
 * database in it at `options.scale`; resolves with the bench and the database's size.
 */
export async function startBench(options: Options, scratch: string, onCleanup: OnCleanup): Promise<{ bench: Bench; databaseBytes: number }> {
  process.stderr.write('starting a throwaway PostgreSQL cluster\n');
  const cluster = await startPgCluster();
  onCleanup(() => cluster.stop());
  const bench: Bench = { options, cluster, scratch, pgEnv: { PGHOST: cluster.socketDir, PGPORT: String(cluster.port), PGUSER: 'postgres' } };
  process.stderr.write(`building the realistic pgbench database at scale ${options.scale}\n`);
  await buildDatabase(bench);
  const databaseBytes = Number(await cluster.psql(DB, `SELECT pg_database_size('${DB}')`));
  return { bench, databaseBytes };
}

async function withBench<S>(defaultRuns: number, runOnce: RunOnce<S>, finish: Finish<S>): Promise<void> {
  const options = parseOptions(process.argv.slice(2), defaultRuns);
  await withScratch(async (scratch, onCleanup) => {
    const { bench, databaseBytes } = await startBench(options, scratch, onCleanup);
    const samples: S[] = [];
    for (let i = 1; i <= options.runs; i++) samples.push(await runOnce(bench, i));
    const { text, summary } = finish(options, databaseBytes, samples);
    const json = options.json ? { scale: options.scale, runs: options.runs, database_bytes: databaseBytes, ...summary, samples } : null;
    printReport(text, json);
  });
}
