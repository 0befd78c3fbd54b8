// The web dashboard with a year of history: 10,000 backups and 100,000 runs in the catalog
// (bench/support/dashboard-seed.ts), the built daemon (dist/) serving it, Debian's Chromium
// driven by playwright-core loading its pages.
//
//   npm run bench:dashboard -- [--quick] [--loads N] [--idle-seconds S]
//                                  (7 loads per page and 30 s per idle sample; --quick: 3 and 10)
//
// --quick is for trying the bench out: with 10 s samples of a daemon that idles at ~2 % of a
// core, its idle verdict is noisy (a few ticks either way).
//
// Steps: a temp folder with a config (one files source over a small folder, every schedule
// off, control sockets and the dashboard's token file in the folder, web.listen on a free
// loopback port), `stackback init` and `key export` (a healthy install), the seeded catalog,
// then the daemon. Chromium signs in once through the form; every measured load is a new
// page in that signed-in context (warm daemon, cold page: the assets are revalidated with
// their ETag), after one unmeasured warm-up load per page. Per load: first contentful paint,
// and "data rendered" — when the page set document.body.dataset.ready = "1" (noted by a
// MutationObserver the bench installs before the page's scripts), and the frame after it.
// Checks that the numbers measure the real thing: the stored-per-backup chart has a point per
// backup and the backups table shows a page of rows. The page's own API calls are timed by
// the browser's resource timing, and once more from here alone (bearer token, no browser).
// Then idle CPU: the same daemon, after the browser closed, sampled from /proc/<pid>/stat
// (utime + stime) for S seconds; then the same config without `web:`, sampled the same way.
//
// Targets (the dashboard issue, 10,000 backups, 100,000 runs): overview first paint ≤ 300 ms,
// backups page (table and charts rendered) ≤ 500 ms, medians of ≥ 7 loads; the page's own JS
// and CSS ≤ 150 KB gzipped; the daemon's idle CPU unchanged with the listener on.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { stringify } from 'yaml';
import { daemonRequest } from '../src/daemon/client.ts';
import { freePort } from '../test/support/free-port.ts';
import { seedDashboardCatalog, type SeedSummary } from './support/dashboard-seed.ts';
import { formatTable, median, positiveInt, runMain, withScratch } from './support.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The project's Node 24, as the other benches run the CLI with.
const NODE = join(ROOT, 'node_modules/.bin/node');
const CLI = join(ROOT, 'dist/stackback.js');
const WEB_ASSETS = join(ROOT, 'dist/web');
const CHROMIUM = '/usr/bin/chromium';

const BACKUPS = 10_000;
const RUNS = 100_000;
const REPOSITORY_SIZES = 10_000;

const TARGET_OVERVIEW_FCP_MS = 300;
const TARGET_BACKUPS_READY_MS = 500;
const TARGET_ASSETS_GZIP_KB = 150;
/**
 * "Unchanged": the listener may add at most this much idle CPU, in percent of one core, or
 * this fraction of the idle CPU without it, whichever is larger. A 30 s sample counts
 * 1/100 s ticks, so one tick is 0.03 % of a core; less than that is noise.
 */
const IDLE_CPU_SLACK_PCT = 0.1;
const IDLE_CPU_SLACK_RATIO = 0.25;

const LOADS = 7;
const IDLE_SECONDS = 30;
const QUICK_LOADS = 3;
const QUICK_IDLE_SECONDS = 10;
/** After a daemon starts (or the browser closes), before the idle sample: start-up work and sockets closing are not idling. */
const SETTLE_MS = 5_000;
const READY_TIMEOUT_MS = 30_000;
const PAGE_TIMEOUT_MS = 30_000;
/** Page size of the backups table, the least a page of rows is taken to be. */
const MIN_TABLE_ROWS = 25;

interface BenchOptions {
  loads: number;
  idleSeconds: number;
  quick: boolean;
}

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({ args: argv, options: { quick: { type: 'boolean', default: false }, loads: { type: 'string' }, 'idle-seconds': { type: 'string' } } });
  const quick = values.quick;
  return {
    quick,
    loads: values.loads === undefined ? (quick ? QUICK_LOADS : LOADS) : positiveInt(values.loads, '--loads'),
    idleSeconds: values['idle-seconds'] === undefined ? (quick ? QUICK_IDLE_SECONDS : IDLE_SECONDS) : positiveInt(values['idle-seconds'], '--idle-seconds'),
  };
}

const log = (line: string) => process.stderr.write(`${line}\n`);

// ---------------------------------------------------------------------------------------
// Setup: config, repository, seeded catalog.

interface Setup {
  dir: string;
  /** With web: and without. */
  configWeb: string;
  configPlain: string;
  adminSocket: string;
  tokenFile: string;
  base: string;
  seed: SeedSummary;
  seedSeconds: number;
}

async function setUp(scratch: string): Promise<Setup> {
  const data = join(scratch, 'docs');
  await mkdir(join(data, 'reports'), { recursive: true });
  for (let i = 0; i < 20; i++) await writeFile(join(data, 'reports', `report-${i}.txt`), `quarterly report ${i}\n`.repeat(200));
  const socket = join(scratch, 'control.sock');
  const adminSocket = join(scratch, 'admin.sock');
  const tokenFile = join(scratch, 'secrets', 'web.token');
  const port = await freePort();
  const repository = join(scratch, 'repo');
  const keyFile = join(scratch, 'repo.key');
  const settings = {
    repository: { path: repository, key_file: keyFile },
    catalog: { path: join(scratch, 'catalog.db') },
    work_dir: join(scratch, 'work'),
    log: { level: 'warn' },
    timezone: 'Europe/Berlin',
    schedule: { full: 'off', incremental: 'off', verify: 'off', prune: 'off', copy: 'off', catch_up: false },
    control: { socket, admin_socket: adminSocket },
    sources: { files: [{ name: 'docs', paths: [data] }] },
  };
  const configPlain = join(scratch, 'stackback-no-web.yaml');
  const configWeb = join(scratch, 'stackback.yaml');
  await writeFile(configPlain, stringify(settings));
  await writeFile(configWeb, stringify({ ...settings, web: { listen: `127.0.0.1:${port}`, token_file: tokenFile } }));

  // A healthy install: the repository exists and its key was exported (else status warns).
  await execa(NODE, [CLI, 'init', '--config', configWeb], { stdin: 'ignore' });
  await execa(NODE, [CLI, 'key', 'export', '--config', configWeb], { stdin: 'ignore' });
  log(`seeding the catalog: ${BACKUPS} backups, ${RUNS} runs`);
  const started = performance.now();
  const seed = await seedDashboardCatalog({
    catalogPath: settings.catalog.path,
    repoPath: repository,
    keyFile,
    source: { name: 'docs', paths: [data] },
    backups: BACKUPS,
    runs: RUNS,
    repositorySizes: REPOSITORY_SIZES,
  });
  return { dir: scratch, configWeb, configPlain, adminSocket, tokenFile, base: `http://127.0.0.1:${port}`, seed, seedSeconds: (performance.now() - started) / 1000 };
}

// ---------------------------------------------------------------------------------------
// The daemon.

interface Daemon {
  pid: number;
  startSeconds: number;
  stop(): Promise<void>;
}

async function startDaemon(config: string, adminSocket: string, dashboard: string | null): Promise<Daemon> {
  const started = performance.now();
  // A daemon that ignores SIGTERM is killed after 10 s (and the bench then fails).
  const child = execa(NODE, [CLI, 'daemon', '--config', config], { all: true, reject: false, stdin: 'ignore', forceKillAfterDelay: 10_000 });
  let exited = false;
  void child.then(() => (exited = true));
  const stop = async () => {
    if (exited) return;
    child.kill('SIGTERM');
    const { exitCode, signal, all } = await child;
    if (exitCode !== 0) throw new Error(`the daemon did not exit 0 on SIGTERM (${exitCode ?? signal}):\n${all}`);
  };
  try {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (exited) throw new Error(`the daemon exited before answering:\n${(await child).all}`);
      // The admin socket is listened on last, the dashboard right after.
      const answer = await daemonRequest(adminSocket, 'GET', '/api/backup/status', undefined, 2000).catch(() => undefined);
      const web = answer?.status === 200 && dashboard ? await fetch(`${dashboard}/api/session`).then((r) => r.status, () => 0) : 401;
      if (answer?.status === 200 && web === 401) break;
      if (Date.now() > deadline) throw new Error(`the daemon did not answer on ${adminSocket}${dashboard ? ` and ${dashboard}` : ''} within ${READY_TIMEOUT_MS / 1000} s`);
      await sleep(50);
    }
  } catch (error) {
    if (!exited) child.kill('SIGKILL');
    await child;
    throw error;
  }
  if (child.pid === undefined) throw new Error('the daemon has no pid');
  return { pid: child.pid, startSeconds: (performance.now() - started) / 1000, stop };
}

// ---------------------------------------------------------------------------------------
// Idle CPU from /proc.

interface IdleSample {
  seconds: number;
  ticks: number;
  /** Percent of one core. */
  pct: number;
  rssMiB: number;
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** utime + stime of `pid`, in clock ticks (fields 14 and 15; the name in field 2 may hold spaces). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

function rssMiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return match ? Number(match[1]) / 1024 : NaN;
}

async function sampleIdle(pid: number, seconds: number): Promise<IdleSample> {
  if (!readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('daemon')) throw new Error(`process ${pid} is not the daemon`);
  await sleep(SETTLE_MS);
  const t0 = performance.now();
  const c0 = cpuTicks(pid);
  await sleep(seconds * 1000);
  const ticks = cpuTicks(pid) - c0;
  const elapsed = (performance.now() - t0) / 1000;
  return { seconds: elapsed, ticks, pct: (ticks / CLOCK_TICKS / elapsed) * 100, rssMiB: rssMiB(pid) };
}

// ---------------------------------------------------------------------------------------
// The browser. The project's TypeScript has no DOM types: page-side code says what it uses.

/** Notes when the page first marks itself ready, and the frame after (installed before the page's own scripts). */
const READY_PROBE = `(() => {
  const probe = (window.__bench = { readyAt: undefined, paintedAt: undefined });
  new MutationObserver(() => {
    if (probe.readyAt !== undefined || document.body?.dataset.ready !== '1') return;
    probe.readyAt = performance.now();
    requestAnimationFrame(() => setTimeout(() => (probe.paintedAt = performance.now()), 0));
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-ready'] });
})();`;

/** A performance entry as the page has it: its name and its numeric fields. */
interface PageEntry {
  name: string;
  startTime: number;
  duration: number;
  [field: string]: string | number;
}

/** The page's globals the bench reads (functions below run in the page: they are sent as their source). */
interface PageGlobals {
  document: { body: { dataset: Record<string, string | undefined> } | null };
  performance: { getEntriesByName(name: string): PageEntry[]; getEntriesByType(type: string): PageEntry[] };
  __bench?: { readyAt?: number; paintedAt?: number };
}

// Functions, not strings: the dashboard's CSP (script-src 'self') forbids evaluating text in the page.
const isReady = () => (globalThis as unknown as PageGlobals).document.body?.dataset.ready === '1';
const hasPainted = () => {
  const page = globalThis as unknown as PageGlobals;
  return page.__bench?.paintedAt !== undefined && page.performance.getEntriesByName('first-contentful-paint').length > 0;
};
const measures = () => {
  const page = globalThis as unknown as PageGlobals;
  const navigation = page.performance.getEntriesByType('navigation')[0];
  return {
    fcp: page.performance.getEntriesByName('first-contentful-paint')[0]!.startTime,
    ready: page.__bench!.readyAt!,
    painted: page.__bench!.paintedAt!,
    html: navigation ? Number(navigation.responseEnd) : null,
    // Module scripts run before DOMContentLoaded: its end is when app.js had run its first part.
    scripts: navigation ? Number(navigation.domContentLoadedEventEnd) : null,
    resources: page.performance.getEntriesByType('resource').map((r) => ({
      url: r.name,
      start: r.startTime,
      end: Number(r.responseEnd),
      duration: r.duration,
      waiting: Number(r.responseStart) - Number(r.requestStart),
      transfer: Number(r.transferSize),
      body: Number(r.encodedBodySize),
      decoded: Number(r.decodedBodySize),
    })),
  };
};

interface Resource {
  url: string;
  start: number;
  end: number;
  duration: number;
  /** Request sent to first byte: the server's time, near enough. */
  waiting: number;
  transfer: number;
  body: number;
  decoded: number;
}

interface Load {
  fcp: number;
  ready: number;
  painted: number;
  html: number | null;
  scripts: number | null;
  resources: Resource[];
  /** What the page showed: the checks. */
  shown: Record<string, number | string>;
}

interface PageSpec {
  label: string;
  hash: string;
  /** Reads what the page shows and throws when it is not the real thing. */
  check: (page: Page) => Promise<Record<string, number | string>>;
}

async function noErrorBox(page: Page, label: string): Promise<void> {
  const errors = await page.locator('#main [role=alert]').allTextContents();
  if (errors.length > 0) throw new Error(`the ${label} shows an error: ${errors.join(' | ')}`);
}

const PAGES: PageSpec[] = [
  {
    label: 'overview',
    hash: '#/',
    async check(page) {
      await noErrorBox(page, 'overview');
      const health = ((await page.locator('[data-testid=health]').textContent()) ?? '').trim();
      if (!health || /loading/i.test(health)) throw new Error(`the overview's health line is "${health}"`);
      const recent = await page.locator('#main section', { hasText: 'Recent backups' }).locator('tbody tr').count();
      if (recent === 0) throw new Error('the overview lists no recent backups');
      return { health, recent_backups: recent };
    },
  },
  {
    label: 'backups',
    hash: '#/backups',
    async check(page) {
      await noErrorBox(page, 'backups page');
      const points = Number(await page.locator('[data-testid=chart-stored]').getAttribute('data-points'));
      if (points !== BACKUPS) throw new Error(`the stored-per-backup chart has ${points} points, not ${BACKUPS}`);
      const rows = await page.locator('[data-testid=backups-table] tbody tr').count();
      if (rows < MIN_TABLE_ROWS) throw new Error(`the backups table shows ${rows} rows, not a page (≥ ${MIN_TABLE_ROWS})`);
      const canvases = await page.locator('.charts canvas').count();
      if (canvases === 0) throw new Error('the backups page drew no chart canvas');
      return { chart_points: points, table_rows: rows, canvases };
    },
  },
];

async function signIn(context: BrowserContext, base: string, tokenFile: string): Promise<void> {
  const token = (await readFile(tokenFile, 'utf8')).trim();
  const page = await context.newPage();
  try {
    const answer = await page.goto(`${base}/`);
    if (answer?.status() !== 401) throw new Error(`/ without a session answered ${answer?.status()}, not 401 with the sign-in form`);
    await page.fill('#token', token);
    // The form posts to /login, which answers 303 to / (the app, now signed in).
    await Promise.all([page.waitForResponse((r) => r.url() === `${base}/` && r.status() === 200, { timeout: PAGE_TIMEOUT_MS }), page.click('button[type=submit]')]);
    await page.waitForFunction(isReady, null, { timeout: PAGE_TIMEOUT_MS });
  } finally {
    await page.close();
  }
}

async function loadOnce(context: BrowserContext, base: string, spec: PageSpec): Promise<Load> {
  const page = await context.newPage();
  try {
    await page.goto(`${base}/${spec.hash}`, { waitUntil: 'commit', timeout: PAGE_TIMEOUT_MS });
    await page.waitForFunction(isReady, null, { timeout: PAGE_TIMEOUT_MS });
    await page.waitForFunction(hasPainted, null, { timeout: PAGE_TIMEOUT_MS });
    const measured = await page.evaluate(measures);
    return { ...measured, shown: await spec.check(page) };
  } finally {
    await page.close();
  }
}

interface PageResult {
  label: string;
  warmup: Load;
  loads: Load[];
}

async function measurePages(browser: Browser, setup: Setup, loads: number): Promise<PageResult[]> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    await context.addInitScript({ content: READY_PROBE });
    await signIn(context, setup.base, setup.tokenFile);
    const results: PageResult[] = [];
    for (const spec of PAGES) {
      log(`${spec.label}: 1 warm-up and ${loads} measured load(s)`);
      const warmup = await loadOnce(context, setup.base, spec);
      const measured: Load[] = [];
      for (let i = 0; i < loads; i++) measured.push(await loadOnce(context, setup.base, spec));
      results.push({ label: spec.label, warmup, loads: measured });
    }
    return results;
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------------------------------
// The API alone: each call the pages make, from here with the bearer token.

/** How long the daemon reuses a built status document (STATUS_CACHE_MS in src/daemon/daemon.ts). */
const STATUS_CACHE_MS = 1_000;
const API_CALLS = ['/api/session', '/api/backup/status', '/api/backups?limit=5', '/api/backups?offset=0&limit=50', '/api/charts', '/api/config'];

interface ApiTiming {
  path: string;
  ms: number[];
  bytes: number;
}

async function timeApi(base: string, tokenFile: string, times: number): Promise<ApiTiming[]> {
  const token = (await readFile(tokenFile, 'utf8')).trim();
  const results: ApiTiming[] = [];
  for (const path of API_CALLS) {
    const ms: number[] = [];
    let bytes = 0;
    for (let i = 0; i < times; i++) {
      // The daemon keeps a built status for 1 s: spaced further apart, each call builds it.
      if (path === '/api/backup/status') await sleep(STATUS_CACHE_MS + 100);
      const started = performance.now();
      const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
      const body = await response.arrayBuffer();
      ms.push(performance.now() - started);
      if (response.status !== 200) throw new Error(`GET ${path} answered ${response.status}`);
      bytes = Number(response.headers.get('content-length') ?? body.byteLength);
    }
    results.push({ path, ms, bytes });
  }
  return results;
}

// ---------------------------------------------------------------------------------------
// Asset sizes.

interface AssetSizes {
  files: { name: string; bytes: number; gzip: number }[];
  /** app.js + app.css gzipped (-9), in KB of 1000 bytes. */
  pageGzipKb: number;
}

function assetSizes(): AssetSizes {
  const files = ['app.js', 'app.css', 'login.css'].map((name) => {
    let body: Buffer;
    try {
      body = readFileSync(join(WEB_ASSETS, name));
    } catch (error) {
      throw new Error(`dist/web/${name} is missing (${(error as NodeJS.ErrnoException).code}): run npm run build first`);
    }
    return { name, bytes: body.length, gzip: gzipSync(body, { level: 9 }).length };
  });
  const page = files.filter((f) => f.name !== 'login.css').reduce((sum, f) => sum + f.gzip, 0);
  return { files, pageGzipKb: page / 1000 };
}

// ---------------------------------------------------------------------------------------
// Report.

const ms = (value: number | null | undefined) => (value === null || value === undefined || Number.isNaN(value) ? '-' : value.toFixed(0));
const stats = (xs: number[]) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
const kb = (bytes: number) => (bytes / 1000).toFixed(1);

/** When the last /api/ response the page waited for had arrived. */
const lastApiAnswer = (load: Load) => Math.max(...load.resources.filter((r) => resourcePath(r.url).startsWith('/api/') && r.end <= load.ready).map((r) => r.end));

/** The resource's path and query, the page's own origin left out. */
function resourcePath(url: string): string {
  const parsed = new URL(url);
  return `${parsed.pathname}${parsed.search}`;
}

interface ResourceSummary {
  path: string;
  start: number;
  duration: number;
  waiting: number;
  end: number;
  transfer: number;
  decoded: number;
}

/** Per resource of a page, medians over the loads, in the order the page fetches them. */
function resourceSummary(loads: Load[]): ResourceSummary[] {
  const byPath = new Map<string, Resource[]>();
  for (const load of loads) for (const r of load.resources) byPath.set(resourcePath(r.url), [...(byPath.get(resourcePath(r.url)) ?? []), r]);
  return [...byPath.entries()]
    .map(([path, rs]) => ({
      path,
      start: median(rs.map((r) => r.start)),
      duration: median(rs.map((r) => r.duration)),
      waiting: median(rs.map((r) => r.waiting)),
      end: median(rs.map((r) => r.end)),
      transfer: median(rs.map((r) => r.transfer)),
      decoded: median(rs.map((r) => r.decoded)),
    }))
    .sort((a, b) => a.end - b.end);
}

interface Verdicts {
  missed: string[];
  json: Record<string, number | string | boolean | null>;
}

function verdicts(pages: PageResult[], sizes: AssetSizes, idleOn: IdleSample, idleOff: IdleSample): Verdicts {
  const overview = pages.find((p) => p.label === 'overview')!;
  const backups = pages.find((p) => p.label === 'backups')!;
  const overviewFcp = median(overview.loads.map((l) => l.fcp));
  const backupsReady = median(backups.loads.map((l) => l.ready));
  const idleAllowed = idleOff.pct + Math.max(IDLE_CPU_SLACK_PCT, idleOff.pct * IDLE_CPU_SLACK_RATIO);
  const missed: string[] = [];
  if (overviewFcp > TARGET_OVERVIEW_FCP_MS) missed.push(`overview first contentful paint ${ms(overviewFcp)} ms > ${TARGET_OVERVIEW_FCP_MS} ms`);
  if (backupsReady > TARGET_BACKUPS_READY_MS) missed.push(`backups page rendered in ${ms(backupsReady)} ms > ${TARGET_BACKUPS_READY_MS} ms`);
  if (sizes.pageGzipKb > TARGET_ASSETS_GZIP_KB) missed.push(`app.js + app.css ${sizes.pageGzipKb.toFixed(1)} KB gzipped > ${TARGET_ASSETS_GZIP_KB} KB`);
  if (idleOn.pct > idleAllowed) missed.push(`idle CPU with the listener ${idleOn.pct.toFixed(3)} % of a core > ${idleAllowed.toFixed(3)} % (without it ${idleOff.pct.toFixed(3)} %)`);
  const round = (x: number, digits = 1) => Number(x.toFixed(digits));
  return {
    missed,
    json: {
      overview_fcp_ms: round(overviewFcp),
      overview_ready_ms: round(median(overview.loads.map((l) => l.ready))),
      backups_fcp_ms: round(median(backups.loads.map((l) => l.fcp))),
      backups_ready_ms: round(backupsReady),
      assets_gzip_kb: round(sizes.pageGzipKb),
      idle_cpu_on_pct: round(idleOn.pct, 3),
      idle_cpu_off_pct: round(idleOff.pct, 3),
      idle_cpu_ratio: idleOff.pct > 0 ? round(idleOn.pct / idleOff.pct, 2) : null,
      loads: overview.loads.length,
      idle_seconds: round(idleOn.seconds),
      ok: missed.length === 0,
    },
  };
}

function report(setup: Setup, pages: PageResult[], api: ApiTiming[], sizes: AssetSizes, idleOn: IdleSample, idleOff: IdleSample, starts: number[], v: Verdicts, wallSeconds: number): string {
  const s = setup.seed;
  const lines: string[] = [];
  lines.push(
    `stackback dashboard: ${s.backups} backups (${s.fulls} full, ${s.partial} partial) from ${s.first_backup} to ${s.last_backup}, ` +
      `${s.runs} runs (${Object.entries(s.runs_by_kind).map(([k, n]) => `${k} ${n}`).join(', ')}; ${s.runs_not_ok} not ok), ${s.verifications} verifications, ` +
      `${s.repository_sizes} repository sizes, ${s.chunks} chunk rows; catalog ${(s.catalog_bytes / 1024 / 1024).toFixed(1)} MiB, seeded in ${setup.seedSeconds.toFixed(1)} s; ` +
      `daemon ready in ${starts.map((x) => x.toFixed(2)).join(' / ')} s (with / without web)`,
    '',
  );
  const rows = [['page (ms)', 'loads', 'FCP median', 'min', 'max', 'rendered median', 'min', 'max', '+frame median', 'HTML', 'app.js ran', 'last API answer', 'first load FCP / rendered']];
  for (const p of pages) {
    const fcp = stats(p.loads.map((l) => l.fcp));
    const ready = stats(p.loads.map((l) => l.ready));
    rows.push([p.label, String(p.loads.length), ms(fcp.median), ms(fcp.min), ms(fcp.max), ms(ready.median), ms(ready.min), ms(ready.max), ms(median(p.loads.map((l) => l.painted))), ms(median(p.loads.map((l) => l.html ?? NaN))), ms(median(p.loads.map((l) => l.scripts ?? NaN))), ms(median(p.loads.map(lastApiAnswer))), `${ms(p.warmup.fcp)} / ${ms(p.warmup.ready)}`]);
  }
  lines.push(formatTable(rows));
  lines.push(`(ms from navigation start; "rendered": the page set data-ready=1; "+frame": the next frame after it; "HTML": the document received; "app.js ran": DOMContentLoaded ended, after the module script's first part; "last API answer": the end of its last /api/ response before it rendered; the first load, a warm-up, is not counted)`);
  lines.push(`shown: ${pages.map((p) => `${p.label} ${Object.entries(p.loads.at(-1)!.shown).map(([k, x]) => `${k}=${x}`).join(' ')}`).join('; ')}`, '');

  for (const p of pages) {
    const resources = resourceSummary(p.loads);
    const apis = resources.filter((r) => r.path.startsWith('/api/'));
    const slowest = apis.reduce<ResourceSummary | undefined>((worst, r) => (worst === undefined || r.duration > worst.duration ? r : worst), undefined);
    lines.push(`${p.label}: the page's requests (medians, ms from navigation start)${slowest ? ` — slowest API call ${slowest.path} ${ms(slowest.duration)} ms` : ''}`);
    lines.push(formatTable([['request', 'starts at', 'ends at', 'duration', 'to first byte', 'transfer KB', 'decoded KB'], ...resources.map((r) => [r.path, ms(r.start), ms(r.end), ms(r.duration), ms(r.waiting), kb(r.transfer), kb(r.decoded)])]));
    lines.push('');
  }
  lines.push(`the API alone (bearer token, from the bench, ${api[0]?.ms.length ?? 0} calls each, no browser):`);
  lines.push(formatTable([['GET', 'median ms', 'min', 'max', 'KB'], ...api.map((a) => [a.path, ms(median(a.ms)), ms(Math.min(...a.ms)), ms(Math.max(...a.ms)), kb(a.bytes)])]));
  lines.push('');
  lines.push(formatTable([['asset', 'bytes', 'gzip -9'], ...sizes.files.map((f) => [f.name, String(f.bytes), String(f.gzip)])]));
  lines.push('');
  const idleRow = (label: string, x: IdleSample) => [label, x.seconds.toFixed(1), String(x.ticks), x.pct.toFixed(3), x.rssMiB.toFixed(0)];
  lines.push(formatTable([['daemon idle', 's', `ticks (1/${CLOCK_TICKS} s)`, '% of one core', 'RSS MiB'], idleRow('web.listen set (after the browser)', idleOn), idleRow('no web: section', idleOff)]));
  lines.push('');
  const j = v.json;
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');
  lines.push(
    formatTable([
      ['target', 'value', 'limit', ''],
      ['overview first contentful paint (median)', `${j.overview_fcp_ms} ms`, `≤ ${TARGET_OVERVIEW_FCP_MS} ms`, verdict(Number(j.overview_fcp_ms) <= TARGET_OVERVIEW_FCP_MS)],
      ['overview data rendered (median, for reference)', `${j.overview_ready_ms} ms`, '', ''],
      ['backups page rendered: table and charts (median)', `${j.backups_ready_ms} ms`, `≤ ${TARGET_BACKUPS_READY_MS} ms`, verdict(Number(j.backups_ready_ms) <= TARGET_BACKUPS_READY_MS)],
      ['app.js + app.css gzipped', `${j.assets_gzip_kb} KB`, `≤ ${TARGET_ASSETS_GZIP_KB} KB`, verdict(sizes.pageGzipKb <= TARGET_ASSETS_GZIP_KB)],
      [
        'daemon idle CPU, listener on vs off',
        `${idleOn.pct.toFixed(3)} % vs ${idleOff.pct.toFixed(3)} %${j.idle_cpu_ratio !== null ? ` (× ${j.idle_cpu_ratio})` : ''}`,
        `≤ off + max(${IDLE_CPU_SLACK_PCT} %, ${IDLE_CPU_SLACK_RATIO * 100}% of off)`,
        verdict(!v.missed.some((m) => m.startsWith('idle CPU'))),
      ],
    ]),
  );
  lines.push('', `bench wall time ${wallSeconds.toFixed(0)} s${v.missed.length > 0 ? `\nMISSED: ${v.missed.join('; ')}` : ''}`, '');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const wallStarted = performance.now();
  const sizes = assetSizes();
  await withScratch(async (scratch, onCleanup) => {
    // Stopped in reverse order on any exit: the browser, then the daemon.
    const stoppers: (() => Promise<unknown>)[] = [];
    onCleanup(async () => {
      for (const stop of stoppers.reverse()) await stop().catch((error: unknown) => log(`cleanup: ${error instanceof Error ? error.message : String(error)}`));
    });
    const setup = await setUp(scratch);

    log('starting the daemon with the dashboard');
    const daemon = await startDaemon(setup.configWeb, setup.adminSocket, setup.base);
    stoppers.push(() => daemon.stop());
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    stoppers.push(() => browser.close());
    const pages = await measurePages(browser, setup, options.loads);
    await browser.close();
    const api = await timeApi(setup.base, setup.tokenFile, options.loads);

    log(`idle CPU with the listener: ${options.idleSeconds} s`);
    const idleOn = await sampleIdle(daemon.pid, options.idleSeconds);
    await daemon.stop();

    log('starting the daemon without web:');
    const plain = await startDaemon(setup.configPlain, setup.adminSocket, null);
    stoppers.push(() => plain.stop());
    log(`idle CPU without the listener: ${options.idleSeconds} s`);
    const idleOff = await sampleIdle(plain.pid, options.idleSeconds);
    await plain.stop();

    const v = verdicts(pages, sizes, idleOn, idleOff);
    process.stdout.write(report(setup, pages, api, sizes, idleOn, idleOff, [daemon.startSeconds, plain.startSeconds], v, (performance.now() - wallStarted) / 1000));
    process.stdout.write(`${JSON.stringify(v.json)}\n`);
    if (v.missed.length > 0) process.exitCode = 1;
  });
}

runMain(main);
