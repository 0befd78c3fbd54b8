import type { Catalog } from '../catalog/catalog.ts';
import type { RemoteCatalog } from '../catalog/remotes.ts';
import type { Config, RemoteConfig } from '../config/load.ts';
import { isStackbackError, StackbackError } from '../errors.ts';
import { type RepoInfo, Repository } from '../repository/repository.ts';
import { REPO_INFO_KEY } from '../repository/storage.ts';
import { Bucket } from '../repository/storage/bucket.ts';
import { MemoryPackIndex, RemoteStorage } from '../repository/storage/remote.ts';
import { readS3Credentials } from '../repository/storage/s3-credentials.ts';
import { keyOptions } from './repository-identity.ts';

/**
 * Opening a remote: the configured bucket and prefix, checked to hold a copy of this
 * server's repository (same id), with the catalog's cache of its packs reset when it does not
 * belong to that repository any more.
 */
export interface OpenedRemote<Known extends RemoteCatalog | undefined = RemoteCatalog> {
  config: RemoteConfig;
  storage: RemoteStorage;
  repo: Repository;
  /** What the catalog knows of the remote (undefined when opened without a catalog: catalog restore). */
  known: Known;
  close(): void;
}

/** Reads only: extra connections beyond the upload concurrency serve reads and lists. */
const READ_CONNECTIONS = 4;

export function remoteConfig(config: Config, name: string): RemoteConfig {
  const remote = config.remotes.find((r) => r.name === name);
  if (!remote) {
    const names = config.remotes.map((r) => r.name);
    throw new StackbackError('REMOTE_NOT_FOUND', `no remote named ${JSON.stringify(name)} in ${config.file}`, names.length > 0 ? `configured remotes: ${names.join(', ')}` : 'add one under `remotes:` (see `stackback config schema`)');
  }
  return remote;
}

/** The remotes a command names (all configured ones when it names none). */
export function selectRemotes(config: Config, names: string[] | undefined): RemoteConfig[] {
  if (names && names.length > 0) return names.map((name) => remoteConfig(config, name));
  if (config.remotes.length === 0) throw new StackbackError('REMOTE_NOT_FOUND', `no remotes are configured in ${config.file}`, 'add one under `remotes:` (see `stackback config schema`)');
  return config.remotes;
}

export function openBucket(remote: RemoteConfig): Bucket {
  return new Bucket({
    remote: remote.name,
    endpoint: remote.endpoint,
    region: remote.region,
    bucket: remote.bucket,
    prefix: remote.prefix,
    forcePathStyle: remote.forcePathStyle,
    credentials: remote.credentialsFile === null ? null : readS3Credentials(remote.credentialsFile, remote.name),
    storageClass: remote.storageClass,
    bandwidthLimitBytes: remote.bandwidthLimitBytes,
    objectLock: remote.objectLock,
    retryForMs: remote.retryForMs,
    requestTimeoutMs: remote.requestTimeoutMs,
    maxSockets: remote.uploadConcurrency + READ_CONNECTIONS,
  });
}

const remoteIdFact = (name: string) => `remote.${name}.repository_id`;

/**
 * Opens remote `name`. With `local`, the remote must hold a copy of that repository (its id is
 * compared before any key is tried: another server's repository is REMOTE_MISMATCH, not a
 * wrong key), and with `initialize` (a copy) a remote that holds nothing yet gets the local
 * repo.json. Without `local` (a restore on a new machine), whatever repository is there is
 * opened with the configured key. Without a catalog (bringing the catalog back), what is learnt
 * of its packs is kept in memory.
 */
export async function openRemote(config: Config, catalog: Catalog, name: string, options?: { local?: Repository; initialize?: boolean }): Promise<OpenedRemote>;
export async function openRemote(config: Config, catalog: undefined, name: string): Promise<OpenedRemote<undefined>>;
export async function openRemote(config: Config, catalog: Catalog | undefined, name: string, options: { local?: Repository; initialize?: boolean } = {}): Promise<OpenedRemote<RemoteCatalog | undefined>> {
  const remote = remoteConfig(config, name);
  const bucket = openBucket(remote);
  const { local } = options;
  try {
    const known = catalog?.remote(remote.name);
    const storage = new RemoteStorage(bucket, known ?? new MemoryPackIndex());
    const sameRepository = (info: RepoInfo) => {
      if (local && info.id !== local.info.id) {
        throw new StackbackError('REMOTE_MISMATCH', `${storage.location} holds repository ${info.id}, not this server's repository ${local.info.id}`, 'give each server (each repository) its own remotes[].prefix; nothing was written');
      }
    };
    let repo: Repository;
    try {
      repo = await Repository.openRemote(storage, keyOptions(config).key, sameRepository);
    } catch (error) {
      if (!(local && options.initialize && isStackbackError(error) && error.code === 'REPO_NOT_INITIALIZED')) throw error;
      await storage.put(REPO_INFO_KEY, (await local.storage.get(REPO_INFO_KEY))!);
      repo = await Repository.openRemote(storage, keyOptions(config).key, sameRepository);
    }
    // The catalog's cache of this remote's packs belongs to the repository it was made for.
    if (catalog && catalog.fact(remoteIdFact(remote.name)) !== repo.info.id) {
      known!.forgetAll();
      catalog.setFact(remoteIdFact(remote.name), repo.info.id);
    }
    return { config: remote, storage, repo, known, close: () => bucket.close() };
  } catch (error) {
    bucket.close();
    throw error;
  }
}

/** The names of the backups on a remote, from its LIST of manifests; the catalog learns them. */
export async function remoteBackupNames(opened: OpenedRemote<RemoteCatalog | undefined>, now: Date): Promise<string[]> {
  const names = await opened.repo.listManifestNames();
  opened.known?.setBackups(names, now);
  return names;
}
