import type { Catalog } from '../catalog/catalog.ts';
import type { Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import type { Source } from '../sources/source.ts';

/** Everything a job works with, passed in (tests run the real jobs on temp folders). */
export interface JobContext {
  config: Config;
  catalog: Catalog;
  sources: Source[];
  log: Logger;
  signal?: AbortSignal | undefined;
  now(): Date;
}
