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
  /** Where a job reports how far it got (the daemon streams it to clients); called often, must be cheap. */
  progress?: ((update: ProgressUpdate) => void) | undefined;
  /** The daemon's: resolves once the control requests in flight are answered (undefined: none are). Backups await it between reads. */
  yieldToForeground?: (() => Promise<void> | undefined) | undefined;
}

export interface ProgressUpdate {
  phase: string;
  source?: string;
  artifact?: string;
  bytes_done?: number;
  bytes_estimated?: number;
}
