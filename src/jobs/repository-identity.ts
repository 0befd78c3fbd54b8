import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Catalog } from '../catalog/catalog.ts';
import type { Config } from '../config/load.ts';
import { StackbackError } from '../errors.ts';
import { readRepoInfo, Repository, type RepositoryKeyOptions } from '../repository/repository.ts';

/**
 * The catalog remembers which repository it indexes (its id, from repo.json). Every command
 * opens the repository through here, so a backup disk that is not mounted, or another
 * repository at the configured path, is refused by name instead of silently starting a new,
 * empty repository whose first backup would make the status look healthy again.
 */
const REPOSITORY_ID = 'repository_id';

export type RepositoryState =
  /** keyId: the key an encrypted repository needs (null: not encrypted). */
  | { state: 'ok'; id: string; keyId: string | null }
  /** No repository, and the catalog has never seen one: a fresh install. */
  | { state: 'none' }
  | { state: 'missing' | 'mismatch'; error: StackbackError };

function isEmptyFolder(folder: string): boolean {
  try {
    return readdirSync(folder).length === 0;
  } catch {
    return false;
  }
}

function hasSeenRepository(catalog: Catalog): boolean {
  return catalog.fact(REPOSITORY_ID) !== undefined || catalog.backupNames().length > 0;
}

/** Where the configured repository's key is, and whether a new repository is encrypted. */
export function keyOptions(config: Config): RepositoryKeyOptions {
  return { key: { keyFile: config.repository.keyFile, passphraseFile: config.repository.passphraseFile ?? undefined }, encrypt: config.repository.encryption === 'aes-256-gcm' };
}

/** Opens the configured repository without the catalog's identity check (catalog rebuild, which adopts it). */
export function openConfiguredRepository(config: Config): Promise<Repository> {
  return Repository.open(config.repository.path, keyOptions(config).key);
}

/** What is at repository.path, judged against what the catalog knows (reads only). */
export function repositoryState(config: Config, catalog: Catalog): RepositoryState {
  const root = config.repository.path;
  const known = catalog.fact(REPOSITORY_ID);
  if (!existsSync(path.join(root, 'repo.json'))) {
    if (!hasSeenRepository(catalog)) return { state: 'none' };
    const backups = catalog.backupNames().length;
    return {
      state: 'missing',
      error: new StackbackError(
        'REPO_MISSING',
        `repository ${root} not found (no repo.json) — is its disk mounted? The catalog indexes ${backups} backup(s)${known ? ` in repository ${known}` : ''}`,
        'mount the disk or fix repository.path; nothing was created. Only `stackback init` makes a new repository',
      ),
    };
  }
  const { id, encryption } = readRepoInfo(root);
  if (known !== undefined && known !== id) {
    return {
      state: 'mismatch',
      error: new StackbackError(
        'REPO_MISMATCH',
        `the repository at ${root} is ${id}, but the catalog ${config.catalog.path} indexes repository ${known} — is the right disk mounted?`,
        'mount the right disk or fix repository.path; if this repository replaces the old one for good, index it with `stackback catalog rebuild`',
      ),
    };
  }
  return { state: 'ok', id, keyId: encryption?.key_id ?? null };
}

/**
 * Opens the configured repository after checking it is the one the catalog indexes. With
 * `createFirst`, a fresh install (no repository, and a catalog that has never seen one) gets
 * its repository made; otherwise that is REPO_NOT_INITIALIZED.
 */
export async function openRepository(config: Config, catalog: Catalog, options: { createFirst: boolean } = { createFirst: false }): Promise<Repository> {
  const found = repositoryState(config, catalog);
  if (found.state === 'missing' || found.state === 'mismatch') throw found.error;
  if (found.state === 'none') {
    if (!options.createFirst) {
      throw new StackbackError('REPO_NOT_INITIALIZED', `no repository at ${config.repository.path} yet`, 'run `stackback init` (or a first backup), or fix repository.path');
    }
    // An empty folder where the repository should be is most likely a mount point whose disk is
    // missing (with the catalog on it too, so the catalog looks new): only init may fill it.
    if (isEmptyFolder(config.repository.path)) {
      throw new StackbackError(
        'REPO_MISSING',
        `repository ${config.repository.path} is an empty folder — is its disk mounted?`,
        'mount the disk; if this empty folder is meant for a new repository, run `stackback init`',
      );
    }
    return adopt(catalog, await Repository.create(config.repository.path, keyOptions(config)));
  }
  return adopt(catalog, await openConfiguredRepository(config));
}

/** Records `repo` as the repository the catalog indexes (first use, or a catalog from before ids were kept). */
export function adopt(catalog: Catalog, repo: Repository): Repository {
  if (catalog.fact(REPOSITORY_ID) !== repo.info.id) catalog.setFact(REPOSITORY_ID, repo.info.id);
  return repo;
}

/**
 * `stackback init`: makes the repository. When the catalog indexes another repository that
 * is gone, only `force` starts anew: the catalog then forgets those backups (its run history
 * stays).
 */
export async function initRepository(config: Config, catalog: Catalog, force: boolean): Promise<{ path: string; id: string; forgot_backups: number }> {
  const found = repositoryState(config, catalog);
  let forgot = 0;
  if (found.state === 'missing') {
    if (!force) {
      throw new StackbackError(found.error.code, found.error.message, `if that repository is lost for good, \`stackback init --force\` starts a new one: the catalog forgets its ${catalog.backupNames().length} backup(s), the run history stays`);
    }
    forgot = catalog.backupNames().length;
    catalog.clearIndex();
  }
  // An existing repository (the catalog's or another) is refused by create, REPO_EXISTS.
  const repo = adopt(catalog, await Repository.create(config.repository.path, keyOptions(config)));
  return { path: repo.location, id: repo.info.id, forgot_backups: forgot };
}
