import { type Config, ConfigInvalidError, loadConfig } from '../config/load.ts';
import { errorMessage } from '../errors.ts';
import { createSources } from '../sources/registry.ts';

/** GET /api/config: the running config as the dashboard shows it, and what `config check` says of the file on disk now. */
export interface ConfigView {
  file: string;
  effective: unknown;
  check: { ok: boolean; problems: string[]; sources: string[] };
}

/**
 * Names whose values would be secrets if the config ever held one inline. Today every secret
 * lives in a file the config names (password_file, key_file, url_file …) and URLs may not carry
 * passwords (the loader refuses them): the paths are shown, their contents never read here. A
 * key added later that holds a secret itself is hidden by its name.
 */
const SECRET_NAME = /(password|passphrase|secret|token|apikey|api_key|credential)s?$/i;

/** A value of the loaded config in the terms of the file: snake_case keys, durations in ms and modes as written. */
function presentable(key: string, value: unknown): [string, unknown] {
  const snake = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  if (typeof value === 'number' && snake.endsWith('_ms')) return [snake.slice(0, -3), `${value / 1000}s`];
  if (typeof value === 'number' && snake.endsWith('_mode')) return [snake, value.toString(8).padStart(4, '0')];
  return [snake, value];
}

function redact(value: unknown, key: string): unknown {
  if (SECRET_NAME.test(key)) return value === null ? null : '(hidden)';
  if (Array.isArray(value)) return value.map((item) => redact(item, ''));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => presentable(k, v)).map(([k, v]) => [k, redact(v, k)]));
  }
  return value;
}

export function configView(config: Config): ConfigView {
  let check: ConfigView['check'];
  try {
    const onDisk = loadConfig(config.file);
    check = { ok: true, problems: [], sources: createSources(onDisk).map((s) => s.describe()) };
  } catch (error) {
    check = { ok: false, problems: error instanceof ConfigInvalidError ? error.problems : [errorMessage(error)], sources: [] };
  }
  return { file: config.file, effective: redact(config, ''), check };
}
