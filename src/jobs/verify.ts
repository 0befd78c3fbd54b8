import { errorMessage } from '../errors.ts';
import { type ChunkProblem, checkStoredChunks, openArtifact, readArtifact } from '../repository/artifact-reader.ts';
import { type ArtifactManifest, type Manifest, validateBackupName } from '../repository/manifest.ts';
import type { Repository } from '../repository/repository.ts';
import type { JobContext } from './context.ts';
import { openReadTarget, type ReadTarget } from './read-target.ts';

/**
 * quick: the manifest reads, and every chunk object is present with its recorded size.
 * deep:  also every chunk's stored bytes against their sha256, then every artifact read back
 *        (each chunk decompressed and re-hashed, the whole artifact's sha256 compared) and
 *        read by its source's own tool (pg_restore --list).
 * drill: every artifact restored into a scratch target (a database, a collection, a
 *        folder) and compared with what the manifest recorded; the scratch target is
 *        removed afterwards, also on failure.
 */
export type VerifyLevel = 'quick' | 'deep' | 'drill';

export interface ArtifactVerdict {
  artifact: string;
  ok: boolean;
  detail: string;
  seconds?: number;
  differences?: string[];
}

export interface BackupVerdict {
  backup: string;
  ok: boolean;
  artifacts: ArtifactVerdict[];
}

export interface DamagedChunk extends ChunkProblem {
  chain: string;
  /** Every backup of the chain that needs the chunk, with the artifacts that contain it. */
  used_by: { backup: string; artifacts: string[] }[];
}

export interface VerifyReport {
  level: VerifyLevel;
  ok: boolean;
  backups: BackupVerdict[];
  damaged_chunks: DamagedChunk[];
}

async function drain(data: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const _ of data);
}

async function readBack(ctx: JobContext, repo: Repository, manifest: Manifest, artifact: ArtifactManifest): Promise<ArtifactVerdict> {
  const data = readArtifact(repo, manifest.chain, artifact, 'content');
  const source = ctx.sources.find((s) => s.name === artifact.source);
  try {
    if (artifact.kind === 'catalog') {
      let head: Buffer | undefined;
      for await (const chunk of data) head ??= Buffer.from(chunk.subarray(0, 16));
      const ok = head?.toString('latin1') === 'SQLite format 3\0';
      return { artifact: artifact.id, ok, detail: ok ? 'every chunk and the artifact sha256 intact; an SQLite database' : 'not an SQLite database' };
    }
    if (!source) {
      await drain(data);
      return { artifact: artifact.id, ok: true, detail: 'every chunk and the artifact sha256 intact (source no longer configured: its tool check was skipped)' };
    }
    const check = await source.checkArtifact(artifact, data, ctx.signal);
    return { artifact: artifact.id, ok: check.ok, detail: check.ok ? `every chunk and the artifact sha256 intact; ${check.detail}` : check.detail };
  } catch (error) {
    return { artifact: artifact.id, ok: false, detail: errorMessage(error) };
  }
}

async function drill(ctx: JobContext, repo: Repository, manifest: Manifest, artifact: ArtifactManifest): Promise<ArtifactVerdict> {
  const started = Date.now();
  const seconds = () => (Date.now() - started) / 1000;
  if (artifact.kind === 'catalog') return { ...(await readBack(ctx, repo, manifest, artifact)), seconds: seconds() };
  const source = ctx.sources.find((s) => s.name === artifact.source);
  if (!source) return { artifact: artifact.id, ok: false, detail: `source ${artifact.source} is not configured: nowhere to drill its restore`, seconds: seconds() };
  try {
    ctx.progress?.({ phase: 'drilling', source: source.name, artifact: artifact.id });
    const prefix = source.kind === 'qdrant' ? ctx.config.drill.qdrantCollectionPrefix : ctx.config.drill.postgresDatabasePrefix;
    const verdict = await source.drill(artifact, {
      open: () => openArtifact(repo, manifest.chain, artifact, 'content'),
      now: ctx.now(),
      signal: ctx.signal,
      scratchPrefix: prefix,
      workDir: ctx.config.workDir,
      reserveBytes: ctx.config.restore.reserveFreeBytes,
      postgresServer: ctx.config.drill.postgresServer,
    });
    const detail = verdict.differences.length ? `${verdict.detail}; DIFFERENCES: ${verdict.differences.join('; ')}` : verdict.detail;
    return { artifact: artifact.id, ok: verdict.ok, detail, differences: verdict.differences, seconds: seconds() };
  } catch (error) {
    return { artifact: artifact.id, ok: false, detail: errorMessage(error), differences: [errorMessage(error)], seconds: seconds() };
  }
}

/** Who uses each damaged chunk: every backup of its chain, not only the ones being verified. */
async function usersOf(target: ReadTarget, chain: string, problems: ChunkProblem[]): Promise<DamagedChunk[]> {
  const damaged = problems.map((p) => ({ ...p, chain, used_by: [] as DamagedChunk['used_by'] }));
  if (damaged.length === 0) return damaged;
  const byId = new Map(damaged.map((d) => [d.chunk, d]));
  for (const name of await target.backupsInChain(chain)) {
    const manifest = await target.repo.readManifest(name);
    const hits = new Map<string, string[]>();
    for (const artifact of manifest.artifacts) {
      for (const chunk of new Set(artifact.chunks.map((c) => c.id))) {
        if (byId.has(chunk)) hits.set(chunk, [...(hits.get(chunk) ?? []), artifact.id]);
      }
    }
    for (const [chunk, artifacts] of hits) byId.get(chunk)!.used_by.push({ backup: name, artifacts });
  }
  return damaged;
}

/**
 * Verifies backups of the local repository, or with `remote` the copies on that remote (a
 * quick verify of a remote is one LIST per chain: every pack present with its size).
 */
export async function runVerify(ctx: JobContext, names: string[] | 'all', level: VerifyLevel, remote?: string): Promise<VerifyReport> {
  if (names !== 'all') names.forEach(validateBackupName);
  const target = await openReadTarget(ctx, `verify --${level}`, remote);
  let runId: number;
  try {
    runId = ctx.catalog.startRun('verify', { backups: names, level, ...(remote ? { remote } : {}) });
  } catch (error) {
    await target.release();
    throw error;
  }
  try {
    const manifests: Manifest[] = [];
    for (const name of names === 'all' ? await target.backupNames() : names) manifests.push(await target.repo.readManifest(name));
    const repo = target.repo;

    const damaged: DamagedChunk[] = [];
    for (const chain of new Set(manifests.map((m) => m.chain))) {
      const chunks = manifests.filter((m) => m.chain === chain).flatMap((m) => m.artifacts.flatMap((a) => a.chunks));
      const problems = await checkStoredChunks(repo, chain, chunks, { hash: level !== 'quick' });
      const users = await usersOf(target, chain, problems);
      if (problems.length > 0) {
        target.forgetDamaged(chain, problems.map((p) => p.chunk), [...new Set(users.flatMap((u) => u.used_by.map((b) => b.backup)))]);
        ctx.log.warn({ chain, chunks: problems.length, remote }, remote
          ? `${problems.length} chunk(s) of chain ${chain} are damaged or missing on remote ${remote}: the next \`stackback copy --remote ${remote}\` sends them again from the local repository (where it still has them)`
          : `${problems.length} damaged chunk(s) of chain ${chain} left the chunk index: the next backup of that chain stores their content anew`);
      }
      damaged.push(...users);
    }
    const bad = new Map(damaged.map((d) => [`${d.chain}/${d.chunk}`, d]));

    const backups: BackupVerdict[] = [];
    for (const manifest of manifests) {
      const artifacts: ArtifactVerdict[] = [];
      for (const artifact of manifest.artifacts) {
        const hit = artifact.chunks.map((c) => bad.get(`${manifest.chain}/${c.id}`)).filter((d) => d !== undefined);
        let verdict: ArtifactVerdict;
        if (hit.length > 0) {
          const unique = [...new Map(hit.map((d) => [d.chunk, d])).values()];
          verdict = { artifact: artifact.id, ok: false, detail: unique.map((d) => `chunk ${d.chunk.slice(0, 16)}… ${d.problem} (${d.detail})`).join('; ') };
        } else if (level === 'drill') {
          verdict = await drill(ctx, repo, manifest, artifact);
        } else if (level === 'deep') {
          verdict = await readBack(ctx, repo, manifest, artifact);
        } else {
          verdict = { artifact: artifact.id, ok: true, detail: `all ${artifact.chunks.length} chunk(s) present with their recorded size` };
        }
        const line = `${manifest.name} ${artifact.id}: ${verdict.ok ? 'ok' : 'FAILED'} (${verdict.detail})`;
        if (verdict.ok) ctx.log.info({ backup: manifest.name, ...verdict }, line);
        else ctx.log.error({ backup: manifest.name, ...verdict }, line);
        artifacts.push(verdict);
      }
      const verdict = { backup: manifest.name, ok: artifacts.every((a) => a.ok), artifacts };
      backups.push(verdict);
      // The catalog's verdicts are the local copies' (list, show, status); a remote's stay in its run's record.
      if (!remote) ctx.catalog.recordVerification(manifest.name, level, verdict.ok, { artifacts });
    }
    const report: VerifyReport = { level, ok: backups.every((b) => b.ok), backups, damaged_chunks: damaged };
    const failed = backups.filter((b) => !b.ok).map((b) => b.backup);
    ctx.catalog.finishRun(runId, { status: report.ok ? 'ok' : 'failed', detail: { level, ...(remote ? { remote } : {}), backups: backups.length, failed, damaged_chunks: damaged.length }, ...(failed.length ? { error: `damaged${remote ? ` on remote ${remote}` : ''}: ${failed.join(', ')}` } : {}) });
    return report;
  } catch (error) {
    ctx.catalog.finishRun(runId, { status: 'failed', error: errorMessage(error) });
    throw error;
  } finally {
    await target.release();
  }
}
