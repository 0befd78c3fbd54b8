// Full backup and restore of one PostgreSQL database: stackback against the pg_dump
// baselines of /work/shared/reference/bench-data.md, on that page's realistic pgbench data.
//
//   npm run bench -- [scale] [--runs N] [--json] [--baseline PATH]      (scale 50, 2 runs by default)
//
// Every tool runs against one throwaway cluster, in the same process run, so the ratios
// compare like with like on a machine whose absolute speed varies by ±30%. With --baseline,
// another build's CLI (a checkout folder, or its stackback.js) takes the same full backup and
// unchanged incremental in each run, for before/after numbers of a change side by side.
import { existsSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DB,
  MIB,
  fastest,
  formatTable,
  largest,
  median,
  megabytes,
  pgTool,
  ratio,
  run,
  runBenchmark,
  seconds,
  settle,
  stackback,
  treeBytes,
  verdict,
  writeConfig,
  type Bench,
  type Measure,
  type Options,
} from './support.ts';

const ZSTD = '/usr/bin/zstd';

type Backup = Measure & { name: string; bytes: number; listedBytes: number; bytesRead: number; cpuSeconds: number | null; childCpuSeconds: number | null };
/** An incremental right after the full backup, with nothing changed in the database. */
type Unchanged = Measure & { name: string; cpuSeconds: number | null };

/** What one repetition measured. */
interface Sample {
  pgDumpFc: Measure & { bytes: number };
  zstd: (Measure & { bytes: number }) | null;
  backup: Backup;
  unchanged: Unchanged;
  /** The same two backups by the --baseline CLI, into its own repository; null without one. */
  baseline: { backup: Backup; unchanged: Unchanged } | null;
  pgRestore: Measure;
  restore: Measure;
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

/** Whose CLI runs: this checkout's build (`cli` undefined), or the --baseline one. */
interface Side {
  label: string;
  cli: string | undefined;
}

/** The backup's name: the last line `stackback backup` prints on stdout. */
const backupName = (stdout: string) => stdout.trim().split('\n').pop() ?? '';

/** `stackback list`'s row of one backup, which must be there and of the expected kind. */
async function listedBackup(bench: Bench, side: Side, config: string, name: string, kind: 'full' | 'incremental') {
  const listed = JSON.parse((await run(bench, stackback(`${side.label} list`, ['list', '--json', '--config', config], false, false, side.cli))).stdout) as {
    name: string;
    kind: string;
    bytes_stored: number;
    bytes_read: number;
  }[];
  const row = listed.find((b) => b.name === name);
  if (!row) throw new Error(`${side.label} list does not show the backup "${name}" that ${side.label} backup printed`);
  // A chain that went missing would turn the "incremental" into a second full one.
  if (row.kind !== kind) throw new Error(`${side.label} backup "${name}" is ${row.kind}, expected ${kind}`);
  return row;
}

async function stackbackBackup(bench: Bench, side: Side, config: string, repository: string): Promise<Backup> {
  const step = stackback(`${side.label} backup --full`, ['backup', '--full', '--config', config], true, true, side.cli);
  const { seconds, peakRss, stdout, cpuSeconds, childCpuSeconds } = await run(bench, step);
  const name = backupName(stdout);
  const bytes = (await treeBytes(join(repository, 'chains'))) + (await treeBytes(join(repository, 'manifests')));
  const row = await listedBackup(bench, side, config, name, 'full');
  return { seconds, peakRss, cpuSeconds: cpuSeconds ?? null, childCpuSeconds: childCpuSeconds ?? null, name, bytes, listedBytes: row.bytes_stored, bytesRead: row.bytes_read };
}

async function unchangedIncremental(bench: Bench, side: Side, config: string): Promise<Unchanged> {
  const { seconds, peakRss, stdout, cpuSeconds } = await run(bench, stackback(`${side.label} backup (unchanged)`, ['backup', '--config', config], false, true, side.cli));
  const name = backupName(stdout);
  await listedBackup(bench, side, config, name, 'incremental');
  return { seconds, peakRss, cpuSeconds: cpuSeconds ?? null, name };
}

/**
 * A full backup and then an unchanged incremental by one side's CLI, into a fresh repository
 * in `dir`: the incremental only reads the dump and finds every chunk stored, which is what an
 * idle database costs on each schedule. Settled first, so the full pays for no earlier writes.
 */
async function fullThenUnchanged(bench: Bench, side: Side, dir: string, log: (what: string) => void) {
  await mkdir(dir, { recursive: true });
  const { config, repository } = await writeConfig(bench, dir);
  log(`${side.label} backup --full`);
  await settle(bench);
  const backup = await stackbackBackup(bench, side, config, repository);
  log(`${side.label} backup (unchanged incremental)`);
  const unchanged = await unchangedIncremental(bench, side, config);
  return { config, backup, unchanged };
}

type BackupPair = Awaited<ReturnType<typeof fullThenUnchanged>>;

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
    const baselineCli = bench.options.baseline ?? null;
    const timeOurs = () => fullThenUnchanged(bench, { label: 'stackback', cli: undefined }, dir, log);
    const timeBaseline = baselineCli && (() => fullThenUnchanged(bench, { label: 'baseline', cli: baselineCli }, join(dir, 'baseline'), log));
    // Alternating which build goes first, so that neither always runs on a warmer machine.
    let ours: BackupPair;
    let baseline: BackupPair | null = null;
    if (timeBaseline && index % 2 === 0) {
      baseline = await timeBaseline();
      ours = await timeOurs();
    } else {
      ours = await timeOurs();
      if (timeBaseline) baseline = await timeBaseline();
    }
    const { config, backup, unchanged } = ours;
    const timePgRestore = async () => {
      log('pg_restore + ANALYZE');
      await settle(bench);
      return pgRestoreAnalyze(bench, dumpFile);
    };
    const timeRestore = async () => {
      log('stackback restore');
      await settle(bench);
      return stackbackRestore(bench, config, backup.name);
    };
    // Alternating which restore goes first, so that neither always runs on a warmer machine.
    let pgRestore: Measure;
    let restore: Measure;
    if (index % 2 === 1) {
      pgRestore = await timePgRestore();
      restore = await timeRestore();
    } else {
      restore = await timeRestore();
      pgRestore = await timePgRestore();
    }
    return { pgDumpFc: pgDump, zstd, backup, unchanged, baseline: baseline && { backup: baseline.backup, unchanged: baseline.unchanged }, pgRestore, restore };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const largestRss = (xs: Measure[]) => (xs.some((x) => x.peakRss === null) ? null : largest(xs.map((x) => x.peakRss!)));

function summarize(samples: Sample[]) {
  const pick = <T extends Measure>(get: (s: Sample) => T | null) => {
    const xs = samples.map(get).filter((x): x is T => x !== null);
    return xs.length === 0 ? null : { xs, wall: fastest(xs.map((x) => x.seconds)), peakRss: largestRss(xs) };
  };
  const pgDump = pick((s) => s.pgDumpFc)!;
  const zstd = pick((s) => s.zstd);
  const backup = pick((s) => s.backup)!;
  const unchanged = pick((s) => s.unchanged)!;
  const baselineBackup = pick((s) => s.baseline?.backup ?? null);
  const baselineUnchanged = pick((s) => s.baseline?.unchanged ?? null);
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
      // stackback's own process (all threads), and pg_dump's, which it spawns and reaps.
      cpu_s: medianOrNull(backup.xs.map((x) => x.cpuSeconds)),
      pg_dump_cpu_s: medianOrNull(backup.xs.map((x) => x.childCpuSeconds)),
    },
    stackback_unchanged_incremental: unchangedRow(unchanged.xs),
    baseline_backup: baselineBackup && {
      wall_s: baselineBackup.wall,
      bytes: largest(baselineBackup.xs.map((x) => x.bytes)),
      peak_rss_bytes: baselineBackup.peakRss,
      cpu_s: medianOrNull(baselineBackup.xs.map((x) => x.cpuSeconds)),
    },
    baseline_unchanged_incremental: baselineUnchanged && unchangedRow(baselineUnchanged.xs),
    pg_restore_analyze: { wall_s: pgRestore.wall, peak_rss_bytes: pgRestore.peakRss },
    stackback_restore: { wall_s: restore.wall, peak_rss_bytes: restore.peakRss },
  };
  const rssLimit = 250 * MIB;
  const targets = [
    { what: 'backup wall: stackback / pg_dump -Fc', unit: 'ratio', value: ratio(rows.stackback_backup.wall_s, rows.pg_dump_fc.wall_s), limit: 0.3 },
    { what: 'backup wall: stackback / pg_dump | zstd', unit: 'ratio', value: ratio(rows.stackback_backup.wall_s, rows.pg_dump_zstd?.wall_s), limit: 1.25 },
    { what: 'backup wall vs zstd pipe, median of per-run ratios', unit: 'ratio', value: samples.every((s) => s.zstd) ? median(samples.map((s) => s.backup.seconds / s.zstd!.seconds)) : null, limit: 1.25 },
    { what: 'stored bytes: stackback / zstd -3', unit: 'ratio', value: ratio(rows.stackback_backup.bytes, rows.pg_dump_zstd?.bytes), limit: 1.0 },
    { what: 'stackback backup CPU, own process (s, median)', unit: 's', value: rows.stackback_backup.cpu_s, limit: null },
    { what: 'restore wall: stackback / pg_restore+ANALYZE', unit: 'ratio', value: ratio(rows.stackback_restore.wall_s, rows.pg_restore_analyze.wall_s), limit: 1.1 },
    // Each run times both sides back to back: the median of those paired ratios shrugs off a slow stretch that hit one side only.
    { what: 'backup wall, median of per-run ratios', unit: 'ratio', value: median(samples.map((s) => s.backup.seconds / s.pgDumpFc.seconds)), limit: 0.3 },
    { what: 'restore wall, median of per-run ratios', unit: 'ratio', value: median(samples.map((s) => s.restore.seconds / s.pgRestore.seconds)), limit: 1.1 },
    // An idle database still gets every scheduled backup: finding all chunks stored must cost well under writing them.
    { what: 'unchanged incremental wall / full wall, median of per-run ratios', unit: 'ratio', value: median(samples.map((s) => s.unchanged.seconds / s.backup.seconds)), limit: 0.5 },
    { what: 'backup CPU: stackback / baseline, median of per-run ratios', unit: 'ratio', value: pairedRatio(samples, (s) => s.cpuSeconds), limit: 0.6 },
    { what: 'backup wall: stackback / baseline, median of per-run ratios', unit: 'ratio', value: pairedRatio(samples, (s) => s.seconds), limit: null },
    { what: 'stored bytes: stackback / baseline', unit: 'ratio', value: ratio(rows.stackback_backup.bytes, rows.baseline_backup?.bytes), limit: null },
    { what: 'peak RSS: stackback backup', unit: 'MiB', value: mib(rows.stackback_backup.peak_rss_bytes), limit: mib(rssLimit) },
    { what: 'peak RSS: stackback restore', unit: 'MiB', value: mib(rows.stackback_restore.peak_rss_bytes), limit: mib(rssLimit) },
  ].map((t) => ({ ...t, verdict: verdict(t.value, t.limit) }));
  return { rows, targets };
}

function unchangedRow(xs: Unchanged[]) {
  return { wall_s: fastest(xs.map((x) => x.seconds)), cpu_s: medianOrNull(xs.map((x) => x.cpuSeconds)) };
}

/**
 * The median over the runs of this checkout's full backup / the baseline's, both timed in
 * the same run; null without a baseline, or when a value was not sampled.
 */
function pairedRatio(samples: Sample[], get: (backup: Backup) => number | null): number | null {
  return medianOrNull(
    samples.map((s) => {
      const ours = get(s.backup);
      const theirs = s.baseline && get(s.baseline.backup);
      return ours === null || !theirs ? null : ours / theirs;
    }),
  );
}

function medianOrNull(xs: (number | null)[]): number | null {
  return xs.some((x) => x === null) ? null : median(xs as number[]);
}

function mib(bytes: number | null): number | null {
  return bytes === null ? null : bytes / MIB;
}

type Summary = ReturnType<typeof summarize>;

function formatTarget(value: number | null, unit: string): string {
  if (value === null) return '-';
  return unit === 'MiB' ? `${value.toFixed(1)} MiB` : unit === 's' ? `${value.toFixed(2)} s` : value.toFixed(2);
}

const cpu = (s: number | null | undefined) => seconds(s ?? undefined);
/** a / b for a run's line; '-' where a CPU reading is missing. */
const share = (a: number | null, b: number | null) => (a === null || !b ? '-' : (a / b).toFixed(2));

/** Every number of one run that a ratio is made of. */
function runLine(s: Sample, i: number): string {
  const lines = [
    `run ${i + 1}: backup ${seconds(s.backup.seconds)} s vs pg_dump -Fc ${seconds(s.pgDumpFc.seconds)} s (${share(s.backup.seconds, s.pgDumpFc.seconds)}); ` +
      `restore ${seconds(s.restore.seconds)} s vs pg_restore+ANALYZE ${seconds(s.pgRestore.seconds)} s (${share(s.restore.seconds, s.pgRestore.seconds)})`,
    `  unchanged incremental ${seconds(s.unchanged.seconds)} s (${share(s.unchanged.seconds, s.backup.seconds)} of the full)`,
  ];
  if (s.baseline) {
    const { backup, unchanged } = s.baseline;
    lines.push(
      `  baseline: backup ${seconds(backup.seconds)} s, ${cpu(backup.cpuSeconds)} CPU-s vs stackback ${seconds(s.backup.seconds)} s, ${cpu(s.backup.cpuSeconds)} CPU-s` +
        ` (wall ${share(s.backup.seconds, backup.seconds)}, CPU ${share(s.backup.cpuSeconds, backup.cpuSeconds)}); ` +
        `unchanged incremental ${seconds(unchanged.seconds)} s`,
    );
  }
  return lines.join('\n');
}

function report(options: Options, databaseBytes: number, summary: Summary, samples: Sample[]): string {
  const { rows, targets } = summary;
  const r = rows;
  const measured = formatTable([
    ['what', 'wall s', 'stored MiB', 'peak RSS MiB', 'CPU s'],
    ['pg_dump -Fc -f file', seconds(r.pg_dump_fc.wall_s), megabytes(r.pg_dump_fc.bytes), megabytes(r.pg_dump_fc.peak_rss_bytes), ''],
    r.pg_dump_zstd
      ? ['pg_dump -Fc -Z0 | zstd -3 -T2 > file', seconds(r.pg_dump_zstd.wall_s), megabytes(r.pg_dump_zstd.bytes), megabytes(r.pg_dump_zstd.peak_rss_bytes), '']
      : ['pg_dump -Fc -Z0 | zstd -3 -T2 > file', 'skipped (apt-get install zstd)', '', '', ''],
    ['stackback backup --full', seconds(r.stackback_backup.wall_s), megabytes(r.stackback_backup.bytes), megabytes(r.stackback_backup.peak_rss_bytes), cpu(r.stackback_backup.cpu_s)],
    ['  its CPU: stackback (all threads) / pg_dump', r.stackback_backup.cpu_s === null ? '-' : `${seconds(r.stackback_backup.cpu_s)} / ${seconds(r.stackback_backup.pg_dump_cpu_s ?? 0)} CPU-s`, '', '', ''],
    ['stackback backup, unchanged incremental', seconds(r.stackback_unchanged_incremental.wall_s), '', '', cpu(r.stackback_unchanged_incremental.cpu_s)],
    ...(r.baseline_backup
      ? [
          ['baseline backup --full', seconds(r.baseline_backup.wall_s), megabytes(r.baseline_backup.bytes), megabytes(r.baseline_backup.peak_rss_bytes), cpu(r.baseline_backup.cpu_s)],
          ['baseline backup, unchanged incremental', seconds(r.baseline_unchanged_incremental?.wall_s), '', '', cpu(r.baseline_unchanged_incremental?.cpu_s)],
        ]
      : []),
    ['pg_restore -d + ANALYZE', seconds(r.pg_restore_analyze.wall_s), '', megabytes(r.pg_restore_analyze.peak_rss_bytes), ''],
    ['stackback restore --target-db', seconds(r.stackback_restore.wall_s), '', megabytes(r.stackback_restore.peak_rss_bytes), ''],
  ]);
  const ratios = formatTable([
    ['target', 'value', 'limit', ''],
    ...targets.map((t) => [t.what, formatTarget(t.value, t.unit), t.limit === null ? '' : `≤ ${formatTarget(t.limit, t.unit)}`, t.verdict]),
  ]);
  return [
    `stackback full backup bench: scale ${options.scale}, database ${megabytes(databaseBytes)} MiB, ` +
      `dump ${megabytes(r.stackback_backup.bytes_read)} MiB uncompressed; wall = fastest of ${options.runs} run(s)`,
    ...(options.baseline ? [`baseline: ${options.baseline}`] : []),
    '',
    measured,
    `(stackback stored = chains/ + manifests/ on disk; \`stackback list\` says ${megabytes(r.stackback_backup.bytes_stored_listed)} MiB; ` +
      'CPU s = the stackback process itself, all threads, median of the runs)',
    '',
    ...samples.map(runLine),
    '',
    ratios,
    '',
  ].join('\n');
}

// Two repetitions by default: the fastest of two is steadier on these shared machines.
runBenchmark(2, runOnce, (options, databaseBytes, samples) => {
  const summary = summarize(samples);
  return { text: report(options, databaseBytes, summary, samples), summary: { baseline: options.baseline ?? null, ...summary } };
});
