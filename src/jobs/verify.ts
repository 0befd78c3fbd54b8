import { StackbackError, errorMessage } from '../errors.ts';
import { readArtifact } from '../repository/artifact-reader.ts';
import { type ArtifactManifest, type Manifest, validateBackupName } from '../repository/manifest.ts';
import { Repository } from '../repository/repository.ts';
import type { JobContext } from './context.ts';

export interface ArtifactVerdict {
  artifact: string;
  ok: boolean;
  detail: string;
}

export interface BackupVerdict {
  backup: string;
  ok: boolean;
  artifacts: ArtifactVerdict[];
}

/** Drains an artifact, which checks every chunk and the whole artifact's sha256. */
async function drain(data: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const _ of data);
}

async function verifyArtifact(ctx: JobContext, repo: Repository, manifest: Manifest, artifact: ArtifactManifest): Promise<ArtifactVerdict> {
  const data = readArtifact(repo, manifest.chain, artifact);
  const source = ctx.sources.find((s) => s.name === artifact.source);
  try {
    if (!source) {
      await drain(data);
      return { artifact: artifact.id, ok: true, detail: 'chunks and sha256 intact (source no longer configured: its tool check was skipped)' };
    }
    const check = await source.checkArtifact(artifact, data, ctx.signal);
    return { artifact: artifact.id, ok: check.ok, detail: check.ok ? `chunks and sha256 intact; ${check.detail}` : check.detail };
  } catch (error) {
    return { artifact: artifact.id, ok: false, detail: errorMessage(error) };
  }
}

/**
 * Reads back every artifact of the named backups: each chunk re-hashed against its id,
 * each artifact against its sha256, and each read by its source's own tool
 * (pg_restore --list). Records a run with the verdicts.
 */
export async function runVerify(ctx: JobContext, names: string[] | 'all'): Promise<BackupVerdict[]> {
  if (names !== 'all') names.forEach(validateBackupName);
  const repo = await Repository.open(ctx.config.repository.path, { create: false });
  const lock = await repo.lockReader('verify');
  const runId = ctx.catalog.startRun('verify', { backups: names });
  try {
    const backups = names === 'all' ? await repo.listManifestNames() : names;
    const verdicts: BackupVerdict[] = [];
    for (const name of backups) {
      const manifest = await repo.readManifest(name);
      const artifacts: ArtifactVerdict[] = [];
      for (const artifact of manifest.artifacts) {
        const verdict = await verifyArtifact(ctx, repo, manifest, artifact);
        (verdict.ok ? ctx.log.info : ctx.log.error).call(ctx.log, { backup: name, ...verdict }, `${name} ${artifact.id}: ${verdict.ok ? 'ok' : 'FAILED'} (${verdict.detail})`);
        artifacts.push(verdict);
      }
      verdicts.push({ backup: name, ok: artifacts.every((a) => a.ok), artifacts });
    }
    const failed = verdicts.filter((v) => !v.ok).map((v) => v.backup);
    ctx.catalog.finishRun(runId, { status: failed.length ? 'failed' : 'ok', detail: { verdicts }, ...(failed.length ? { error: `damaged: ${failed.join(', ')}` } : {}) });
    return verdicts;
  } catch (error) {
    ctx.catalog.finishRun(runId, { status: 'failed', error: errorMessage(error) });
    throw error;
  } finally {
    await lock.release();
  }
}

export function assertVerified(verdicts: BackupVerdict[]): void {
  const failed = verdicts.filter((v) => !v.ok);
  if (failed.length === 0) return;
  const lines = failed.flatMap((v) => v.artifacts.filter((a) => !a.ok).map((a) => `${v.backup} ${a.artifact}: ${a.detail}`));
  throw new StackbackError('VERIFY_FAILED', `verification failed:\n  ${lines.join('\n  ')}`);
}
