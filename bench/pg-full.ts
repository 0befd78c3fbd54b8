// Full backup and restore of one PostgreSQL database: stackback against the pg_dump
// baselines of /work/shared/reference/bench-data.md, on that page's realistic pgbench data.
//
//   npm run bench -- [scale] [--runs N] [--json]      (scale 50, 2 runs by default)
//
// Every tool runs against one throwaway cluster, in the same process run, so the ratios
// compare like with like on a machine whose absolute speed varies by ±30%.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { startPgCluster, type PgCluster } from '../test/support/pg-cluster.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The project's Node 24: the system Node is too old to run src/ with type stripping.
const NODE = join(ROOT, 'node_modules/.bin/node');
// The built CLI, as `npx stackback` runs it (npm run bench builds it first).
const CLI = join(ROOT, 'dist/cli/main.js');
const GNU_TIME = '/usr/bin/time';
const ZSTD = '/usr/bin/zstd';
const DB = 'bench';
const MIB = 1024 * 1024;

interface Options {
  scale: number;
  runs: number;
  json: boolean;
}

/** Wall time of one child, and its peak RSS when asked for. */
interface Measure {
  seconds: number;
  peakRss: number | null;
}

interface Step {
  label: string;
  file: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  rss?: boolean;
}

/** What one repetition measured. */
interface Sample {
  pgDumpFc: Measure & { bytes: number };
  zstd: (Measure & { bytes: number }) | null;
  backup: Measure & { name: string; bytes: number; listedBytes: number; bytesRead: number };
  pgRestore: Measure;
  restore: Measure;
}

interface Bench {
  options: Options;
  cluster: PgCluster;
  scratch: string;
  /** Client tools connect as the superuser over the socket. */
  pgEnv: NodeJS.ProcessEnv;
}

function parseOptions(argv: string[]): Options {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { runs: { type: 'string', default: '2' }, json: { type: 'boolean', default: false } },
  });
  if (positionals.length > 1) throw new Error(`expected at most one argument (the scale), got: ${positionals.join(' ')}`);
  return { scale: positiveInt(positionals[0] ?? '50', 'scale'), runs: positiveInt(values.runs, '--runs'), json: values.json };
}

function positiveInt(text: string, what: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${what} must be a positive integer, got "${text}"`);
  return value;
}

/**
 * Runs one child to completion and times it. Peak RSS comes from GNU time (%M, KiB), which
 * reports the largest of the process and the children it reaped (pg_dump, pg_restore);
 * without GNU time, the process's own VmHWM is sampled instead.
 */
async function run(bench: Bench, step: Step): Promise<Measure & { stdout: string }> {
  const rssFile = step.rss && existsSync(GNU_TIME) ? join(bench.scratch, 'rss.txt') : null;
  const [file, args] = rssFile ? [GNU_TIME, ['-f', '%M', '-o', rssFile, step.file, ...step.args]] : [step.file, step.args];
  const started = performance.now();
  const child = execa(file, args, { env: step.env, stdin: 'ignore', reject: false });
  const stopSampling = step.rss && !rssFile && child.pid !== undefined ? sampleVmHwm(child.pid) : null;
  const result = await child;
  const seconds = (performance.now() - started) / 1000;
  const sampled = stopSampling?.() ?? null;
  if (result.failed) {
    throw new Error(`${step.label} failed (exit ${result.exitCode ?? result.signal}):\n${result.stderr || result.message}`);
  }
  const peakRss = rssFile ? await readGnuTimeRss(rssFile) : sampled;
  return { seconds, peakRss, stdout: result.stdout };
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
  let peak: number | null = null;
  const read = () => {
    try {
      const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) peak = Math.max(peak ?? 0, Number(match[1]) * 1024);
    } catch {
      // The process has exited; the last sample stands.
    }
  };
  read();
  const timer = setInterval(read, 50);
  return () => {
    clearInterval(timer);
    return peak;
  };
}

function pgTool(bench: Bench, label: string, tool: string, args: string[], rss = false): Step {
  return { label, file: join(bench.cluster.binDir, tool), args, env: bench.pgEnv, rss };
}

function stackback(label: string, args: string[], rss = false): Step {
  return { label, file: NODE, args: [CLI, ...args], rss };
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

async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/** A config for a fresh repository and catalog, so each repetition takes a real full backup. */
async function writeConfig(bench: Bench, dir: string): Promise<{ config: string; repository: string }> {
  const repository = join(dir, 'repo');
  const config = join(dir, 'stackback.yaml');
  const settings = {
    repository: { path: repository },
    catalog: { path: join(dir, 'catalog.db') },
    work_dir: join(dir, 'work'),
    log: { level: 'warn' },
    sources: {
      postgres: [{ name: 'bench', host: bench.cluster.socketDir, port: bench.cluster.port, user: 'postgres', databases: [DB], globals: false }],
    },
  };
  await writeFile(config, stringify(settings));
  return { config, repository };
}

async function pgDumpFc(bench: Bench, file: string): Promise<Sample['pgDumpFc']> {
  const { seconds, peakRss } = await run(bench, pgTool(bench, 'pg_dump -Fc', 'pg_dump', ['-Fc', '-f', file, DB], true));
  return { seconds, peakRss, bytes: (await stat(file)).size };
}

async function pgDumpZstd(bench: Bench, file: string): Promise<Sample['zstd']> {
  // A shell pipe, as an operator would write it: the bytes never pass through Node.
  const script = 'set -o pipefail; "$0" -Fc -Z0 "$1" | "$2" -3 -T2 > "$3"';
  const step = { label: 'pg_dump -Fc -Z0 | zstd -3 -T2', file: 'bash', args: ['-c', script, join(bench.cluster.binDir, 'pg_dump'), DB, ZSTD, file], env: bench.pgEnv };
  const { seconds, peakRss } = await run(bench, step);
  return { seconds, peakRss, bytes: (await stat(file)).size };
}

async function stackbackBackup(bench: Bench, config: string, repository: string): Promise<Sample['backup']> {
  const { seconds, peakRss, stdout } = await run(bench, stackback('stackback backup --full', ['backup', '--full', '--config', config], true));
  const name = stdout.trim().split('\n').pop() ?? '';
  const bytes = (await treeBytes(join(repository, 'chains'))) + (await treeBytes(join(repository, 'manifests')));
  const listed = JSON.parse((await run(bench, stackback('stackback list', ['list', '--json', '--config', config]))).stdout) as { name: string; bytes_stored: number; bytes_read: number }[];
  const row = listed.find((b) => b.name === name);
  if (!row) throw new Error(`stackback list does not show the backup "${name}" that backup --full printed`);
  return { seconds, peakRss, name, bytes, listedBytes: row.bytes_stored, bytesRead: row.bytes_read };
}

/** pg_restore brings no planner statistics (PG < 18), so a fair baseline includes ANALYZE. */
async function pgRestoreAnalyze(bench: Bench, dumpFile: string): Promise<Measure> {
  const target = `${DB}_pg_restore`;
  await bench.cluster.psql('postgres', `CREATE DATABASE ${target}`);
  try {
    const restore = await run(bench, pgTool(bench, 'pg_restore', 'pg_restore', ['-d', target, dumpFile], true));
    const analyze = await run(bench, pgTool(bench, 'ANALYZE', 'psql', ['-X', '-q', '-d', target, '-c', 'ANALYZE']));
    return { seconds: restore.seconds + analyze.seconds, peakRss: restore.peakRss };
  } finally {
    await bench.cluster.psql('postgres', `DROP DATABASE IF EXISTS ${target}`);
  }
}

async function stackbackRestore(bench: Bench, config: string, backup: string): Promise<Measure> {
  const target = `${DB}_stackback`;
  try {
    const args = ['restore', backup, '--target-db', target, '--yes', '--config', config];
    const { seconds, peakRss } = await run(bench, stackback('stackback restore', args, true));
    return { seconds, peakRss };
  } finally {
    await bench.cluster.psql('postgres', `DROP DATABASE IF EXISTS ${target}`);
  }
}

/** One repetition of every measurement, interleaved so drift on the machine hits all alike. */
async function runOnce(bench: Bench, index: number): Promise<Sample> {
  const dir = join(bench.scratch, `run-${index}`);
  await mkdir(dir);
  try {
    const dumpFile = join(dir, 'bench.dump');
    const log = (what: string) => process.stderr.write(`[run ${index}/${bench.options.runs}] ${what}\n`);
    log('pg_dump -Fc');
    const pgDump = await pgDumpFc(bench, dumpFile);
    log('pg_dump -Fc -Z0 | zstd -3 -T2');
    const zstd = existsSync(ZSTD) ? await pgDumpZstd(bench, join(dir, 'bench.dump.zst')) : null;
    if (!zstd) log(`${ZSTD} is missing (apt-get install zstd): skipped`);
    log('stackback backup --full');
    const { config, repository } = await writeConfig(bench, dir);
    const backup = await stackbackBackup(bench, config, repository);
    log('pg_restore + ANALYZE');
    const pgRestore = await pgRestoreAnalyze(bench, dumpFile);
    log('stackback restore');
    const restore = await stackbackRestore(bench, config, backup.name);
    return { pgDumpFc: pgDump, zstd, backup, pgRestore, restore };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// Aggregation over repetitions: fastest wall time (as the anchors use), and the worst case
// of peak RSS and bytes (bytes differ between runs only by the dump's timestamps).
const fastest = (xs: number[]) => Math.min(...xs);
const largest = (xs: number[]) => Math.max(...xs);
const largestRss = (xs: Measure[]) => (xs.some((x) => x.peakRss === null) ? null : largest(xs.map((x) => x.peakRss!)));
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? null : a / b);

function summarize(samples: Sample[]) {
  const pick = <T extends Measure>(get: (s: Sample) => T | null) => {
    const xs = samples.map(get).filter((x): x is T => x !== null);
    return xs.length === 0 ? null : { xs, wall: fastest(xs.map((x) => x.seconds)), peakRss: largestRss(xs) };
  };
  const pgDump = pick((s) => s.pgDumpFc)!;
  const zstd = pick((s) => s.zstd);
  const backup = pick((s) => s.backup)!;
  const pgRestore = pick((s) => s.pgRestore)!;
  const restore = pick((s) => s.restore)!;
  const rows = {
    pg_dump_fc: { wall_s: pgDump.wall, bytes: largest(pgDump.xs.map((x) => x.bytes)), peak_rss_bytes: pgDump.peakRss },
    pg_dump_zstd: zstd && { wall_s: zstd.wall, bytes: largest(zstd.xs.map((x) => x.bytes)), peak_rss_bytes: zstd.peakRss },
    stackback_backup: {
      wall_s: backup.wall,
      bytes: largest(backup.xs.map((x) => x.bytes)),
      bytes_stored_listed: largest(backup.xs.map((x) => x.listedBytes)),
      bytes_read: largest(backup.xs.map((x) => x.bytesRead)),
      peak_rss_bytes: backup.peakRss,
    },
    pg_restore_analyze: { wall_s: pgRestore.wall, peak_rss_bytes: pgRestore.peakRss },
    stackback_restore: { wall_s: restore.wall, peak_rss_bytes: restore.peakRss },
  };
  const rssLimit = 250 * MIB;
  const targets = [
    { what: 'backup wall: stackback / pg_dump -Fc', unit: 'ratio', value: ratio(rows.stackback_backup.wall_s, rows.pg_dump_fc.wall_s), limit: 0.35 },
    { what: 'backup wall: stackback / pg_dump | zstd', unit: 'ratio', value: ratio(rows.stackback_backup.wall_s, rows.pg_dump_zstd?.wall_s), limit: null },
    { what: 'stored bytes: stackback / zstd -3', unit: 'ratio', value: ratio(rows.stackback_backup.bytes, rows.pg_dump_zstd?.bytes), limit: 1.05 },
    { what: 'restore wall: stackback / pg_restore+ANALYZE', unit: 'ratio', value: ratio(rows.stackback_restore.wall_s, rows.pg_restore_analyze.wall_s), limit: 1.1 },
    { what: 'peak RSS: stackback backup', unit: 'MiB', value: mib(rows.stackback_backup.peak_rss_bytes), limit: mib(rssLimit) },
    { what: 'peak RSS: stackback restore', unit: 'MiB', value: mib(rows.stackback_restore.peak_rss_bytes), limit: mib(rssLimit) },
  ].map((t) => ({ ...t, verdict: verdict(t.value, t.limit) }));
  return { rows, targets };
}

function mib(bytes: number | null): number | null {
  return bytes === null ? null : bytes / MIB;
}

function verdict(value: number | null, limit: number | null): string {
  if (value === null) return 'skipped';
  if (limit === null) return '';
  return value <= limit ? 'PASS' : 'MISS';
}

type Summary = ReturnType<typeof summarize>;

function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('   ').trimEnd()).join('\n');
}

const seconds = (s: number | undefined) => (s === undefined ? '-' : s.toFixed(2));
const megabytes = (b: number | null | undefined) => (b === null || b === undefined ? '-' : (b / MIB).toFixed(1));

function formatTarget(value: number | null, unit: string): string {
  if (value === null) return '-';
  return unit === 'MiB' ? `${value.toFixed(1)} MiB` : value.toFixed(2);
}

function report(options: Options, databaseBytes: number, summary: Summary): string {
  const { rows, targets } = summary;
  const r = rows;
  const measured = formatTable([
    ['what', 'wall s', 'stored MiB', 'peak RSS MiB'],
    ['pg_dump -Fc -f file', seconds(r.pg_dump_fc.wall_s), megabytes(r.pg_dump_fc.bytes), megabytes(r.pg_dump_fc.peak_rss_bytes)],
    r.pg_dump_zstd
      ? ['pg_dump -Fc -Z0 | zstd -3 -T2 > file', seconds(r.pg_dump_zstd.wall_s), megabytes(r.pg_dump_zstd.bytes), megabytes(r.pg_dump_zstd.peak_rss_bytes)]
      : ['pg_dump -Fc -Z0 | zstd -3 -T2 > file', 'skipped (apt-get install zstd)', '', ''],
    ['stackback backup --full', seconds(r.stackback_backup.wall_s), megabytes(r.stackback_backup.bytes), megabytes(r.stackback_backup.peak_rss_bytes)],
    ['pg_restore -d + ANALYZE', seconds(r.pg_restore_analyze.wall_s), '', megabytes(r.pg_restore_analyze.peak_rss_bytes)],
    ['stackback restore --target-db', seconds(r.stackback_restore.wall_s), '', megabytes(r.stackback_restore.peak_rss_bytes)],
  ]);
  const ratios = formatTable([
    ['target', 'value', 'limit', ''],
    ...targets.map((t) => [t.what, formatTarget(t.value, t.unit), t.limit === null ? '' : `≤ ${formatTarget(t.limit, t.unit)}`, t.verdict]),
  ]);
  return [
    `stackback full backup bench: scale ${options.scale}, database ${megabytes(databaseBytes)} MiB, ` +
      `dump ${megabytes(r.stackback_backup.bytes_read)} MiB uncompressed; wall = fastest of ${options.runs} run(s)`,
    '',
    measured,
    `(stackback stored = chains/ + manifests/ on disk; \`stackback list\` says ${megabytes(r.stackback_backup.bytes_stored_listed)} MiB)`,
    '',
    ratios,
    '',
  ].join('\n');
}

async function benchmark(options: Options, scratch: string, onCluster: (c: PgCluster) => void): Promise<void> {
  process.stderr.write('starting a throwaway PostgreSQL cluster\n');
  const cluster = await startPgCluster();
  onCluster(cluster);
  const bench: Bench = { options, cluster, scratch, pgEnv: { PGHOST: cluster.socketDir, PGPORT: String(cluster.port), PGUSER: 'postgres' } };
  process.stderr.write(`building the realistic pgbench database at scale ${options.scale}\n`);
  await buildDatabase(bench);
  const databaseBytes = Number(await cluster.psql(DB, `SELECT pg_database_size('${DB}')`));
  const samples: Sample[] = [];
  for (let i = 1; i <= options.runs; i++) samples.push(await runOnce(bench, i));
  const summary = summarize(samples);
  // With --json, stdout carries the JSON document alone so it can be piped.
  (options.json ? process.stderr : process.stdout).write(report(options, databaseBytes, summary));
  if (options.json) {
    const json = { scale: options.scale, runs: options.runs, database_bytes: databaseBytes, ...summary, samples };
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  }
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const scratch = await mkdtemp(join(tmpdir(), 'stackback-bench-'));
  let cluster: PgCluster | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await cluster?.stop();
      await rm(scratch, { recursive: true, force: true });
    })());
  // Ctrl-C would otherwise leave the server running and gigabytes in the temp folder.
  // Not `once`: execa's signal-exit handler runs after ours and kills the process when it
  // finds no other SIGINT listener left.
  process.on('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    await benchmark(options, scratch, (c) => (cluster = c));
  } finally {
    await cleanup();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
