import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { StackbackError } from '../errors.ts';

/** The page's files, built by `npm run build` (esbuild) from src/web/ui into dist/web. */
export const ASSET_NAMES = ['app.js', 'app.css', 'login.css'] as const;
export type AssetName = (typeof ASSET_NAMES)[number];

export interface Asset {
  body: Buffer;
  gzipped: Buffer;
  contentType: string;
  etag: string;
}

/** dist/web beside the bundle (dist/*.js), or the build's dist/web when running from source (src/web/*.ts). */
function assetFolder(): URL {
  return new URL(import.meta.url.endsWith('.ts') ? '../../dist/web/' : './web/', import.meta.url);
}

const cache = new Map<AssetName, Asset>();

/** An asset, read and compressed once; ASSETS_MISSING-style 500 when the build did not make it. */
export function asset(name: AssetName): Asset {
  const known = cache.get(name);
  if (known) return known;
  const file = fileURLToPath(new URL(name, assetFolder()));
  let body: Buffer;
  try {
    body = readFileSync(file);
  } catch (error) {
    throw new StackbackError('INTERNAL', `the dashboard's ${name} is missing (${(error as NodeJS.ErrnoException).code ?? 'unreadable'}: ${file})`, 'build it: npm run build');
  }
  const made: Asset = {
    body,
    gzipped: gzipSync(body, { level: 9 }),
    contentType: name.endsWith('.js') ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8',
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
  };
  cache.set(name, made);
  return made;
}
