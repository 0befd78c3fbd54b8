import type { Config, SourceConfig } from '../config/load.ts';
import { StackbackError } from '../errors.ts';
import { FilesSource } from './files/index.ts';
import { PostgresSource } from './postgres/index.ts';
import { QdrantSource } from './qdrant/index.ts';
import { QdrantStorageSource } from './qdrant/storage-dir.ts';
import type { Source } from './source.ts';

function createSource(config: SourceConfig): Source {
  switch (config.kind) {
    case 'postgres':
      return new PostgresSource(config);
    case 'qdrant':
      return config.mode === 'storage_dir' ? new QdrantStorageSource(config) : new QdrantSource(config);
    case 'files':
      return new FilesSource(config);
  }
}

/** One Source per configured source, in config order. */
export function createSources(config: Config): Source[] {
  return config.sources.map(createSource);
}

export function findSource(sources: Source[], name: string): Source {
  const found = sources.find((s) => s.name === name);
  if (!found) {
    throw new StackbackError('SOURCE_NOT_FOUND', `no source named "${name}" in the config`, `configured sources: ${sources.map((s) => s.name).join(', ') || 'none'}`);
  }
  return found;
}
