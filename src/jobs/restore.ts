import { type ErrorCode, errorMessage, isStackbackError, StackbackError } from '../errors.ts';
import { type ChunkProblem, checkStoredChunks, openArtifact } from '../repository/artifact-reader.ts';
import { type ArtifactManifest, type Manifest, validateBackupName } from '../repository/manifest.ts';
import type { Repository } from '../repository/repository.ts';
import type { Finding, RestoreOptions, RestorePlan } from '../sources/source.ts';
import { runBackup } from './backup.ts';
import { openReadTarget, type ReadTarget } from './read-target.ts';
import type { JobContext } from './context.ts';

export interface RestoreSelection extends RestoreOptions {
  /** Only this source; every source in the backup when absent. */
  source?: string | undefined;
  /** Read the backup from this remote instead of the local repository (`--from R`), streaming. */
  from?: string | undefined;
}

export interface PreparedRestore {
  manifest: Manifest;
  plans: RestorePlan[];
  /** Everything the preflight checked, per source; with `check`, errors are reported here instead of thrown. */
  findings: RestoreFinding[];
  /** Runs the plans in order; resolves with one result per restored artifact. */
  execute(): Promise<Record<string, unknown>[]>;
  /** Releases the repository read lock without restoring (declined confirmation). */
  abandon(): Promise<void>;
}

/** Overridable for measurements: STACKBACK_RESTORE_CHECK=content makes restores hash like deep verify. */
const RESTORE_READ_CHECK = process.env.STACKBACK_RESTORE_CHECK === 'content' ? 'content' : 'stored';

/**
 * The first half of a restore: read the manifest, check every chunk the restore needs for
 * damage, and run each source's preflight against its target. Nothing is written until
 * `execute()`, so the caller can show the plan and ask for confirmation in between.
 */
export interface RestoreFinding extends Finding {
  source: string;
  code?: string;
}

export async function prepareRestore(ctx: JobContext, name: string, selection: RestoreSelection, check = false): Promise<PreparedRestore> {
  validateBackupName(name);
  const target = await openReadTarget(ctx, `restore ${name}`, selection.from);
  const repo = target.repo;
  let damage: DamageCheck | undefined;
  try {
    const manifest = await repo.readManifest(name);
    // The catalog copy is restored by `stackback catalog restore`, not here.
    const restorable = manifest.artifacts.filter((a) => a.kind !== 'catalog');
    const sourceNames = [...new Set(restorable.map((a) => a.source))].filter((s) => selection.source === undefined || s === selection.source);
    if (sourceNames.length === 0) {
      throw new StackbackError('ARTIFACT_NOT_FOUND', `backup ${name} holds nothing of source "${selection.source}"`, `it holds: ${[...new Set(restorable.map((a) => a.source))].join(', ')}`);
    }
    const open = (artifact: Manifest['artifacts'][number]) => openArtifact(repo, manifest.chain, artifact, RESTORE_READ_CHECK);
    // From a remote, presence and sizes (one LIST per chain): hashing every byte first would
    // download the backup twice. Each byte is still authenticated as it streams into the restore.
    const damageCheck = new DamageCheck(repo, manifest.chain, target.remote === undefined);
    damage = damageCheck;
    const willRead = (artifacts: ArtifactManifest[]) => damageCheck.start(artifacts);
    const plans: RestorePlan[] = [];
    for (const sourceName of sourceNames) {
      const source = ctx.sources.find((s) => s.name === sourceName);
      if (!source) {
        throw new StackbackError('SOURCE_NOT_FOUND', `backup ${name} holds source "${sourceName}", which is not in the config`, 'add the source back to the config (its connection settings are needed to restore it)');
      }
      const artifacts = manifest.artifacts.filter((a) => a.source === sourceName);
      try {
        plans.push(await source.planRestore({ artifacts, options: selection, open, willRead, now: ctx.now(), workDir: ctx.config.workDir, signal: ctx.signal, reserveBytes: ctx.config.restore.reserveFreeBytes }));
      } catch (error) {
        // A plan that reads its artifact (a files restore lists the tar) meets damage before the
        // check reports it: the check's own words name every damaged chunk and what it affects.
        if (!isStackbackError(error) || !READ_DAMAGE.has(error.code)) throw error;
        refuseOnErrors(name, await damageCheck.findings(manifest, [{ artifacts }]));
        throw error;
      }
    }
    const findings: RestoreFinding[] = [...plans.flatMap((p) => p.findings.map((f) => ({ source: p.source, ...f }))), ...(await damageCheck.findings(manifest, plans))];
    if (!check) refuseOnErrors(name, findings);
    return {
      manifest,
      plans,
      findings,
      execute: () => executeRestore(ctx, manifest, plans, target),
      abandon: () => target.release(),
    };
  } catch (error) {
    // Checks still reading the repository are stopped before its lock is released.
    await damage?.cancel();
    await target.release();
    throw error;
  }
}

const READ_DAMAGE = new Set<ErrorCode>(['CHUNK_CORRUPT', 'CHUNK_MISSING', 'ARTIFACT_CORRUPT']);

/** Throws, naming every problem, when a finding is an error: nothing has been touched yet. */
function refuseOnErrors(name: string, findings: RestoreFinding[]): void {
  const errors = findings.filter((f) => f.level === 'error');
  if (errors.length === 0) return;
  throw new StackbackError(
    errors.some((e) => e.code === 'CHUNK_CORRUPT') ? 'CHUNK_CORRUPT' : 'RESTORE_FAILED',
    `cannot restore ${name}; nothing was touched:\n  ${errors.map((e) => `${e.source}: ${e.message}${e.hint ? ` (${e.hint})` : ''}`).join('\n  ')}`,
  );
}

/**
 * Every chunk the restore needs, checked against its stored sha256 before any target is
 * touched; started per batch of artifacts as soon as a plan announces them.
 */
class DamageCheck {
  private readonly checks = new Map<string, Promise<ChunkProblem[]>>();
  private readonly stop = new AbortController();
  private readonly repo: Repository;
  private readonly chain: string;
  private readonly hash: boolean;

  constructor(repo: Repository, chain: string, hash: boolean) {
    this.repo = repo;
    this.chain = chain;
    this.hash = hash;
  }

  start(artifacts: ArtifactManifest[]): void {
    const fresh = artifacts.filter((a) => !this.checks.has(a.id));
    if (fresh.length === 0) return;
    const running = checkStoredChunks(this.repo, this.chain, fresh.flatMap((a) => a.chunks), { hash: this.hash, signal: this.stop.signal });
    running.catch(() => undefined); // awaited in findings() or cancel()
    for (const artifact of fresh) this.checks.set(artifact.id, running);
  }

  /** The restore is not going ahead: stop the checks and wait until their threads are gone. */
  async cancel(): Promise<void> {
    this.stop.abort(new Error('restore abandoned'));
    await Promise.allSettled(this.checks.values());
  }

  async findings(manifest: Manifest, plans: Pick<RestorePlan, 'artifacts'>[]): Promise<RestoreFinding[]> {
    const artifacts = plans.flatMap((p) => p.artifacts);
    this.start(artifacts);
    // Artifacts checked together share one promise: each batch's problems count once, and a chunk found in two batches once.
    const batches = await Promise.all([...new Set(artifacts.map((a) => this.checks.get(a.id)!))]);
    const problems = [...new Map(batches.flat().map((p) => [p.chunk, p])).values()];
    return damageFindings(manifest, artifacts, problems, this.hash);
  }
}

function damageFindings(manifest: Manifest, artifacts: ArtifactManifest[], problems: ChunkProblem[], hashed: boolean): RestoreFinding[] {
  if (problems.length === 0) {
    const verdict = hashed ? 'present and intact' : 'present with their recorded sizes (each is authenticated as it is read)';
    return [{ source: 'repository', level: 'ok', message: `all chunks of ${artifacts.map((a) => a.id).join(', ')} are ${verdict}` }];
  }
  const bad = new Set(problems.map((p) => p.chunk));
  const affected = artifacts.filter((a) => a.chunks.some((c) => bad.has(c.id))).map((a) => a.id);
  return [
    {
      source: 'repository',
      level: 'error',
      code: 'CHUNK_CORRUPT',
      message: `backup ${manifest.name} cannot be restored: ${problems.length} chunk(s) missing or damaged (${problems.slice(0, 3).map((p) => `${p.chunk.slice(0, 12)}… ${p.problem}`).join(', ')}), affecting ${affected.join(', ')}`,
      hint: 'restore an older backup; `stackback verify --all --deep` shows every damaged backup',
    },
  ];
}

async function executeRestore(ctx: JobContext, manifest: Manifest, plans: RestorePlan[], target: ReadTarget): Promise<Record<string, unknown>[]> {
  let runId: number;
  try {
    runId = ctx.catalog.startRun('restore', { backup: manifest.name, ...(target.remote ? { from: target.remote } : {}), steps: plans.flatMap((p) => p.steps) });
  } catch (error) {
    await target.release();
    throw error;
  }
  try {
    const results: Record<string, unknown>[] = [];
    for (const plan of plans) {
      if (plan.safetyBackup.length > 0) {
        const safety = await runBackup(ctx, { kind: 'full', sources: [plan.source], artifacts: plan.safetyBackup, label: 'prerestore' });
        // Replacing data whose safety copy is incomplete would lose it for good: stop here instead.
        const saved = new Set(safety.manifest.artifacts.map((a) => a.id));
        const unsaved = plan.safetyBackup.filter((id) => !saved.has(id));
        if (safety.manifest.status !== 'ok' || unsaved.length > 0) {
          throw new StackbackError('RESTORE_FAILED', `the safety copy ${safety.manifest.name} of what this restore replaces is incomplete (${unsaved.join(', ') || safety.manifest.status}); nothing was replaced`, 'fix the source (see `stackback show` of that backup), or restore with --no-safety');
        }
        ctx.log.info({ backup: safety.manifest.name }, `stored what the restore replaces as backup ${safety.manifest.name}`);
        results.push({ safety_backup: safety.manifest.name, artifacts: plan.safetyBackup });
      }
      ctx.log.info({ source: plan.source }, `restoring ${plan.source}: ${plan.steps.join('; ')}`);
      const done = await plan.execute();
      for (const result of done) ctx.log.info({ source: plan.source, ...result }, `restored ${plan.source} from ${manifest.name}`);
      results.push(...done);
    }
    ctx.catalog.finishRun(runId, { status: 'ok', backup: manifest.name, detail: { results } });
    return results;
  } catch (error) {
    ctx.catalog.finishRun(runId, { status: 'failed', backup: manifest.name, error: errorMessage(error) });
    throw error;
  } finally {
    await target.release();
  }
}
