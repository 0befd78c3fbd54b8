import { statSync } from 'node:fs';
import path from 'node:path';
import { Catalog } from '../catalog/catalog.ts';
import { type Config, loadConfig, resolveConfigPath } from '../config/load.ts';
import type { JobContext } from '../jobs/context.ts';
import { createLogger } from '../log.ts';
import { createSources } from '../sources/registry.ts';
import { markInterruptedRuns } from '../jobs/housekeeping.ts';
import { StackbackError } from '../errors.ts';
import { idNames } from '../system-accounts.ts';

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

/** The owner of `target`, or of its nearest existing parent (where it would be created). */
function ownerOf(target: string): number {
  for (let dir = path.resolve(target); ; dir = path.dirname(dir)) {
    const info = statSync(dir, { throwIfNoEntry: false });
    if (info) return info.uid;
    if (dir === path.dirname(dir)) return 0;
  }
}

/**
 * Root running a command locally against a repository or catalog that belongs to another
 * user (the daemon's) would leave root-owned files there — catalog journals, lock files,
 * chunks — that the daemon can no longer use: refused, naming the user to run it as.
 */
export function refuseForeignOwner(config: Config): void {
  if (process.getuid?.() !== 0) return;
  for (const [what, target] of [['repository', config.repository.path], ['catalog', config.catalog.path]] as const) {
    const uid = ownerOf(target);
    if (uid === 0) continue;
    const user = idNames('/etc/passwd').get(uid);
    throw new StackbackError(
      'REPO_OWNER',
      `the ${what} ${target} belongs to ${user ?? `uid ${uid}`}: run as root, this command would leave root-owned files there that the daemon cannot use`,
      `run it as that user: sudo -u ${user ?? `'#${uid}'`} stackback …`,
    );
  }
}

/** The catalog, opened for a CLI command that runs without the daemon. */
export function openCliCatalog(config: Config): Catalog {
  refuseForeignOwner(config);
  return new Catalog(config.catalog.path);
}

/**
 * A job context for one CLI command. SIGINT/SIGTERM abort the job (child processes are
 * stopped, partial writes discarded) instead of killing the process mid-write.
 */
export function openCliContext(options: GlobalOptions, loaded?: Config): JobContext & { close(): void } {
  const config = loaded ?? loadCliConfig(options);
  const log = createLogger(config.log.level);
  const catalog = openCliCatalog(config);
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
