import type { Config } from '../config/load.ts';
import { StackbackError } from '../errors.ts';
import { PostgresSource } from './postgres/index.ts';
import type { Source } from './source.ts';

/** One Source per configured source, in config order. */
export function createSources(config: Config): Source[] {
  return config.sources.map((source) => new PostgresSource(source));
}

export function findSource(sources: Source[], name: string): Source {
  const found = sources.find((s) => s.name === name);
  if (!found) {
    throw new StackbackError('SOURCE_NOT_FOUND', `no source named "${name}" in the config`, `configured sources: ${sources.map((s) => s.name).join(', ') || 'none'}`);
  }
  return found;
}
