import type { Lock } from '../repository/lock.ts';
import type { Repository } from '../repository/repository.ts';
import type { JobContext } from './context.ts';
import { syncCatalog } from './housekeeping.ts';
import { type OpenedRemote, openRemote, remoteBackupNames } from './remote-repository.ts';
import { openRepository, repositoryState } from './repository-identity.ts';

/**
 * Where verify and restore read a backup from: the local repository, or a remote (`--remote R`,
 * `--from R`) through the same Repository interface. The differences live here: locks (a
 * remote is read under the local repository's reader lock when there is one, so a prune —
 * which prunes remotes too — waits), which backups exist, and what is done about chunks
 * found damaged.
 */
export interface ReadTarget {
  repo: Repository;
  /** For messages: "the repository" or "remote NAME". */
  label: string;
  /** The remote's name, when reading one. */
  remote: string | undefined;
  /** Every backup the target holds. */
  backupNames(): Promise<string[]>;
  /** The backups of `chain` (to name who needs a damaged chunk). */
  backupsInChain(chain: string): Promise<string[]>;
  /**
   * Chunks found damaged or missing stop counting as stored: locally no backup dedups against
   * them again; on a remote, the next copy sends them again for `backups`.
   */
  forgetDamaged(chain: string, ids: string[], backups: string[]): void;
  release(): Promise<void>;
}

export async function openReadTarget(ctx: JobContext, command: string, remote: string | undefined): Promise<ReadTarget> {
  return remote === undefined ? openLocalTarget(ctx, command) : openRemoteTarget(ctx, command, remote);
}

async function openLocalTarget(ctx: JobContext, command: string): Promise<ReadTarget> {
  const repo = await openRepository(ctx.config, ctx.catalog);
  const lock = await repo.lockReader(command, ctx.config.lockTimeoutMs);
  try {
    await syncCatalog(repo, ctx.catalog, ctx.log);
  } catch (error) {
    await lock.release();
    throw error;
  }
  return {
    repo,
    label: 'the repository',
    remote: undefined,
    backupNames: () => repo.listManifestNames(),
    backupsInChain: async (chain) => ctx.catalog.backupNamesInChain(chain),
    forgetDamaged: (chain, ids) => ctx.catalog.forgetChunks(chain, ids),
    release: () => lock.release(),
  };
}

async function openRemoteTarget(ctx: JobContext, command: string, name: string): Promise<ReadTarget> {
  // On a machine that lost its repository (the reason to read a remote), there is nothing local to lock.
  let lock: Lock | undefined;
  let local: Repository | undefined;
  if (repositoryState(ctx.config, ctx.catalog).state === 'ok') {
    local = await openRepository(ctx.config, ctx.catalog);
    lock = await local.lockReader(`${command} (remote ${name})`, ctx.config.lockTimeoutMs);
  }
  let opened: OpenedRemote;
  try {
    // Beside a local repository, the remote must hold its copy (another server's is named as such).
    opened = await openRemote(ctx.config, ctx.catalog, name, local ? { local } : {});
  } catch (error) {
    await lock?.release();
    throw error;
  }
  const chains = new Map<string, string>();
  const names = async () => {
    const listed = await remoteBackupNames(opened, ctx.now());
    for (const backup of listed) if (!chains.has(backup)) chains.set(backup, (await opened.repo.readManifest(backup)).chain);
    return listed;
  };
  return {
    repo: opened.repo,
    label: `remote ${name}`,
    remote: name,
    backupNames: names,
    backupsInChain: async (chain) => (await names()).filter((backup) => chains.get(backup) === chain),
    forgetDamaged: (chain, ids, backups) => opened.known.forgetDamaged(chain, ids, backups),
    release: async () => {
      opened.close();
      await lock?.release();
    },
  };
}
