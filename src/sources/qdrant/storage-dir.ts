import { existsSync } from 'node:fs';
import { mkdir, rename, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { create as createTar, extract as extractTar } from 'tar';
import type { QdrantSourceConfig } from '../../config/load.ts';
import { StackbackError, errorMessage } from '../../errors.ts';
import type { ArtifactManifest } from '../../repository/manifest.ts';
import { runHook } from '../shell-command.ts';
import type { ArtifactCheck, ArtifactDump, DrillRequest, DrillVerdict, PlannedArtifact, RestorePlan, RestoreRequest, Source } from '../source.ts';
import { restoreStamp } from '../stamp.ts';
import { listTar } from '../tar-listing.ts';
import { dumpOfStream } from '../artifact-dump.ts';

/**
 * Qdrant's seed alternative (mode storage_dir): a tar of the storage folder of a stopped
 * Qdrant. `pre_command` stops it, `post_command` starts it again, and runs whatever
 * happened in between.
 */
export class QdrantStorageSource implements Source {
  readonly kind = 'qdrant';
  readonly name: string;
  readonly config: QdrantSourceConfig;
  private readonly storagePath: string;

  constructor(config: QdrantSourceConfig) {
    this.name = config.name;
    this.config = config;
    this.storagePath = config.storagePath!;
  }

  describe(): string {
    return `qdrant source ${this.name} (storage folder ${this.storagePath})`;
  }

  async check(): Promise<Record<string, unknown>> {
    const info = await stat(this.storagePath).catch(() => undefined);
    if (!info?.isDirectory()) throw new StackbackError('SOURCE_NOT_FOUND', `storage_path ${this.storagePath} of ${this.describe()} is not a folder`);
    return { storage_path: this.storagePath };
  }

  async plan(): Promise<PlannedArtifact[]> {
    await this.check();
    return [{ id: `${this.name}/storage`, kind: 'qdrant_storage', target: this.storagePath, estimatedBytes: 0 }];
  }

  /** post_command is not cancelled with the job (Qdrant must not stay stopped), only bounded by hook_timeout. */
  private runPostCommand(): Promise<void> {
    return this.config.postCommand ? runHook(this.config.postCommand, 'post_command', { timeoutMs: this.config.hookTimeoutMs }) : Promise.resolve();
  }

  async dump(_artifact: PlannedArtifact, signal?: AbortSignal): Promise<ArtifactDump> {
    const { preCommand, hookTimeoutMs } = this.config;
    if (preCommand) {
      try {
        await runHook(preCommand, 'pre_command', { timeoutMs: hookTimeoutMs, signal });
      } catch (error) {
        await this.runPostCommand().catch(() => undefined);
        throw error;
      }
    }
    const runPostCommand = () => this.runPostCommand();
    const storagePath = this.storagePath;
    async function* archive(): AsyncGenerator<Uint8Array> {
      let failure: unknown;
      try {
        // Owners, modes and mtimes are kept: Qdrant must find its files as it left them.
        yield* createTar({ cwd: storagePath, portable: false, preservePaths: false }, ['.']) as AsyncIterable<Uint8Array>;
      } catch (error) {
        failure = error;
      } finally {
        // The hook runs however the archive ended, so Qdrant is never left stopped.
        await runPostCommand().catch((error: unknown) => (failure ??= error));
      }
      if (failure) throw failure;
    }
    return dumpOfStream(archive(), () => ({ storage_path: storagePath }));
  }

  async checkArtifact(_artifact: ArtifactManifest, data: AsyncIterable<Uint8Array>): Promise<ArtifactCheck> {
    const entries = await listTar(data);
    return { ok: entries.length > 0, detail: `storage tar reads (${entries.length} entries)` };
  }

  async planRestore(request: RestoreRequest): Promise<RestorePlan> {
    const artifact = request.artifacts.find((a) => a.kind === 'qdrant_storage');
    if (!artifact) throw new StackbackError('ARTIFACT_NOT_FOUND', `the backup holds no storage folder of source ${this.name}`);
    const aside = `${this.storagePath}.pre-restore-${restoreStamp(request.now)}`;
    if (existsSync(aside)) throw new StackbackError('USAGE', `${aside} exists already; move it away first`);
    const exists = existsSync(this.storagePath);
    return {
      source: this.name,
      artifacts: [artifact],
      replacesData: exists,
      safetyBackup: [],
      findings: [{ level: 'ok', message: exists ? `${this.storagePath} will be moved aside to ${aside}` : `${this.storagePath} does not exist: it will be created` }],
      steps: [`${exists ? `move ${this.storagePath} aside to ${aside}, then ` : ''}unpack the storage folder into ${this.storagePath}${this.config.preCommand ? ' (pre_command and post_command around it)' : ''}`],
      execute: async () => {
        const { preCommand, hookTimeoutMs } = this.config;
        try {
          if (preCommand) await runHook(preCommand, 'pre_command', { timeoutMs: hookTimeoutMs, signal: request.signal });
          if (exists) await rename(this.storagePath, aside);
          await mkdir(this.storagePath, { recursive: true, mode: 0o750 });
          await pipeline(Readable.from(request.open(artifact)), extractTar({ cwd: this.storagePath, strict: true, preservePaths: false }));
        } catch (error) {
          throw new StackbackError('RESTORE_FAILED', `restore of ${this.storagePath} failed: ${errorMessage(error)}${exists ? `; the previous folder is at ${aside}` : ''}`);
        } finally {
          await this.runPostCommand();
        }
        return [{ artifact: artifact.id, restored_as: this.storagePath, previous_moved_to: exists ? aside : null }];
      },
    };
  }

  /** The storage folder cannot be loaded without stopping Qdrant: the drill proves the archive reads whole. */
  async drill(artifact: ArtifactManifest, request: DrillRequest): Promise<DrillVerdict> {
    const check = await this.checkArtifact(artifact, request.open());
    return { ok: check.ok, detail: `${check.detail} (a storage folder is not loaded into a live Qdrant by a drill)`, differences: check.ok ? [] : [check.detail] };
  }
}
