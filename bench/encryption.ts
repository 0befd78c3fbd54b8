// Encryption at rest against a plain repository: the same full backup and restore of the
// realistic pgbench database, into an encrypted (format 2) and a plain (format 1) repository,
// side by side in every round, the order alternating between rounds.
//
//   npm run bench:encryption -- [scale] [--runs N] [--json]      (scale 50, 4 runs by default)
//
// Targets (issue "Repository v2"): encrypted / plain ≤ 1.10 for backup and restore wall time,
// ≤ 1.01 for stored bytes; peak RSS of either ≤ 250 MiB.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DB, MIB, formatTable, largest, median, megabytes, run, runBenchmark, seconds, settle, stackback, treeBytes, verdict, writeConfig, type Bench } from './support.ts';

const KINDS = ['encrypted', 'plain'] as const;
type Kind = (typeof KINDS)[number];

interface Side {
  backupSeconds: number;
  backupRss: number | null;
  bytes: number;
  restoreSeconds: number;
  restoreRss: number | null;
}

type Sample = Record<Kind, Side>;

async function backupAndRestore(bench: Bench, dir: string, kind: Kind): Promise<Side> {
  const { config, repository } = await writeConfig(bench, dir, DB, {
    repository: { path: join(dir, 'repo'), key_file: join(dir, 'repo.key'), encryption: kind === 'encrypted' ? 'aes-256-gcm' : 'none' },
  });
  await settle(bench);
  const backup = await run(bench, stackback(`backup --full (${kind})`, ['backup', '--full', '--config', config], true));
  const name = backup.stdout.trim().split('\n').pop() ?? '';
  const bytes = (await treeBytes(join(repository, 'chains'))) + (await treeBytes(join(repository, 'manifests')));
  await settle(bench);
  const target = `${DB}_${kind}`;
  try {
    const restore = await run(bench, stackback(`restore (${kind})`, ['restore', name, '--target-db', target, '--yes', '--config', config], true));
    return { backupSeconds: backup.seconds, backupRss: backup.peakRss, bytes, restoreSeconds: restore.seconds, restoreRss: restore.peakRss };
  } finally {
    await bench.cluster.psql('postgres', `DROP DATABASE IF EXISTS ${target}`);
  }
}

async function runOnce(bench: Bench, index: number): Promise<Sample> {
  const order = index % 2 === 1 ? KINDS : ([...KINDS].reverse() as Kind[]);
  const sample = {} as Sample;
  for (const kind of order) {
    const dir = join(bench.scratch, `run-${index}-${kind}`);
    await mkdir(dir);
    try {
      process.stderr.write(`[run ${index}/${bench.options.runs}] ${kind}\n`);
      sample[kind] = await backupAndRestore(bench, dir, kind);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return sample;
}

runBenchmark(4, runOnce, (options, databaseBytes, samples) => {
  const ratios = (get: (side: Side) => number) => samples.map((s) => get(s.encrypted) / get(s.plain));
  const rss = (get: (side: Side) => number | null) => (samples.some((s) => get(s.encrypted) === null) ? null : largest(samples.map((s) => get(s.encrypted)!)) / MIB);
  const targets = [
    { what: 'backup wall: encrypted / plain (median of per-run ratios)', value: median(ratios((s) => s.backupSeconds)), limit: 1.1 },
    { what: 'restore wall: encrypted / plain (median of per-run ratios)', value: median(ratios((s) => s.restoreSeconds)), limit: 1.1 },
    { what: 'stored bytes: encrypted / plain', value: median(ratios((s) => s.bytes)), limit: 1.01 },
    { what: 'peak RSS MiB: encrypted backup', value: rss((s) => s.backupRss), limit: 250 },
    { what: 'peak RSS MiB: encrypted restore', value: rss((s) => s.restoreRss), limit: 250 },
  ].map((t) => ({ ...t, verdict: verdict(t.value, t.limit) }));
  const lines = samples.map(
    (s, i) =>
      `run ${i + 1}: backup ${seconds(s.encrypted.backupSeconds)} s vs ${seconds(s.plain.backupSeconds)} s, ` +
      `restore ${seconds(s.encrypted.restoreSeconds)} s vs ${seconds(s.plain.restoreSeconds)} s, stored ${megabytes(s.encrypted.bytes)} vs ${megabytes(s.plain.bytes)} MiB (encrypted vs plain)`,
  );
  const text = [
    `encryption bench: scale ${options.scale}, database ${megabytes(databaseBytes)} MiB, ${options.runs} round(s)`,
    '',
    ...lines,
    '',
    formatTable([['target', 'value', 'limit', ''], ...targets.map((t) => [t.what, t.value === null ? '-' : t.value.toFixed(3), `≤ ${t.limit}`, t.verdict])]),
    '',
  ].join('\n');
  return { text, summary: { targets } };
});
