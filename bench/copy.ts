// Off-site copies (issue 16): `stackback copy` of a full backup of the realistic pgbench
// database to s3rver on loopback, against uploading the same stored bytes as one object with a
// plain @aws-sdk/lib-storage Upload (the network-bound baseline); the requests a copy makes;
// an incremental copy; and a restore from the remote against one from the local repository.
//
//   npm run bench:copy -- [scale] [--runs N] [--json]      (scale 50, 3 rounds by default)
//
// Every request goes through a counting proxy (test/support/fault-proxy.ts, no faults, no
// payload checks) in front of s3rver, so requests are counted by method at the wire. Both
// s3rver and the proxy run in this process; the baseline Upload runs in a child process of its
// own (this file again, with UPLOAD_MODE), as `stackback copy` does, and both are timed as
// whole processes.
//
// Per round, in alternating order: (a) the baseline Upload of one file holding every chunk
// file of the repository's chains/ concatenated (the same stored bytes, multipart with the
// default 5 MiB parts and 4 in flight); (b) `stackback copy --remote R NAME` of the full backup
// to a fresh remote: each round names a new remote (new name, new prefix), since the catalog
// remembers per remote name which packs a remote holds. Then once: a ~1% clustered change,
// an incremental backup and its copy (which objects went). Then, per round in alternating
// order, `restore NAME --source bench --target-db …` from the local repository and with
// `--from R` from the remote.
//
// Targets (issue 16, scale 50): copy wall ≤ 1.3 × the baseline; ≤ 300 requests per GiB of
// stored data for a full copy; restore from the remote ≤ 1.3 × from the local repository;
// peak RSS ≤ 250 MiB.
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { RecordedRequest } from '../test/support/fault-proxy.ts';
import type { Measure, Options } from './support.ts';

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The project's Node 24, as bench/support.ts runs the CLI with.
const NODE = join(ROOT, 'node_modules/.bin/node');
/** argv[2] of the child that runs the baseline Upload. */
const UPLOAD_MODE = '--baseline-upload-child';
const BUCKET = 'stackback-bench';
const GIB = 1024 ** 3;

const METHODS = ['PUT', 'GET', 'HEAD', 'LIST', 'POST', 'DELETE'] as const;
type Method = (typeof METHODS)[number];
type Counts = Record<Method, number> & { total: number };

/**
 * The baseline, in its own process: one object with a plain lib-storage Upload (default part
 * size and queue), the client as production configures one for S3-compatible servers. The SDK
 * is imported here only, so the child loads nothing else of the bench.
 */
async function uploadChild(args: string[]): Promise<void> {
  const [file, endpoint, bucket, key] = args;
  if (!file || !endpoint || !bucket || !key) throw new Error(`usage: ${UPLOAD_MODE} FILE ENDPOINT BUCKET KEY (credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)`);
  const { S3Client } = await import('@aws-sdk/client-s3');
  const { Upload } = await import('@aws-sdk/lib-storage');
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? '', secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? '' },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const started = performance.now();
  await new Upload({ client, params: { Bucket: bucket, Key: key, Body: createReadStream(file) } }).done();
  const seconds = (performance.now() - started) / 1000;
  client.destroy();
  process.stdout.write(`${JSON.stringify({ seconds })}\n`);
}

function countRequests(requests: RecordedRequest[]): Counts {
  const counts = { PUT: 0, GET: 0, HEAD: 0, LIST: 0, POST: 0, DELETE: 0, total: 0 };
  for (const r of requests) {
    const method: Method = r.op === 'ListObjectsV2' || r.op === 'ListObjects' ? 'LIST' : (r.method as Method);
    counts[method] = (counts[method] ?? 0) + 1;
    counts.total += 1;
  }
  return counts;
}

const bytesUp = (requests: RecordedRequest[]) => requests.reduce((sum, r) => sum + r.bytesIn, 0);
const bytesDown = (requests: RecordedRequest[]) => requests.reduce((sum, r) => sum + r.bytesOut, 0);
/** Bytes of the objects' contents that GETs brought down at least once (the union of their ranges, per object). */
function distinctBytesDown(requests: RecordedRequest[]): number {
  const ranges = new Map<string, [number, number][]>();
  for (const r of requests) {
    if (r.method !== 'GET' || r.key === undefined || r.op.startsWith('List') || r.bytesOut === 0) continue;
    const range = /^bytes=(\d+)-(\d*)$/.exec(String(r.headers.range ?? ''));
    const start = range ? Number(range[1]) : 0;
    const list = ranges.get(r.key) ?? [];
    list.push([start, start + r.bytesOut]);
    ranges.set(r.key, list);
  }
  let total = 0;
  for (const list of ranges.values()) {
    list.sort((a, b) => a[0] - b[0]);
    let [start, end] = list[0]!;
    for (const [s, e] of list.slice(1)) {
      if (s > end) {
        total += end - start;
        [start, end] = [s, e];
      } else end = Math.max(end, e);
    }
    total += end - start;
  }
  return total;
}

const formatCounts = (c: Counts) => `${c.total} (${METHODS.filter((m) => c[m] > 0).map((m) => `${m} ${c[m]}`).join(', ') || 'none'})`;

/** The clustered ~1% change of bench-data.md (as bench/pg-incremental.ts makes it). */
function clusteredChangeSql(scale: number): string {
  const rows = scale * 1000;
  return `
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= ${rows};
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime, filler)
  SELECT 1 + abs(hashint4(g)) % (10 * ${scale}), 1 + abs(hashint4(g + 1)) % ${scale},
         1 + abs(hashint4(g + 2)) % (100000 * ${scale}), hashint4(g + 3) % 5000,
         timestamp '2026-01-01' + g * interval '10 milliseconds', left(md5(g::text), 22)
  FROM generate_series(1, ${rows}) g;
`;
}

/** Every chunk file under `dir`, in path order. */
async function chunkFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/** Concatenates the chunk files into `target`: the baseline uploads exactly the stored bytes. */
async function concatenate(files: string[], target: string): Promise<number> {
  const out = await open(target, 'w');
  try {
    for (const file of files) await out.write(await readFile(file));
  } finally {
    await out.close();
  }
  return (await stat(target)).size;
}

interface CopyRound {
  round: number;
  order: 'baseline first' | 'copy first';
  baseline: Measure & { insideSeconds: number; requests: Counts; bytesUp: number };
  copy: Measure & { requests: Counts; bytesUp: number; packsSent: number; reportedBytesSent: number; reportedRequests: number };
}

interface Incremental {
  backup: string;
  bytesStored: number;
  copy: Measure & { requests: Counts; bytesUp: number; packsSent: number; putKeys: string[]; onlyNewObjects: boolean; why: string };
}

interface RestoreRound {
  round: number;
  order: 'local first' | 'remote first';
  local: Measure;
  remote: Measure & { requests: Counts; bytesDown: number; distinctBytesDown: number };
}

/** One element of `stackback copy --json`: what the copy says it did. */
interface CopyReport {
  remote: string;
  ok: boolean;
  error?: string;
  copied: { backup: string; chunks_sent: number; bytes_sent: number }[];
  packs_sent: number;
  bytes_sent: number;
  requests: { put: number; get: number; head: number; list: number; delete: number; retries: number };
}

async function main(): Promise<void> {
  const support = await import('./support.ts');
  const { DB, MIB, formatTable, largest, median, megabytes, run, seconds, settle, stackback, treeBytes, verdict, writeConfig } = support;
  const { startS3, writeCredentialsFile, S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY } = await import('../test/support/s3.ts');
  const { startFaultProxy } = await import('../test/support/fault-proxy.ts');
  const options: Options = support.parseBenchOptions(3);
  const log = (what: string) => process.stderr.write(`${what}\n`);

  await support.withScratch(async (scratch, onCleanup) => {
    // withScratch keeps one stop function: it stops everything started here, newest first.
    const stops: (() => Promise<void>)[] = [];
    onCleanup(async () => {
      for (const stop of stops.reverse()) await stop().catch((error: unknown) => log(`cleanup: ${String(error)}`));
    });
    const s3 = await startS3({ buckets: [BUCKET] });
    stops.push(() => s3.stop());
    // verifyPayload off: the proxy only counts and forwards (streamed), for both sides alike.
    const proxy = await startFaultProxy(s3.endpoint, { verifyPayload: false });
    stops.push(() => proxy.stop());
    const { bench, databaseBytes } = await support.startBench(options, scratch, (stop) => void stops.push(stop));

    const dir = join(scratch, 'stackback');
    await mkdir(dir);
    const credentialsFile = join(dir, 's3.credentials');
    await writeCredentialsFile(credentialsFile, { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY });
    // Sockets of its own: a daemon running on this machine never takes the bench's jobs.
    const control = { socket: join(dir, 'control.sock'), admin_socket: join(dir, 'admin.sock') };
    const remote = (round: number) => ({ name: `offsite-r${round}`, prefix: `copy-r${round}/` });
    /** (Re)writes the config: the same repository and catalog, with the remote of `round` (none for 0). */
    const configure = (round: number) =>
      writeConfig(bench, dir, DB, {
        control,
        remotes:
          round === 0
            ? []
            : [{ name: remote(round).name, type: 's3', endpoint: proxy.endpoint, region: 'us-east-1', bucket: BUCKET, prefix: remote(round).prefix, force_path_style: true, credentials_file: credentialsFile }],
      });
    const { config, repository } = await configure(0);

    log('stackback backup --full');
    await settle(bench);
    const full = await run(bench, stackback('stackback backup --full', ['backup', '--full', '--json', '--config', config], true));
    const fullSummary = JSON.parse(full.stdout) as { backup: string; kind: string; status: string; stats: { bytes_read: number; bytes_stored: number } };
    if (fullSummary.kind !== 'full' || fullSummary.status !== 'ok') throw new Error(`backup --full made a ${fullSummary.status} ${fullSummary.kind} backup`);
    const fullName = fullSummary.backup;
    const files = await chunkFiles(join(repository, 'chains'));
    const storedBytes = await treeBytes(join(repository, 'chains'));
    const blob = join(scratch, 'baseline.bin');
    const blobBytes = await concatenate(files, blob);
    if (blobBytes !== storedBytes) throw new Error(`the baseline file has ${blobBytes} bytes, the chunk files ${storedBytes}`);
    log(`full backup ${fullName}: ${files.length} chunk files, ${megabytes(storedBytes)} MiB stored`);

    const removePrefix = async (prefix: string) => {
      for (const object of await s3.list(prefix)) await s3.remove(object.key);
    };

    // (a) and (b), alternating.
    const copyRounds: CopyRound[] = [];
    for (let round = 1; round <= options.runs; round++) {
      const tag = `[copy round ${round}/${options.runs}]`;
      await configure(round);
      const timeBaseline = async (): Promise<CopyRound['baseline']> => {
        log(`${tag} baseline: lib-storage Upload of ${megabytes(storedBytes)} MiB as one object`);
        await settle(bench);
        proxy.resetRequests();
        const step = {
          label: 'baseline Upload',
          file: NODE,
          args: [SELF, UPLOAD_MODE, blob, proxy.endpoint, BUCKET, `baseline-r${round}/stored.bin`],
          env: { AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY },
          rss: true,
        };
        const measured = await run(bench, step);
        const inside = JSON.parse(measured.stdout) as { seconds: number };
        return { seconds: measured.seconds, peakRss: measured.peakRss, insideSeconds: inside.seconds, requests: countRequests(proxy.requests), bytesUp: bytesUp(proxy.requests) };
      };
      const timeCopy = async (): Promise<CopyRound['copy']> => {
        log(`${tag} stackback copy --remote ${remote(round).name} ${fullName}`);
        await settle(bench);
        proxy.resetRequests();
        const measured = await run(bench, stackback('stackback copy', ['copy', '--remote', remote(round).name, fullName, '--json', '--config', config], true));
        const report = (JSON.parse(measured.stdout) as CopyReport[])[0]!;
        if (!report.ok || report.copied.length !== 1) throw new Error(`stackback copy did not copy ${fullName}: ${report.error ?? JSON.stringify(report.copied)}`);
        const r = report.requests;
        return {
          seconds: measured.seconds,
          peakRss: measured.peakRss,
          requests: countRequests(proxy.requests),
          bytesUp: bytesUp(proxy.requests),
          packsSent: report.packs_sent,
          reportedBytesSent: report.bytes_sent,
          reportedRequests: r.put + r.get + r.head + r.list + r.delete,
        };
      };
      let baseline: CopyRound['baseline'];
      let copy: CopyRound['copy'];
      const baselineFirst = round % 2 === 1;
      if (baselineFirst) {
        baseline = await timeBaseline();
        copy = await timeCopy();
      } else {
        copy = await timeCopy();
        baseline = await timeBaseline();
      }
      copyRounds.push({ round, order: baselineFirst ? 'baseline first' : 'copy first', baseline, copy });
      log(`${tag} copy ${seconds(copy.seconds)} s, baseline ${seconds(baseline.seconds)} s (${(copy.seconds / baseline.seconds).toFixed(2)}); copy requests ${formatCounts(copy.requests)}`);
      // Untimed, straight to s3rver: only the newest remote stays (the incremental and the restores use it).
      await removePrefix(`baseline-r${round}/`);
      if (round > 1) await removePrefix(remote(round - 1).prefix);
    }
    const lastRemote = remote(options.runs).name;
    const lastPrefix = remote(options.runs).prefix;

    // (c) an incremental after a ~1% clustered change: only its new packs and its manifest go.
    log(`[incremental] ~1% clustered change, backup, copy --remote ${lastRemote}`);
    await bench.cluster.psql(DB, clusteredChangeSql(options.scale));
    await settle(bench);
    const incrementalRun = await run(bench, stackback('stackback backup --incremental', ['backup', '--incremental', '--json', '--config', config]));
    const incrementalSummary = JSON.parse(incrementalRun.stdout) as typeof fullSummary;
    if (incrementalSummary.kind !== 'incremental' || incrementalSummary.status !== 'ok') throw new Error(`backup --incremental made a ${incrementalSummary.status} ${incrementalSummary.kind} backup`);
    await settle(bench);
    proxy.resetRequests();
    const incrementalCopyRun = await run(bench, stackback('stackback copy (incremental)', ['copy', '--remote', lastRemote, '--json', '--config', config], true));
    const incrementalReport = (JSON.parse(incrementalCopyRun.stdout) as CopyReport[])[0]!;
    if (!incrementalReport.ok) throw new Error(`stackback copy of the incremental failed: ${incrementalReport.error}`);
    const putKeys = proxy.filter({ method: 'PUT' }).map((r) => (r.key ?? '').slice(lastPrefix.length));
    const manifestPuts = putKeys.filter((k) => k.startsWith('manifests/'));
    const otherPuts = putKeys.filter((k) => !k.startsWith('packs/') && !k.startsWith('manifests/'));
    const copiedNames = incrementalReport.copied.map((c) => c.backup);
    const problems = [
      ...(copiedNames.length === 1 && copiedNames[0] === incrementalSummary.backup ? [] : [`copied ${JSON.stringify(copiedNames)}`]),
      ...(manifestPuts.length === 1 && manifestPuts[0] === `manifests/${incrementalSummary.backup}.json` ? [] : [`manifest PUTs ${JSON.stringify(manifestPuts)}`]),
      ...(otherPuts.length === 0 ? [] : [`other PUTs ${JSON.stringify(otherPuts)}`]),
      ...(putKeys.length - manifestPuts.length === incrementalReport.packs_sent ? [] : [`${putKeys.length - manifestPuts.length} pack PUTs, the copy reports ${incrementalReport.packs_sent}`]),
    ];
    const incremental: Incremental = {
      backup: incrementalSummary.backup,
      bytesStored: incrementalSummary.stats.bytes_stored,
      copy: {
        seconds: incrementalCopyRun.seconds,
        peakRss: incrementalCopyRun.peakRss,
        requests: countRequests(proxy.requests),
        bytesUp: bytesUp(proxy.requests),
        packsSent: incrementalReport.packs_sent,
        putKeys,
        onlyNewObjects: problems.length === 0,
        why: problems.join('; '),
      },
    };
    log(`[incremental] ${megabytes(incremental.bytesStored)} MiB new stored; copy sent ${megabytes(incremental.copy.bytesUp)} MiB in ${formatCounts(incremental.copy.requests)}`);

    // (d) restore from the remote against the local repository, alternating.
    const help = await run(bench, stackback('stackback restore --help', ['restore', '--help']));
    const hasFrom = /--from\b/.test(help.stdout);
    const restoreRounds: RestoreRound[] = [];
    if (!hasFrom) log('[restore] this build of stackback has no `restore --from`: the restores are skipped');
    for (let round = 1; hasFrom && round <= options.runs; round++) {
      const tag = `[restore round ${round}/${options.runs}]`;
      const restore = async (from: 'local' | 'remote') => {
        const target = `${DB}_from_${from}`;
        log(`${tag} stackback restore ${fullName}${from === 'remote' ? ` --from ${lastRemote}` : ''} --target-db ${target}`);
        await settle(bench);
        proxy.resetRequests();
        const args = ['restore', fullName, '--source', 'bench', '--target-db', target, '--yes', '--config', config, ...(from === 'remote' ? ['--from', lastRemote] : [])];
        try {
          const measured = await run(bench, stackback(`stackback restore (${from})`, args, true));
          return { seconds: measured.seconds, peakRss: measured.peakRss, requests: countRequests(proxy.requests), bytesDown: bytesDown(proxy.requests), distinctBytesDown: distinctBytesDown(proxy.requests) };
        } finally {
          await bench.cluster.psql('postgres', `DROP DATABASE IF EXISTS ${target}`);
        }
      };
      const localFirst = round % 2 === 1;
      let local: Measure;
      let remoteSide: RestoreRound['remote'];
      if (localFirst) {
        local = await restore('local');
        remoteSide = await restore('remote');
      } else {
        remoteSide = await restore('remote');
        local = await restore('local');
      }
      if (remoteSide.requests.total === 0) throw new Error('restore --from made no request to the remote: it did not read from the bucket');
      restoreRounds.push({ round, order: localFirst ? 'local first' : 'remote first', local, remote: remoteSide });
      log(`${tag} remote ${seconds(remoteSide.seconds)} s, local ${seconds(local.seconds)} s (${(remoteSide.seconds / local.seconds).toFixed(2)})`);
    }

    // The summary.
    const copyMedian = median(copyRounds.map((r) => r.copy.seconds));
    const baselineMedian = median(copyRounds.map((r) => r.baseline.seconds));
    const copyRatio = median(copyRounds.map((r) => r.copy.seconds / r.baseline.seconds));
    const fullRequests = median(copyRounds.map((r) => r.copy.requests.total));
    const requestsPerGib = fullRequests / (storedBytes / GIB);
    const packPuts = median(copyRounds.map((r) => r.copy.packsSent));
    const restoreLocal = restoreRounds.length ? median(restoreRounds.map((r) => r.local.seconds)) : null;
    const restoreRemote = restoreRounds.length ? median(restoreRounds.map((r) => r.remote.seconds)) : null;
    const restoreRatio = restoreRounds.length ? median(restoreRounds.map((r) => r.remote.seconds / r.local.seconds)) : null;
    const rssOf = (xs: Measure[]) => (xs.length === 0 || xs.some((x) => x.peakRss === null) ? null : largest(xs.map((x) => x.peakRss!)));
    const copyRss = rssOf([...copyRounds.map((r) => r.copy), incremental.copy]);
    const remoteRestoreRss = rssOf(restoreRounds.map((r) => r.remote));
    const localRestoreRss = rssOf(restoreRounds.map((r) => r.local));
    const stackbackRss = rssOf([...copyRounds.map((r) => r.copy), incremental.copy, ...restoreRounds.map((r) => r.remote)]);
    const mib = (b: number | null) => (b === null ? null : b / MIB);
    const targets = [
      { what: 'copy wall / Upload baseline wall (median of per-round ratios)', value: copyRatio, limit: 1.3 },
      { what: 'requests per GiB stored, full copy', value: requestsPerGib, limit: 300 },
      { what: 'restore wall: from remote / local (median of per-round ratios)', value: restoreRatio, limit: 1.3 },
      { what: 'peak RSS MiB: stackback copy and restore --from', value: mib(stackbackRss), limit: 250 },
      { what: 'incremental copy sends only new packs + its manifest', value: incremental.copy.onlyNewObjects ? 1 : 0, limit: null },
    ].map((t) => ({ ...t, verdict: t.limit === null ? (t.value === 1 ? 'PASS' : 'FAIL') : verdict(t.value, t.limit) }));

    const copyLines = copyRounds.map(
      (r) =>
        `round ${r.round} (${r.order}): copy ${seconds(r.copy.seconds)} s, baseline ${seconds(r.baseline.seconds)} s (Upload itself ${seconds(r.baseline.insideSeconds)} s), ` +
        `ratio ${(r.copy.seconds / r.baseline.seconds).toFixed(2)}; copy requests ${formatCounts(r.copy.requests)}, of them ${r.copy.packsSent} pack PUTs, ${megabytes(r.copy.bytesUp)} MiB up ` +
        `(stackback counts ${r.copy.reportedRequests}); baseline requests ${formatCounts(r.baseline.requests)}`,
    );
    const restoreLines = restoreRounds.map(
      (r) =>
        `round ${r.round} (${r.order}): from remote ${seconds(r.remote.seconds)} s, local ${seconds(r.local.seconds)} s, ratio ${(r.remote.seconds / r.local.seconds).toFixed(2)}; ` +
        `remote requests ${formatCounts(r.remote.requests)}, ${megabytes(r.remote.bytesDown)} MiB down (${(r.remote.bytesDown / storedBytes).toFixed(1)}× the stored bytes; ` +
        `${megabytes(r.remote.distinctBytesDown)} MiB distinct, so each byte fetched ${(r.remote.bytesDown / r.remote.distinctBytesDown).toFixed(1)}× on average)`,
    );
    const measured = formatTable([
      ['what (median of rounds)', 'wall s', 'peak RSS MiB'],
      ['stackback copy (full backup)', seconds(copyMedian), megabytes(copyRss)],
      ['lib-storage Upload, same bytes, one object', seconds(baselineMedian), megabytes(rssOf(copyRounds.map((r) => r.baseline)))],
      ['stackback restore --from remote', restoreRemote === null ? 'skipped' : seconds(restoreRemote), megabytes(remoteRestoreRss)],
      ['stackback restore (local repository)', restoreLocal === null ? 'skipped' : seconds(restoreLocal), megabytes(localRestoreRss)],
    ]);
    const text = [
      `stackback copy bench: scale ${options.scale}, database ${megabytes(databaseBytes)} MiB, dump ${megabytes(fullSummary.stats.bytes_read)} MiB, ` +
        `stored ${megabytes(storedBytes)} MiB in ${files.length} chunk files (${megabytes(storedBytes / files.length)} MiB average), ${options.runs} round(s)`,
      '',
      ...copyLines,
      `full copy: ${fullRequests} requests for ${(storedBytes / GIB).toFixed(3)} GiB stored = ${requestsPerGib.toFixed(0)} per GiB; ${packPuts} of them pack PUTs ` +
        `(${(packPuts / (storedBytes / GIB)).toFixed(0)} per GiB), the rest what every copy asks whatever its size (repo.json, LISTs, the manifest)`,
      '',
      `incremental ${incremental.backup} after a ~1% clustered change: ${megabytes(incremental.bytesStored)} MiB new stored; its copy sent ${megabytes(incremental.copy.bytesUp)} MiB ` +
        `in ${formatCounts(incremental.copy.requests)}, ${incremental.copy.packsSent} pack(s), ${seconds(incremental.copy.seconds)} s; PUT keys: ${incremental.copy.putKeys.join(', ')}` +
        (incremental.copy.onlyNewObjects ? '' : `\n  NOT only new objects: ${incremental.copy.why}`),
      '',
      ...(hasFrom ? restoreLines : ['restore: skipped (this build of stackback has no `restore --from`)']),
      '',
      measured,
      '',
      formatTable([
        ['target', 'value', 'limit', ''],
        ...targets.map((t) => [t.what, t.value === null ? '-' : t.limit === null ? (t.value === 1 ? 'yes' : 'no') : t.value.toFixed(t.limit >= 100 ? 0 : 2), t.limit === null ? '' : `≤ ${t.limit}`, t.verdict]),
      ]),
      '',
    ].join('\n');
    const summary = {
      bench: 'copy',
      scale: options.scale,
      runs: options.runs,
      database_bytes: databaseBytes,
      stored_bytes: storedBytes,
      chunk_files: files.length,
      copy_wall_median_s: copyMedian,
      baseline_wall_median_s: baselineMedian,
      copy_over_baseline: copyRatio,
      full_copy_requests: fullRequests,
      requests_per_gib: requestsPerGib,
      full_copy_pack_puts: packPuts,
      restore_remote_median_s: restoreRemote,
      restore_local_median_s: restoreLocal,
      restore_remote_over_local: restoreRatio,
      peak_rss_bytes: { copy: copyRss, restore_remote: remoteRestoreRss, restore_local: localRestoreRss },
      incremental: { backup: incremental.backup, bytes_stored: incremental.bytesStored, bytes_sent: incremental.copy.bytesUp, requests: incremental.copy.requests, packs: incremental.copy.packsSent, only_new_objects: incremental.copy.onlyNewObjects },
      targets,
      rounds: { copy: copyRounds, restore: restoreRounds },
    };
    // The text first (stderr with --json, so stdout is the JSON alone); the JSON as one last line.
    (options.json ? process.stderr : process.stdout).write(text);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  });
}

if (process.argv[2] === UPLOAD_MODE) {
  uploadChild(process.argv.slice(3)).catch((error: unknown) => {
    process.stderr.write(`baseline upload failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  });
} else {
  main().catch((error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
