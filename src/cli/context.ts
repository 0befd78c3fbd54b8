import { Catalog } from '../catalog/catalog.ts';
import { type Config, loadConfig, resolveConfigPath } from '../config/load.ts';
import type { JobContext } from '../jobs/context.ts';
import { createLogger } from '../log.ts';
import { createSources } from '../sources/registry.ts';
import { markInterruptedRuns } from '../jobs/housekeeping.ts';

export interface GlobalOptions {
  config?: string;
  json?: boolean;
  /** With a daemon: return once the job is queued. */
  detach?: boolean;
}

/** Runs `local` with a CLI job context, closing it afterwards. */
export async function runLocally<T>(options: GlobalOptions, config: Config, local: (ctx: JobContext) => Promise<T>): Promise<T> {
  const ctx = openCliContext(options, config);
  try {
    return await local(ctx);
  } finally {
    ctx.close();
  }
}

export function loadCliConfig(options: GlobalOptions): Config {
  return loadConfig(resolveConfigPath(options.config));
}

/**
 * A job context for one CLI command. SIGINT/SIGTERM abort the job (child processes are
 * stopped, partial writes discarded) instead of killing the process mid-write.
 */
export function openCliContext(options: GlobalOptions, loaded?: Config): JobContext & { close(): void } {
  const config = loaded ?? loadCliConfig(options);
  const log = createLogger(config.log.level);
  const catalog = new Catalog(config.catalog.path);
  markInterruptedRuns(catalog, log);
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    log.warn(`${signal} received: stopping`);
    controller.abort(new Error(`interrupted by ${signal}`));
  };
  // process.on, not once: execa's exit hook re-raises a signal that has no listener left,
  // which would kill the process before the job's clean stop ran.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    config,
    catalog,
    sources: createSources(config),
    log,
    signal: controller.signal,
    now: () => new Date(),
    close() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      catalog.close();
    },
  };
}
