// Full backup and restore of one PostgreSQL database: stackback against the pg_dump
// baselines of /work/shared/reference/bench-data.md, on that page's realistic pgbench data.
//
//   npm run bench -- [scale] [--runs N] [--json]      (scale 50, 2 runs by default)
//
// Every tool runs against one throwaway cluster, in the same process run, so the ratios
// compare like with like on a machine whose absolute speed varies by ±30%.
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

/** What one repetition measured. */
interface Sample {
  pgDumpFc: Measure & { bytes: number };
  zstd: (Measure & { bytes: number }) | null;
  backup: Measure & { name: string; bytes: number; listedBytes: number; bytesRead: number; cpuSeconds: number | null; childCpuSeconds: number | null };
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

async function stackbackBackup(bench: Bench, config: string, repository: string): Promise<Sample['backup']> {
  const { seconds, peakRss, stdout, cpuSeconds, childCpuSeconds } = await run(bench, stackback('stackback backup --full', ['backup', '--full', '--config', config], true, true));
  const name = stdout.trim().split('\n').pop() ?? '';
  const bytes = (await treeBytes(join(repository, 'chains'))) + (await treeBytes(join(repository, 'manifests')));
  const listed = JSON.parse((await run(bench, stackback('stackback list', ['list', '--json', '--config', config]))).stdout) as { name: string; bytes_stored: number; bytes_read: number }[];
  const row = listed.find((b) => b.name === name);
  if (!row) throw new Error(`stackback list does not show the backup "${name}" that backup --full printed`);
  return { seconds, peakRss, cpuSeconds: cpuSeconds ?? null, childCpuSeconds: childCpuSeconds ?? null, name, bytes, listedBytes: row.bytes_stored, bytesRead: row.bytes_read };
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
    return { pgDumpFc: pgDump, zstd, backup, pgRestore, restore };
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
    { what: 'peak RSS: stackback backup', unit: 'MiB', value: mib(rows.stackback_backup.peak_rss_bytes), limit: mib(rssLimit) },
    { what: 'peak RSS: stackback restore', unit: 'MiB', value: mib(rows.stackback_restore.peak_rss_bytes), limit: mib(rssLimit) },
  ].map((t) => ({ ...t, verdict: verdict(t.value, t.limit) }));
  return { rows, targets };
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

function report(options: Options, databaseBytes: number, summary: Summary, samples: Sample[]): string {
  const { rows, targets } = summary;
  const r = rows;
  const measured = formatTable([
    ['what', 'wall s', 'stored MiB', 'peak RSS MiB'],
    ['pg_dump -Fc -f file', seconds(r.pg_dump_fc.wall_s), megabytes(r.pg_dump_fc.bytes), megabytes(r.pg_dump_fc.peak_rss_bytes)],
    r.pg_dump_zstd
      ? ['pg_dump -Fc -Z0 | zstd -3 -T2 > file', seconds(r.pg_dump_zstd.wall_s), megabytes(r.pg_dump_zstd.bytes), megabytes(r.pg_dump_zstd.peak_rss_bytes)]
      : ['pg_dump -Fc -Z0 | zstd -3 -T2 > file', 'skipped (apt-get install zstd)', '', ''],
    ['stackback backup --full', seconds(r.stackback_backup.wall_s), megabytes(r.stackback_backup.bytes), megabytes(r.stackback_backup.peak_rss_bytes)],
    ['  its CPU: stackback (all threads) / pg_dump', r.stackback_backup.cpu_s === null ? '-' : `${seconds(r.stackback_backup.cpu_s)} / ${seconds(r.stackback_backup.pg_dump_cpu_s ?? 0)} CPU-s`, '', ''],
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
    ...samples.map(
      (s, i) =>
        `run ${i + 1}: backup ${seconds(s.backup.seconds)} s vs pg_dump -Fc ${seconds(s.pgDumpFc.seconds)} s (${(s.backup.seconds / s.pgDumpFc.seconds).toFixed(2)}); ` +
        `restore ${seconds(s.restore.seconds)} s vs pg_restore+ANALYZE ${seconds(s.pgRestore.seconds)} s (${(s.restore.seconds / s.pgRestore.seconds).toFixed(2)})`,
    ),
    '',
    ratios,
    '',
  ].join('\n');
}

// Two repetitions by default: the fastest of two is steadier on these shared machines.
runBenchmark(2, runOnce, (options, databaseBytes, samples) => {
  const summary = summarize(samples);
  return { text: report(options, databaseBytes, summary, samples), summary };
});
