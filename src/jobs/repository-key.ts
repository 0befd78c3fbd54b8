import { existsSync } from 'node:fs';
import type { Catalog } from '../catalog/catalog.ts';
import type { Config } from '../config/load.ts';
import { StackbackError } from '../errors.ts';
import { addPassphrase, type KeyFileContent, readKeyFile, removePassphrase, unlockContent, writeKeyFile } from '../repository/key-file.ts';
import { keyFromText, keyToText } from '../repository/key-text.ts';
import { checkKeyId, provenKeys, readRepoInfo, type RepoInfo } from '../repository/repository.ts';
import { keyOptions, openRepository } from './repository-identity.ts';

/**
 * `stackback key …`: the repository key, which exists nowhere but in key_file until the
 * operator keeps a copy. The catalog records which key was exported, so that status can warn
 * until then: losing the key loses every backup.
 */
const KEY_EXPORTED = 'key_exported';

/** The warning status carries while the key of the repository (key id `keyId`) has not been exported. */
export function keyExportWarning(catalog: Catalog, keyId: string): string | undefined {
  if (exportedKeyId(catalog) === keyId) return undefined;
  return 'the repository key exists only on this server: run `stackback key export` and keep it elsewhere (without it no backup can be read)';
}

function exportedKeyId(catalog: Catalog): string | undefined {
  const fact = catalog.fact(KEY_EXPORTED);
  if (fact === undefined) return undefined;
  try {
    return (JSON.parse(fact) as { key_id?: string }).key_id;
  } catch {
    return undefined;
  }
}

function recordExport(catalog: Catalog, keyId: string): void {
  catalog.setFact(KEY_EXPORTED, JSON.stringify({ key_id: keyId, at: new Date().toISOString() }));
}

function notEncrypted(config: Config): StackbackError {
  return new StackbackError('USAGE', `repository ${config.repository.path} is not encrypted (format 1): it has no key`, 'a new repository is encrypted when repository.encryption is aes-256-gcm (the default)');
}

/** The key as text to keep elsewhere; only after the key file is proven to open the repository. */
export async function exportKey(config: Config, catalog: Catalog): Promise<{ text: string; key_id: string; repository: string }> {
  const repo = await openRepository(config, catalog);
  if (!repo.info.encryption) throw notEncrypted(config);
  const content = readKeyFile(config.repository.keyFile);
  const text = keyToText(content, repo.info.id);
  recordExport(catalog, content.key_id);
  return { text, key_id: content.key_id, repository: repo.info.id };
}

/**
 * Writes key_file from exported text (disaster recovery on a new machine). Never replaces a
 * key file; when the repository is there, a key that is not its own is refused before
 * anything is written.
 */
export async function importKey(config: Config, catalog: Catalog, text: string): Promise<{ key_id: string; key_file: string; checked: boolean }> {
  const content = keyFromText(text);
  const { key } = keyOptions(config);
  const checked = checkAgainstRepository(config, content);
  if (existsSync(key.keyFile)) {
    const present = readKeyFile(key.keyFile);
    if (JSON.stringify(present) === JSON.stringify(content)) return { key_id: content.key_id, key_file: key.keyFile, checked };
    throw new StackbackError('KEY_EXISTS', `key file ${key.keyFile} already exists and holds another key (${present.key_id}): it is never overwritten`, 'move it away first if it is not this repository\'s key');
  }
  await writeKeyFile(key.keyFile, content, 'new');
  recordExport(catalog, content.key_id);
  return { key_id: content.key_id, key_file: key.keyFile, checked };
}

/** Whether `content` was proven to be the repository's key (false: no repository yet, or a passphrase is needed but not configured). */
function checkAgainstRepository(config: Config, content: KeyFileContent): boolean {
  let info: RepoInfo;
  try {
    info = readRepoInfo(config.repository.path);
  } catch {
    return false; // no repository here (yet): nothing to check against
  }
  if (!info.encryption) throw notEncrypted(config);
  const hint = 'import the key exported from this repository';
  const { key } = keyOptions(config);
  if (content.secret === undefined && key.passphraseFile === undefined) {
    // Wrapped under a passphrase the config does not name: only the key id can be compared.
    checkKeyId(info, config.repository.path, content.key_id, 'the imported key', hint);
    return false;
  }
  provenKeys(info, config.repository.path, unlockContent(content, key), 'the imported key', hint);
  return true;
}

export async function addKeyPassphrase(config: Config, catalog: Catalog, passphraseFile: string): Promise<{ wrapping: string; passphrases: number }> {
  await requireEncryptedRepository(config, catalog);
  const { id, count } = await addPassphrase(keyOptions(config).key, passphraseFile);
  return { wrapping: id, passphrases: count };
}

export async function removeKeyPassphrase(config: Config, catalog: Catalog, passphraseFile: string): Promise<{ wrapping: string; passphrases: number }> {
  await requireEncryptedRepository(config, catalog);
  const { id, count } = await removePassphrase(keyOptions(config).key, passphraseFile);
  return { wrapping: id, passphrases: count };
}

/** The key file must open the repository before its wrappings change. */
async function requireEncryptedRepository(config: Config, catalog: Catalog): Promise<void> {
  const repo = await openRepository(config, catalog);
  if (!repo.info.encryption) throw notEncrypted(config);
}
