import { StackbackError } from '../errors.ts';
import { readPrivateText } from '../secret-file-read.ts';
import { STACKBACK_VERSION } from '../version.ts';

/**
 * HTTP for the webhook and healthchecks channels. URLs and extra headers live in files only
 * the daemon's user may read (they hold tokens); they are read at every delivery, so a rotated
 * file is picked up without a reload. Nothing here ever puts a URL's path, query or userinfo,
 * or a header value, into an error message: errors name the URL's origin only.
 */

/** A delivery error; `permanent` ones (a 4xx other than 408/425/429, a bad URL file) are not retried. */
export class DeliveryError extends Error {
  readonly permanent: boolean;
  constructor(message: string, permanent = false) {
    super(message);
    this.name = 'DeliveryError';
    this.permanent = permanent;
  }
}

/** The URL in the first line of `file` (mode 0600/0640), checked to be http(s). `what` names it in errors. */
export function readUrlFile(file: string, what: string): URL {
  let text: string;
  try {
    text = readPrivateText(file, `url_file ${file} of ${what}`);
  } catch (error) {
    throw new DeliveryError(error instanceof StackbackError ? `${error.message}${error.hint ? ` (${error.hint})` : ''}` : String(error), true);
  }
  const line = (text.split(/\r?\n/)[0] ?? '').trim();
  if (line === '') throw new DeliveryError(`${what}: url_file ${file} is empty (write the URL on its first line)`, true);
  let url: URL;
  try {
    url = new URL(line);
  } catch {
    throw new DeliveryError(`${what}: url_file ${file} does not hold a URL on its first line`, true);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new DeliveryError(`${what}: the URL in ${file} is not http(s) (${url.protocol})`, true);
  return url;
}

/** `https://host:port`: the only part of a URL that logs, errors and status may show. */
export function originOf(url: URL): string {
  return url.origin;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Headers a file must not set: fetch manages them, or they would break the request. */
const MANAGED = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'expect', 'te', 'trailer']);

/** headers_file: one `Name: value` per line; blank lines and lines starting with # are skipped. Values are never quoted in errors. */
export function readHeadersFile(file: string, what: string): Record<string, string> {
  let text: string;
  try {
    text = readPrivateText(file, `headers_file ${file} of ${what}`);
  } catch (error) {
    throw new DeliveryError(error instanceof StackbackError ? `${error.message}${error.hint ? ` (${error.hint})` : ''}` : String(error), true);
  }
  const headers: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).trim() : '';
    if (!TOKEN.test(name)) throw new DeliveryError(`${what}: headers_file ${file} line ${index + 1} is not "Name: value"`, true);
    if (MANAGED.has(name.toLowerCase())) throw new DeliveryError(`${what}: headers_file ${file} line ${index + 1} sets ${name}, which stackback manages`, true);
    const value = line.slice(colon + 1).trim();
    // fetch takes ByteString values only; the value itself is never quoted.
    if ([...value].some((c) => c.charCodeAt(0) > 255 || c.charCodeAt(0) < 32)) throw new DeliveryError(`${what}: headers_file ${file} line ${index + 1} (${name}) has a value with control or non-Latin-1 characters`, true);
    headers[name] = value;
  });
  return headers;
}

/** The text and digits a header value may carry (ntfy's Title etc.): non-Latin-1 characters become '?'. */
export function headerText(text: string, max = 250): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  const safe = [...flat].map((c) => (c.charCodeAt(0) > 255 ? '?' : c)).join('');
  return safe.length > max ? `${safe.slice(0, max - 1)}…` : safe;
}

export interface HttpRequest {
  method: 'GET' | 'POST';
  url: URL;
  headers?: Record<string, string>;
  body?: string;
  /** Names the channel in errors ("webhook ops"). */
  what: string;
  signal: AbortSignal;
  timeoutMs: number;
}

/**
 * One request; resolves on 2xx, rejects with a DeliveryError naming the channel, the URL's
 * origin and the status (or the network error's code) otherwise. Credentials in the URL
 * (https://user:pass@host/…, which fetch refuses) become a Basic Authorization header.
 */
export async function httpRequest(request: HttpRequest): Promise<void> {
  const url = new URL(request.url);
  const headers: Record<string, string> = { 'user-agent': `stackback/${STACKBACK_VERSION}`, ...request.headers };
  if (url.username !== '' || url.password !== '') {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'authorization')) headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
    url.username = '';
    url.password = '';
  }
  const origin = originOf(url);
  const timeout = AbortSignal.timeout(request.timeoutMs);
  let response: Response;
  try {
    response = await fetch(url, { method: request.method, headers, body: request.body ?? null, signal: AbortSignal.any([request.signal, timeout]), redirect: 'follow' });
  } catch (error) {
    if (request.signal.aborted) throw new DeliveryError(`${request.what}: the request to ${origin} was cancelled`);
    if (timeout.aborted) throw new DeliveryError(`${request.what}: ${origin} did not answer within ${request.timeoutMs / 1000} s`);
    throw new DeliveryError(`${request.what}: cannot reach ${origin} (${networkReason(error)})`);
  }
  // The body is read (and dropped) so the connection can be reused; a receiver's answer is not quoted: it may echo the token.
  await response.arrayBuffer().catch(() => undefined);
  if (response.ok) return;
  const permanent = response.status >= 400 && response.status < 500 && ![408, 425, 429].includes(response.status);
  throw new DeliveryError(`${request.what}: ${origin} answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`, permanent);
}

/** ECONNREFUSED, ENOTFOUND, a TLS error's code…: from fetch's cause, never its URL. */
function networkReason(error: unknown): string {
  let cause: unknown = error;
  let deepest = error;
  for (let depth = 0; depth < 5 && cause; depth++) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    deepest = cause;
    cause = (cause as { cause?: unknown }).cause;
  }
  // undici's own refusals ("bad port") carry no code: the innermost message, URLs cut.
  return deepest instanceof Error ? deepest.message.replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, '<url>') : 'network error';
}
