import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The URL of module `name` in the folder of the module at `moduleUrl` (its import.meta.url),
 * for code loaded by file name (worker threads, transforms): `.ts` when running from source
 * (tests), `.js` in the build, whichever the calling module itself is.
 */
export function siblingModule(moduleUrl: string, name: string): URL {
  return new URL(`./${name}${extname(fileURLToPath(moduleUrl))}`, moduleUrl);
}
