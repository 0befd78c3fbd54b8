// Incremental backups of one PostgreSQL database after ~1% changes: stackback against
// restic 0.14, on the realistic pgbench data and the two change patterns of
// /work/shared/reference/bench-data.md.
//
//   npm run bench:incremental -- [scale] [--runs N] [--json]      (scale 50, 1 run by default)
//
// One repetition takes a full backup with each tool, applies the clustered change and
// takes an incremental with each, applies the scattered change and takes another, then
// runs `stackback verify --all`. Each repetition works on a fresh file copy of the built
// database, so that every repetition's changes meet the same table layout. Stackback runs
// first after each change, so its dump is the one that sets the changed rows' hint bits.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DB,
  fastest,
  formatTable,
  largest,
  megabytes,
  pgTool,
  ratio,
  run,
  runBenchmark,
  seconds,
  stackback,
  treeBytes,
  verdict,
  writeConfig,
  type Bench,
  type Options,
} from './support.ts';

const RESTIC = '/usr/bin/restic';
const PHASES = ['full', 'clustered', 'scattered'] as const;
type Phase = (typeof PHASES)[number];
type Change = Exclude<Phase, 'full'>;

interface StackbackResult {
  seconds: number;
  /** Compressed bytes of the chunks this backup wrote, as stackback reports them. */
  bytesStored: number;
  bytesRead: number;
  /** Growth of the repository folder, manifests included: comparable to restic's growth. */
  diskGrowth: number;
}

interface ResticResult {
  seconds: number;
  /** Growth of the repository folder (packs, index, snapshot). */
  growth: number;
}

interface Verify {
  exitCode: number | null;
  output: string;
}

/** What one repetition measured. */
interface Sample {
  phases: Record<Phase, { stackback: StackbackResult; restic: ResticResult | null }>;
  verify: Verify;
}

/** The tools' repositories and the database copy of one repetition. */
interface Target {
  bench: Bench;
  database: string;
  config: string;
  repository: string;
  restic: { repository: string; env: NodeJS.ProcessEnv } | null;
}

/** bench-data.md's change patterns: 1% of the accounts updated, as many history rows added. */
function changeSql(change: Change, scale: number): string {
  const rows = scale * 1000;
  const where = change === 'clustered' ? `aid <= ${rows}` : 'aid % 100 = 0';
  // Each change adds different history rows, as new transactions would.
  const first = change === 'clustered' ? 1 : rows + 1;
  return `
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE ${where};
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime, filler)
  SELECT 1 + abs(hashint4(g)) % (10 * ${scale}), 1 + abs(hashint4(g + 1)) % ${scale},
         1 + abs(hashint4(g + 2)) % (100000 * ${scale}), hashint4(g + 3) % 5000,
         timestamp '2026-01-01' + g * interval '10 milliseconds', left(md5(g::text), 22)
  FROM generate_series(${first}, ${first + rows - 1}) g;
`;
}

async function dirBytes(dir: string): Promise<number> {
  return existsSync(dir) ? treeBytes(dir) : 0;
}

/** Dirty buffers from the change are flushed here, so no timed step pays for them. */
async function checkpoint(target: Target): Promise<void> {
  await target.bench.cluster.psql(target.database, 'CHECKPOINT');
}

async function stackbackBackup(target: Target, kind: 'full' | 'incremental'): Promise<StackbackResult> {
  await checkpoint(target);
  const before = await dirBytes(target.repository);
  const args = ['backup', `--${kind}`, '--json', '--config', target.config];
  const { seconds, stdout } = await run(target.bench, stackback(`stackback backup --${kind}`, args));
  const result = JSON.parse(stdout) as { kind: string; status: string; stats: { bytes_read: number; bytes_stored: number } };
  // A promoted or partial backup would make the numbers meaningless.
  if (result.kind !== kind || result.status !== 'ok') throw new Error(`stackback backup --${kind} made a ${result.status} ${result.kind} backup`);
  const diskGrowth = (await dirBytes(target.repository)) - before;
  return { seconds, bytesStored: result.stats.bytes_stored, bytesRead: result.stats.bytes_read, diskGrowth };
}

async function resticInit(bench: Bench, dir: string): Promise<Target['restic']> {
  if (!existsSync(RESTIC)) return null;
  const repository = join(dir, 'restic');
  const env = {
    ...bench.pgEnv,
    RESTIC_REPOSITORY: repository,
    RESTIC_PASSWORD: randomBytes(16).toString('hex'),
    // Outside the repository, so that its size counts only what restic stores.
    RESTIC_CACHE_DIR: join(dir, 'restic-cache'),
  };
  // Repository format 2 with compression auto, as the anchors of bench-data.md were measured.
  await run(bench, { label: 'restic init', file: RESTIC, args: ['init', '--repository-version', '2', '-q'], env });
  return { repository, env };
}

async function resticBackup(target: Target): Promise<ResticResult | null> {
  const { restic } = target;
  if (!restic) return null;
  await checkpoint(target);
  const before = await dirBytes(restic.repository);
  // A shell pipe, as an operator would write it: the bytes never pass through Node.
  const script = 'set -o pipefail; "$0" -Fc -Z0 "$1" | "$2" backup -q --stdin --stdin-filename bench.dump';
  const args = ['-c', script, join(target.bench.cluster.binDir, 'pg_dump'), target.database, RESTIC];
  const { seconds } = await run(target.bench, { label: 'pg_dump | restic backup --stdin', file: 'bash', args, env: restic.env });
  return { seconds, growth: (await dirBytes(restic.repository)) - before };
}

async function verifyAll(target: Target): Promise<Verify> {
  const step = { ...stackback('stackback verify --all', ['verify', '--all', '--config', target.config]), allowFailure: true };
  const { exitCode, stdout } = await run(target.bench, step);
  return { exitCode, output: stdout };
}

/**
 * FILE_COPY copies the table files as they are, page layout included. The copy is then
 * written out and read once, untimed, so that the full backup meets the same warm caches
 * as the incrementals (which run after restic's dump) and no writeback of the copy.
 */
async function copyDatabase(bench: Bench, database: string): Promise<void> {
  await bench.cluster.psql('postgres', `CREATE DATABASE ${database} TEMPLATE ${DB} STRATEGY FILE_COPY`);
  await run(bench, { label: 'sync', file: 'sync', args: [] });
  await run(bench, pgTool(bench, 'pg_dump (warm-up)', 'pg_dump', ['-Fc', '-Z0', '--no-sync', '-f', '/dev/null', database]));
}

async function runOnce(bench: Bench, index: number): Promise<Sample> {
  const dir = join(bench.scratch, `run-${index}`);
  const database = `${DB}_run`;
  const log = (what: string) => process.stderr.write(`[run ${index}/${bench.options.runs}] ${what}\n`);
  try {
    await mkdir(dir);
    await copyDatabase(bench, database);
    const restic = await resticInit(bench, dir);
    if (!restic) log(`${RESTIC} is missing (apt-get install restic): restic skipped`);
    const target: Target = { bench, database, ...(await writeConfig(bench, dir, database)), restic };
    const phases = {} as Sample['phases'];
    for (const phase of PHASES) {
      if (phase !== 'full') {
        log(`${phase} ~1% change`);
        await bench.cluster.psql(database, changeSql(phase, bench.options.scale));
      }
      const kind = phase === 'full' ? 'full' : 'incremental';
      log(`stackback backup --${kind}`);
      const stackbackResult = await stackbackBackup(target, kind);
      if (restic) log(`pg_dump | restic backup (${kind})`);
      phases[phase] = { stackback: stackbackResult, restic: await resticBackup(target) };
    }
    log('stackback verify --all');
    return { phases, verify: await verifyAll(target) };
  } finally {
    await bench.cluster.psql('postgres', `DROP DATABASE IF EXISTS ${database}`);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Fastest wall and largest bytes of one phase over the repetitions. */
function phaseRow(samples: Sample[], phase: Phase) {
  const ours = samples.map((s) => s.phases[phase].stackback);
  const theirs = samples.flatMap((s) => s.phases[phase].restic ?? []);
  return {
    stackback: {
      wall_s: fastest(ours.map((x) => x.seconds)),
      bytes_stored: largest(ours.map((x) => x.bytesStored)),
      bytes_read: largest(ours.map((x) => x.bytesRead)),
      disk_growth_bytes: largest(ours.map((x) => x.diskGrowth)),
    },
    restic: theirs.length === 0 ? null : { wall_s: fastest(theirs.map((x) => x.seconds)), growth_bytes: largest(theirs.map((x) => x.growth)) },
  };
}

type Row = ReturnType<typeof phaseRow>;

function changeRatios(full: Row, row: Row) {
  const percent = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? null : (100 * a) / b);
  return {
    stackback_pct_of_full: percent(row.stackback.bytes_stored, full.stackback.bytes_stored)!,
    restic_pct_of_full: percent(row.restic?.growth_bytes, full.restic?.growth_bytes),
    stackback_over_restic: ratio(row.stackback.bytes_stored, row.restic?.growth_bytes),
    wall_incremental_over_full: ratio(row.stackback.wall_s, full.stackback.wall_s)!,
  };
}

function summarize(samples: Sample[]) {
  const rows = { full: phaseRow(samples, 'full'), clustered: phaseRow(samples, 'clustered'), scattered: phaseRow(samples, 'scattered') };
  const changes = { clustered: changeRatios(rows.full, rows.clustered), scattered: changeRatios(rows.full, rows.scattered) };
  const c = changes.clustered;
  // The scattered change re-stores ~100% with any chunk-level dedup: it is reported, not targeted.
  const targets = [
    { what: 'clustered: stackback stored / its full', unit: '%', value: c.stackback_pct_of_full, limit: 3 },
    { what: 'clustered: stackback stored / restic growth', unit: 'ratio', value: c.stackback_over_restic, limit: 1.5 },
    { what: 'clustered: stackback incremental wall / full wall', unit: 'ratio', value: c.wall_incremental_over_full, limit: 0.8 },
  ].map((t) => ({ ...t, verdict: verdict(t.value, t.limit) }));
  const verifyOk = samples.every((s) => s.verify.exitCode === 0);
  return { rows, changes, targets, verify_ok: verifyOk };
}

type Summary = ReturnType<typeof summarize>;

function formatValue(value: number | null, unit: string): string {
  if (value === null) return '-';
  return unit === '%' ? `${value.toFixed(2)}%` : value.toFixed(2);
}

function measuredTable(rows: Summary['rows']): string {
  const line = (what: string, row: Row) => [
    what,
    seconds(row.stackback.wall_s),
    megabytes(row.stackback.bytes_stored),
    megabytes(row.stackback.disk_growth_bytes),
    seconds(row.restic?.wall_s),
    megabytes(row.restic?.growth_bytes),
  ];
  return formatTable([
    ['backup', 'stackback wall s', 'stored MiB', 'repo +MiB', 'restic wall s', 'repo +MiB'],
    line('full', rows.full),
    line('after clustered ~1%: incremental', rows.clustered),
    line('after scattered ~1%: incremental', rows.scattered),
  ]);
}

function changesTable(changes: Summary['changes']): string {
  const line = (what: string, c: Summary['changes'][Change]) => [
    what,
    formatValue(c.stackback_pct_of_full, '%'),
    formatValue(c.restic_pct_of_full, '%'),
    formatValue(c.stackback_over_restic, 'ratio'),
    formatValue(c.wall_incremental_over_full, 'ratio'),
  ];
  return formatTable([
    ['change', 'stackback % of full', 'restic % of full', 'stackback / restic', 'incr wall / full wall'],
    line('clustered ~1%', changes.clustered),
    line('scattered ~1% (report only)', changes.scattered),
  ]);
}

function verifyReport(samples: Sample[]): string {
  return samples
    .map((s, i) => `stackback verify --all (quick), run ${i + 1}: exit ${s.verify.exitCode ?? 'by signal'}\n${s.verify.output}`)
    .join('\n');
}

function report(options: Options, databaseBytes: number, samples: Sample[], summary: Summary): string {
  const { rows, changes, targets } = summary;
  const targetTable = formatTable([
    ['target', 'value', 'limit', ''],
    ...targets.map((t) => [t.what, formatValue(t.value, t.unit), `≤ ${formatValue(t.limit, t.unit)}`, t.verdict]),
    ['stackback verify --all exits 0', summary.verify_ok ? 'yes' : 'no', '', summary.verify_ok ? 'PASS' : 'FAIL'],
  ]);
  return [
    `stackback incremental bench: scale ${options.scale}, database ${megabytes(databaseBytes)} MiB, ` +
      `dump ${megabytes(rows.full.stackback.bytes_read)} MiB uncompressed; wall = fastest of ${options.runs} run(s)`,
    '',
    measuredTable(rows),
    '(stackback stored = new chunk bytes from `backup --json`; repo +MiB = growth of each repository folder on disk)',
    ...(rows.full.restic ? [] : [`(restic skipped: ${RESTIC} is missing, apt-get install restic)`]),
    '',
    changesTable(changes),
    '',
    targetTable,
    '',
    verifyReport(samples),
    '',
  ].join('\n');
}

runBenchmark(1, runOnce, (options, databaseBytes, samples) => {
  const summary = summarize(samples);
  // Backups that do not verify are a failure of the run, not a missed target.
  if (!summary.verify_ok) process.exitCode = 1;
  return { text: report(options, databaseBytes, samples, summary), summary };
});
