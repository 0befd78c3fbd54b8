import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import convict from 'convict';
import YAML from 'yaml';
import { StackbackError } from '../errors.ts';
import { parseDuration, parseSize, registerFormats } from './formats.ts';
import { POSTGRES_SOURCE_SCHEMA, SCHEMA } from './schema.ts';

export const DEFAULT_CONFIG_PATH = '/etc/stackback/stackback.yaml';

export interface PostgresSourceConfig {
  kind: 'postgres';
  name: string;
  host: string;
  port: number;
  user: string;
  passwordFile: string | null;
  databases: 'all' | string[];
  globals: boolean;
  binDir: string | null;
  maintenanceDb: string;
  exactCountMaxBytes: number;
}

export type SourceConfig = PostgresSourceConfig;

export interface Config {
  file: string;
  repository: { path: string; compressionLevel: number };
  catalog: { path: string };
  workDir: string;
  lockTimeoutMs: number;
  stallTimeoutMs: number;
  log: { level: string };
  sources: SourceConfig[];
}

/** A config that failed validation; `problems` holds one "key.path: what is wrong" line each. */
export class ConfigInvalidError extends StackbackError {
  readonly problems: string[];
  constructor(file: string, problems: string[]) {
    super('CONFIG_INVALID', `invalid config ${file}:\n  ${problems.join('\n  ')}`, 'fix the keys named above; `stackback config check` re-validates');
    this.problems = problems;
  }
}

/** --config FILE, else $STACKBACK_CONFIG, else /etc/stackback/stackback.yaml. */
export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(flag ?? env.STACKBACK_CONFIG ?? DEFAULT_CONFIG_PATH);
}

let formatsRegistered = false;

function newValidator(schema: object) {
  if (!formatsRegistered) {
    registerFormats();
    formatsRegistered = true;
  }
  // env and argv are not config sources: one file is the whole truth.
  return convict(schema as convict.Schema<unknown>, { env: {}, args: [] });
}

/**
 * Turns convict's "key: message: value was X" lines into "prefix.key: message, got X".
 */
function convictProblems(error: unknown, prefix: string): string[] {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n').filter(Boolean).map((line) => {
    const undeclared = /^configuration param '(.+)' not declared in the schema$/.exec(line);
    if (undeclared) return `${prefix}${undeclared[1]}: unknown key`;
    const separator = line.indexOf(': ');
    if (separator < 0) return `${prefix}${line}`;
    const key = line.slice(0, separator);
    let message = line.slice(separator + 2);
    const valueAt = message.lastIndexOf(': value was ');
    if (valueAt >= 0) message = `${message.slice(0, valueAt)}, got ${message.slice(valueAt + ': value was '.length)}`;
    return `${prefix}${key}: ${message}`;
  });
}

function validateSection(schema: object, value: unknown, prefix: string): { problems: string[]; values: Record<string, unknown> } {
  const validator = newValidator(schema);
  try {
    validator.load(value as object);
    validator.validate({ allowed: 'strict' });
    return { problems: [], values: validator.getProperties() as Record<string, unknown> };
  } catch (error) {
    return { problems: convictProblems(error, prefix), values: {} };
  }
}

function parseYaml(file: string, text: string): unknown {
  const document = YAML.parseDocument(text, { prettyErrors: true });
  if (document.errors.length > 0) {
    throw new ConfigInvalidError(file, document.errors.map((e) => `YAML syntax: ${e.message.split('\n')[0]}`));
  }
  const value = document.toJS() as unknown;
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigInvalidError(file, ['(top level): must be a mapping of keys']);
  return value;
}

export function loadConfig(file: string): Config {
  if (!existsSync(file)) {
    throw new StackbackError('CONFIG_NOT_FOUND', `config file ${file} does not exist`, 'pass --config FILE or set STACKBACK_CONFIG');
  }
  return parseConfig(file, readFileSync(file, 'utf8'));
}

/** Validates config text; every problem is collected before anything is thrown. */
export function parseConfig(file: string, text: string): Config {
  const raw = parseYaml(file, text) as Record<string, unknown>;
  const top = validateSection(SCHEMA, raw, '');
  const problems = [...top.problems];

  const rawSources = (raw.sources ?? {}) as Record<string, unknown>;
  const postgresItems = Array.isArray(rawSources.postgres) ? (rawSources.postgres as unknown[]) : [];
  const postgres = postgresItems.map((item, index) => {
    const prefix = `sources.postgres[${index}].`;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      problems.push(`sources.postgres[${index}]: must be a mapping of keys`);
      return undefined;
    }
    const section = validateSection(POSTGRES_SOURCE_SCHEMA, item, prefix);
    problems.push(...section.problems);
    return section.values;
  });

  const seen = new Map<string, string>();
  postgres.forEach((values, index) => {
    const name = values?.name as string | undefined;
    if (!name) return;
    const at = `sources.postgres[${index}]`;
    const earlier = seen.get(name);
    if (earlier) problems.push(`${at}.name: source name "${name}" is already used by ${earlier}`);
    else seen.set(name, at);
  });

  if (problems.length > 0) throw new ConfigInvalidError(file, problems);

  const base = path.dirname(file);
  const absolute = (p: string) => path.resolve(base, p);
  const props = top.values as {
    repository: { path: string; compression_level: number };
    catalog: { path: string };
    work_dir: string;
    lock_timeout: string;
    stall_timeout: string;
    log: { level: string };
  };
  return {
    file,
    repository: { path: absolute(props.repository.path), compressionLevel: props.repository.compression_level },
    catalog: { path: absolute(props.catalog.path) },
    workDir: absolute(props.work_dir),
    lockTimeoutMs: parseDuration(props.lock_timeout)!,
    stallTimeoutMs: parseDuration(props.stall_timeout)!,
    log: { level: props.log.level },
    sources: postgres.map((values) => {
      const v = values as Record<string, unknown>;
      return {
        kind: 'postgres' as const,
        name: v.name as string,
        host: v.host as string,
        port: v.port as number,
        user: v.user as string,
        passwordFile: v.password_file === null ? null : absolute(v.password_file as string),
        databases: v.databases as 'all' | string[],
        globals: v.globals as boolean,
        binDir: v.bin_dir === null ? null : absolute(v.bin_dir as string),
        maintenanceDb: v.maintenance_db as string,
        exactCountMaxBytes: parseSize(v.exact_count_max_size)!,
      };
    }),
  };
}
