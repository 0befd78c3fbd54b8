// Retention at scale: wall time and peak RSS of `stackback prune --dry-run` and of
// `stackback prune` on a synthetic repository of N backups and M distinct chunks, then
// `stackback verify --all` (quick) on what the prune left, which must pass.
//
//   npm run bench:prune -- [--backups N] [--chunks M] [--compare] [--json]
//                                        (1000 backups, 100000 chunks by default)
//
// The repository is written with stackback's own modules (Repository and its codec, the
// Catalog), so it is a valid one: prune, verify and even `verify --deep` accept it. With
// --compare, a repository a fifth of the size is measured first: the team's goal is a
// peak RSS that does not grow with the repository.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { Catalog } from '../src/catalog/catalog.ts';
import { type ChunkRef, MANIFEST_FORMAT, type Manifest, newBackupName } from '../src/repository/manifest.ts';
import { Repository } from '../src/repository/repository.ts';
import { STACKBACK_VERSION } from '../src/version.ts';
import { MIB, formatTable, megabytes, positiveInt, printReport, run, runMain, seconds, stackback, withScratch, type Measure } from './support.ts';

const BACKUPS_PER_CHAIN = 50;
const HOUR_MS = 3_600_000;
/** Small chunks: the bench is about how many objects prune walks, not about their bytes. */
const CHUNK_BYTES = 64;
/** One backup in this many ends partial (a failed artifact): prune ages those out separately. */
const PARTIAL_EVERY = 37;
/** Chunk writes in flight while generating: each one fsyncs, so one at a time would crawl. */
const WRITE_CONCURRENCY = 32;
/** A policy that keeps a few dozen of a thousand hourly backups, as a production one would. */
const RETENTION = {
  keep_last: 10,
  keep_hourly: 48,
  keep_daily: 14,
  keep_weekly: 8,
  keep_monthly: 12,
  keep_yearly: 0,
  keep_within: '1d',
  keep_full: 2,
  gc_grace: '0s',
};

interface Size {
  backups: number;
  chunks: number;
}

interface Options extends Size {
  compare: boolean;
  json: boolean;
}

/** One chain: `backups` consecutive backups (a full, then incrementals) over `chunks` distinct chunks. */
interface ChainPlan {
  first: number;
  backups: number;
  chunks: number;
  /** How many chunks each backup references: a sliding window over the chain's chunks. */
  window: number;
}

/** What one repository size measured (MiB are peak RSS). */
interface Result extends Size {
  chains: number;
  generate_s: number;
  dry_run: { wall_s: number; peak_rss_mib: number | null; would_remove: number };
  prune: { wall_s: number; peak_rss_mib: number | null; removed: number; freed_chunks: number; freed_bytes: number; chains_removed: number };
  verify: { wall_s: number; peak_rss_mib: number | null; backups_ok: number };
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      backups: { type: 'string', default: '1000' },
      chunks: { type: 'string', default: '100000' },
      compare: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const backups = positiveInt(values.backups, '--backups');
  const chunks = positiveInt(values.chunks, '--chunks');
  if (chunks < backups) throw new Error(`--chunks (${chunks}) must be at least --backups (${backups}): every backup needs a chunk`);
  return { backups, chunks, compare: values.compare, json: values.json };
}

/** `part/whole` of `total`, rounded so that consecutive shares add up to `total` exactly. */
const share = (total: number, part: number, whole: number) => Math.round((total * part) / whole);

function planChains({ backups, chunks }: Size): ChainPlan[] {
  const plans: ChainPlan[] = [];
  for (let first = 0; first < backups; first += BACKUPS_PER_CHAIN) {
    const count = Math.min(BACKUPS_PER_CHAIN, backups - first);
    const distinct = share(chunks, first + count, backups) - share(chunks, first, backups);
    // A tenth of the chain's chunks per backup (300-1000 refs), so each incremental shares
    // most of its chunks with the one before; a lone backup uses all of its chain's.
    const window = count === 1 ? distinct : Math.min(distinct, Math.max(300, Math.min(1000, Math.round(distinct / 10))));
    plans.push({ first, backups: count, chunks: distinct, window });
  }
  return plans;
}

/** The end (exclusive) of backup `j`'s window: the full takes `window` chunks, each incremental some new ones. */
function windowEnd(plan: ChainPlan, j: number): number {
  return plan.backups === 1 ? plan.chunks : plan.window + share(plan.chunks - plan.window, j, plan.backups - 1);
}

async function inParallel(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

interface StoredChunk {
  plain: Buffer;
  ref: ChunkRef;
}

/** Writes `count` random chunks into `chain` as a backup would, made durable by one sync at the end. */
async function writeChunks(repo: Repository, chain: string, count: number): Promise<StoredChunk[]> {
  const chunks: StoredChunk[] = new Array(count);
  await inParallel(count, WRITE_CONCURRENCY, async (i) => {
    const plain = randomBytes(CHUNK_BYTES);
    const id = repo.codec.chunkId(plain);
    const stored = await repo.writeChunk(chain, id, plain, 1);
    chunks[i] = { plain, ref: { id, size: plain.length, stored_size: stored.length, stored_sha256: createHash('sha256').update(stored).digest('hex') } };
  });
  await repo.sync();
  return chunks;
}

/** Backup `index` (0 = oldest) finished `backups - 1 - index` hours before `now`, two minutes after it started. */
function backupTimes(now: number, backups: number, index: number): { started: Date; finished: Date } {
  const finished = now - (backups - 1 - index) * HOUR_MS;
  return { started: new Date(finished - 120_000), finished: new Date(finished) };
}

function manifestOf(name: string, chain: string, j: number, used: StoredChunk[], added: StoredChunk[], partial: boolean, times: { started: Date; finished: Date }): Manifest {
  const size = used.reduce((sum, c) => sum + c.ref.size, 0);
  const whole = createHash('sha256');
  for (const c of used) whole.update(c.plain);
  const failed = partial ? { failed_artifacts: [{ id: 'bench/db/other', error: 'pg_dump exited with code 1 (synthetic)' }] } : {};
  return {
    format: MANIFEST_FORMAT,
    name,
    kind: j === 0 ? 'full' : 'incremental',
    chain,
    status: partial ? 'partial' : 'ok',
    started_at: times.started.toISOString(),
    finished_at: times.finished.toISOString(),
    host: os.hostname(),
    stackback_version: STACKBACK_VERSION,
    sources: [{ name: 'bench', kind: 'postgres', status: 'ok', ...failed }],
    artifacts: [{ id: 'bench/db/bench', source: 'bench', kind: 'pg_dump', target: 'bench', size, sha256: whole.digest('hex'), chunks: used.map((c) => c.ref), meta: {} }],
    stats: { bytes_read: size, bytes_stored: added.reduce((sum, c) => sum + c.ref.stored_size, 0), chunks: used.length, chunks_new: added.length },
  };
}

/** Writes one chain: its chunks, then each backup's manifest (the commit point) and its catalog entry. */
async function writeChain(repo: Repository, catalog: Catalog, plan: ChainPlan, total: number, now: number): Promise<void> {
  const chain = Repository.newChainId(backupTimes(now, total, plan.first).started);
  const chunks = await writeChunks(repo, chain, plan.chunks);
  for (let j = 0; j < plan.backups; j++) {
    const index = plan.first + j;
    const times = backupTimes(now, total, index);
    const end = windowEnd(plan, j);
    const added = chunks.slice(j === 0 ? 0 : windowEnd(plan, j - 1), end);
    const name = newBackupName(j === 0 ? 'full' : 'incremental', times.started, (n) => catalog.hasBackup(n));
    const manifest = manifestOf(name, chain, j, chunks.slice(end - plan.window, end), added, index % PARTIAL_EVERY === PARTIAL_EVERY - 1, times);
    await repo.writeManifest(manifest);
    catalog.recordBackup(manifest);
  }
}

async function generate(dir: string, size: Size, plans: ChainPlan[]): Promise<{ repository: string; catalog: string }> {
  const paths = { repository: join(dir, 'repo'), catalog: join(dir, 'catalog.db') };
  // Plain (format 1): pruning never decodes an object, so encryption changes nothing it measures.
  const repo = await Repository.create(paths.repository, { key: { keyFile: join(dir, 'repo.key'), passphraseFile: undefined }, encrypt: false });
  const catalog = new Catalog(paths.catalog);
  const now = Date.now();
  const started = performance.now();
  try {
    for (const [i, plan] of plans.entries()) {
      await writeChain(repo, catalog, plan, size.backups, now);
      const elapsed = ((performance.now() - started) / 1000).toFixed(0);
      process.stderr.write(`  chain ${i + 1}/${plans.length}: ${plan.backups} backups over ${plan.chunks} chunks, ${plan.window} refs each (${elapsed} s)\n`);
    }
  } finally {
    catalog.close();
  }
  return paths;
}

async function writePruneConfig(dir: string, paths: { repository: string; catalog: string }): Promise<string> {
  const config = join(dir, 'stackback.yaml');
  const settings = {
    repository: { path: paths.repository },
    catalog: { path: paths.catalog },
    work_dir: join(dir, 'work'),
    log: { level: 'warn' },
    timezone: 'UTC',
    retention: RETENTION,
    // prune needs no source; `config check` below proves the file is accepted without any.
    sources: {},
  };
  await writeFile(config, stringify(settings));
  return config;
}

const mib = (m: Measure) => (m.peakRss === null ? null : m.peakRss / MIB);

/** Runs a CLI command under GNU time and parses its --json output; a non-zero exit throws with its stderr. */
async function measure<T>(scratch: string, label: string, args: string[], config: string): Promise<{ m: Measure; out: T }> {
  const result = await run({ scratch }, stackback(label, [...args, '--config', config, '--json'], true));
  return { m: { seconds: result.seconds, peakRss: result.peakRss }, out: JSON.parse(result.stdout) as T };
}

interface PruneOutput {
  decisions: unknown[];
  removed: string[];
  freed_chunks: number;
  freed_bytes: number;
  chains_removed: string[];
}

async function measureSize(scratch: string, size: Size): Promise<Result> {
  const dir = join(scratch, `${size.backups}-${size.chunks}`);
  await mkdir(dir);
  try {
    const plans = planChains(size);
    process.stderr.write(`generating ${size.backups} backups over ${size.chunks} chunks in ${plans.length} chain(s)\n`);
    const started = performance.now();
    const config = await writePruneConfig(dir, await generate(dir, size, plans));
    const generateSeconds = (performance.now() - started) / 1000;
    await run({ scratch }, stackback('stackback config check', ['config', 'check', '--config', config]));

    process.stderr.write('prune --dry-run\n');
    const dry = await measure<PruneOutput>(scratch, 'stackback prune --dry-run', ['prune', '--dry-run'], config);
    process.stderr.write('prune\n');
    const prune = await measure<PruneOutput>(scratch, 'stackback prune', ['prune'], config);
    process.stderr.write('verify --all\n');
    const verify = await measure<{ ok: boolean; backups: unknown[] }>(scratch, 'stackback verify --all', ['verify', '--all'], config);
    checkOutcome(size, prune.out, verify.out);
    return {
      ...size,
      chains: plans.length,
      generate_s: generateSeconds,
      dry_run: { wall_s: dry.m.seconds, peak_rss_mib: mib(dry.m), would_remove: dry.out.removed.length },
      prune: {
        wall_s: prune.m.seconds,
        peak_rss_mib: mib(prune.m),
        removed: prune.out.removed.length,
        freed_chunks: prune.out.freed_chunks,
        freed_bytes: prune.out.freed_bytes,
        chains_removed: prune.out.chains_removed.length,
      },
      verify: { wall_s: verify.m.seconds, peak_rss_mib: mib(verify.m), backups_ok: verify.out.backups.length },
    };
  } finally {
    // A large repository is hundreds of MiB of small files: gone before the next size.
    await rm(dir, { recursive: true, force: true });
  }
}

/** The cheap correctness check (verify exited 0, or `measure` threw): it saw every backup the prune kept. */
function checkOutcome(size: Size, prune: PruneOutput, verify: { ok: boolean; backups: unknown[] }): void {
  const remaining = size.backups - prune.removed.length;
  if (!verify.ok || verify.backups.length !== remaining) {
    throw new Error(`verify --all checked ${verify.backups.length} backup(s) (ok: ${verify.ok}) but the prune left ${remaining}`);
  }
}

const rss = (value: number | null) => (value === null ? '-' : value.toFixed(1));

function report(results: Result[]): string {
  const column = (get: (r: Result) => string | number) => results.map((r) => String(get(r)));
  const table = formatTable([
    ['repository', ...column((r) => `${r.backups} backups / ${r.chunks} chunks`)],
    ['chains', ...column((r) => r.chains)],
    ['generated in s (not measured)', ...column((r) => seconds(r.generate_s))],
    ['prune --dry-run: wall s', ...column((r) => seconds(r.dry_run.wall_s))],
    ['prune --dry-run: peak RSS MiB', ...column((r) => rss(r.dry_run.peak_rss_mib))],
    ['prune --dry-run: would remove', ...column((r) => `${r.dry_run.would_remove} backups`)],
    ['prune: wall s', ...column((r) => seconds(r.prune.wall_s))],
    ['prune: peak RSS MiB', ...column((r) => rss(r.prune.peak_rss_mib))],
    ['prune: removed', ...column((r) => `${r.prune.removed} backups`)],
    ['prune: freed', ...column((r) => `${r.prune.freed_chunks} chunks, ${megabytes(r.prune.freed_bytes)} MiB`)],
    ['prune: chains removed', ...column((r) => `${r.prune.chains_removed} of ${r.chains}`)],
    ['verify --all: wall s', ...column((r) => seconds(r.verify.wall_s))],
    ['verify --all: peak RSS MiB', ...column((r) => rss(r.verify.peak_rss_mib))],
    ['verify --all: backups OK', ...column((r) => r.verify.backups_ok)],
  ]);
  const policy = Object.entries(RETENTION).map(([k, v]) => `${k} ${v}`).join(', ');
  return [`stackback prune bench (retention: ${policy})`, '', table, ...growth(results), ''].join('\n');
}

/** With --compare: how peak RSS changed from the smaller repository to the larger one. */
function growth(results: Result[]): string[] {
  const [small, large] = results;
  if (!small || !large) return [];
  const times = (a: number | null, b: number | null) => (a === null || b === null ? '-' : `x${(b / a).toFixed(2)}`);
  const steps = [
    ['prune --dry-run', times(small.dry_run.peak_rss_mib, large.dry_run.peak_rss_mib)],
    ['prune', times(small.prune.peak_rss_mib, large.prune.peak_rss_mib)],
    ['verify --all', times(small.verify.peak_rss_mib, large.verify.peak_rss_mib)],
  ];
  return ['', `peak RSS for a ${(large.chunks / small.chunks).toFixed(0)}x larger repository: ${steps.map(([what, x]) => `${what} ${x}`).join(', ')}`];
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const sizes: Size[] = options.compare
    ? [{ backups: Math.max(1, Math.round(options.backups / 5)), chunks: Math.max(1, Math.round(options.chunks / 5)) }, options]
    : [options];
  await withScratch(async (scratch) => {
    const results: Result[] = [];
    for (const size of sizes) results.push(await measureSize(scratch, { backups: size.backups, chunks: size.chunks }));
    printReport(report(results), options.json ? { retention: RETENTION, results } : null);
  });
}

runMain(main);
