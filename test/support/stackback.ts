// Runs the real stackback CLI, as an operator would, against a config in a temp folder.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { Repository } from '../../src/repository/repository.ts';
import { manifestKey } from '../../src/repository/storage.ts';
import type { PgCluster } from './pg-cluster.ts';

export const PROJECT_ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(PROJECT_ROOT, 'src/cli/main.ts');
/** The bundle `npm run build` makes: what `npm ci` installs and the systemd unit runs. */
export const BUILT_CLI = join(PROJECT_ROOT, 'dist/stackback.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Sandbox {
  dir: string;
  configPath: string;
  repoPath: string;
  catalogPath: string;
  /** Runs `stackback ARGS --config <sandbox config>`. */
  run(args: string[], options?: { env?: Record<string, string>; input?: string }): Promise<CliResult>;
  /** Runs with --json and parses stdout. */
  json<T = unknown>(args: string[]): Promise<{ code: number; value: T; stderr: string }>;
  /** Manifest names in the repository (what actually exists on disk). */
  manifests(): Promise<string[]>;
  /** The manifest of backup `name` (its file name without .json) as stored, decrypted when the repository is encrypted; unchecked. */
  readManifest<T = unknown>(name: string): Promise<T>;
  /** Stores `manifest` as backup `name`'s manifest, sealed as the repository would: for tests that craft one. */
  writeManifest(name: string, manifest: unknown): Promise<void>;
  cleanup(): Promise<void>;
}

export interface PostgresSourceYaml {
  name?: string;
  databases?: string[] | 'all';
  globals?: boolean;
  extra?: string;
}

/** YAML for one postgres source on the cluster's Unix socket. */
export function postgresSourceYaml(cluster: PgCluster, source: PostgresSourceYaml = {}): string {
  const databases = source.databases === undefined || source.databases === 'all' ? 'all' : `[${source.databases.map((d) => JSON.stringify(d)).join(', ')}]`;
  return [
    `    - name: ${source.name ?? 'main'}`,
    `      host: ${cluster.socketDir}`,
    `      port: ${cluster.port}`,
    `      databases: ${databases}`,
    `      globals: ${source.globals ?? true}`,
    ...(source.extra ? [source.extra] : []),
  ].join('\n');
}

/** YAML for one qdrant source (mode api) at `url`. */
export function qdrantSourceYaml(url: string, source: { name?: string; collections?: string[] | 'all'; apiKeyFile?: string; extra?: string } = {}): string {
  const collections = source.collections === undefined || source.collections === 'all' ? 'all' : `[${source.collections.map((c) => JSON.stringify(c)).join(', ')}]`;
  return [
    `    - name: ${source.name ?? 'vectors'}`,
    `      url: ${url}`,
    `      collections: ${collections}`,
    ...(source.apiKeyFile ? [`      api_key_file: ${source.apiKeyFile}`] : []),
    ...(source.extra ? [source.extra] : []),
  ].join('\n');
}

/** YAML for one files source. */
export function filesSourceYaml(paths: string[], source: { name?: string; exclude?: string[] } = {}): string {
  return [`    - name: ${source.name ?? 'app-files'}`, `      paths: ${JSON.stringify(paths)}`, `      exclude: ${JSON.stringify(source.exclude ?? [])}`].join('\n');
}

/** A config in a temp folder with the given postgres entries (may be '') and, optionally, qdrant and files entries. */
export async function makeSandbox(
  postgresYaml: string,
  options: { qdrantYaml?: string; filesYaml?: string; extraYaml?: string; logLevel?: string; repoPath?: string; cli?: string; repository?: string } = {},
): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'stackback-test-'));
  const configPath = join(dir, 'stackback.yaml');
  const repoPath = options.repoPath ?? join(dir, 'repo');
  const catalogPath = join(dir, 'catalog.db');
  await writeFile(
    configPath,
    [`repository: { path: ${repoPath}, key_file: ${repoPath}.key${options.repository ? `, ${options.repository}` : ''} }`, `catalog: { path: ${catalogPath} }`, `work_dir: ${join(dir, 'tmp')}`, `log: { level: ${options.logLevel ?? 'warn'} }`, options.extraYaml ?? '', 'sources:', ...(postgresYaml ? ['  postgres:', postgresYaml] : []), ...(options.qdrantYaml ? ['  qdrant:', options.qdrantYaml] : []), ...(options.filesYaml ? ['  files:', options.filesYaml] : []), ''].join('\n'),
  );
  const cli = options.cli ?? CLI;
  const run = async (args: string[], options: { env?: Record<string, string>; input?: string } = {}): Promise<CliResult> => {
    const result = await execa(process.execPath, [cli, ...args, '--config', configPath], {
      reject: false,
      cwd: PROJECT_ROOT,
      env: options.env ?? {},
      input: options.input ?? '',
    });
    return { code: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  };
  return {
    dir,
    configPath,
    repoPath,
    catalogPath,
    run,
    async json<T>(args: string[]) {
      const result = await run([...args, '--json']);
      let value: T;
      try {
        value = JSON.parse(result.stdout) as T;
      } catch {
        throw new Error(`stackback ${args.join(' ')} --json printed no JSON (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
      }
      return { code: result.code, value, stderr: result.stderr };
    },
    async manifests() {
      const folder = join(repoPath, 'manifests');
      return existsSync(folder) ? (await readdir(folder)).filter((f) => f.endsWith('.json')) : [];
    },
    async readManifest<T>(name: string) {
      const repo = await Repository.open(repoPath, { keyFile: `${repoPath}.key`, passphraseFile: undefined });
      const key = manifestKey(name);
      return JSON.parse(repo.codec.unseal('manifest', key, await readFile(join(repoPath, key))).toString('utf8')) as T;
    },
    async writeManifest(name: string, manifest: unknown) {
      const repo = await Repository.open(repoPath, { keyFile: `${repoPath}.key`, passphraseFile: undefined });
      const key = manifestKey(name);
      await writeFile(join(repoPath, key), repo.codec.seal('manifest', key, Buffer.from(JSON.stringify(manifest))));
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
