import type { HealthcheckConfig, NotifyJobKind } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { eventText } from './document.ts';
import type { AlertChannel } from './event.ts';
import { httpRequest, originOf, readUrlFile } from './http.ts';
import { HTTP_ATTEMPT_TIMEOUT_MS } from './webhook.ts';

/** healthchecks.io's limit for a ping body (borgmatic uses the same). */
export const PING_BODY_MAX_BYTES = 100_000;

export type PingKind = 'start' | 'success' | 'fail' | 'log';

/** The ping URL: <url> for success, <url>/start, <url>/fail, <url>/log (the query string, if any, stays at the end). */
export function pingUrl(base: URL, kind: PingKind): URL {
  const url = new URL(base);
  if (kind !== 'success') url.pathname = `${url.pathname.replace(/\/+$/, '')}/${kind}`;
  return url;
}

export interface HealthcheckChannel extends AlertChannel {
  readonly kind: 'healthchecks';
  readonly jobs: readonly NotifyJobKind[];
  /** One ping; the body (the end of the run's log) is cut to PING_BODY_MAX_BYTES. */
  ping(kind: PingKind, body: string, signal: AbortSignal): Promise<void>;
}

/** The last `max` bytes of `text` (whole characters), marked when something was cut. */
export function tailBytes(text: string, max = PING_BODY_MAX_BYTES): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= max) return text;
  const marker = '[… earlier lines cut: the body is limited to 100 kB]\n';
  let cut = bytes.subarray(bytes.length - (max - Buffer.byteLength(marker)));
  // Skip a partial UTF-8 sequence at the cut.
  while (cut.length > 0 && (cut[0]! & 0xc0) === 0x80) cut = cut.subarray(1);
  return marker + cut.toString('utf8');
}

/**
 * A healthchecks.io-style check (also self-hosted healthchecks, Cronitor's and Uptime Kuma's
 * success URLs): POST <url>/start when a run of one of its job kinds starts, then <url> (success)
 * or <url>/fail with the end of the run's log as the body. Its send() (used by `notify test`)
 * POSTs to <url>/log, which healthchecks records without changing the check's state.
 */
export function createHealthcheckChannel(config: HealthcheckConfig, log: Logger, index = 0): HealthcheckChannel {
  const name = config.name || `healthchecks-${index + 1}`;
  const what = `healthchecks ${name}`;
  const ping = async (kind: PingKind, body: string, signal: AbortSignal) => {
    const url = readUrlFile(config.urlFile, what);
    await httpRequest({ method: 'POST', url: pingUrl(url, kind), headers: { 'content-type': 'text/plain; charset=utf-8' }, body: tailBytes(body), what, signal, timeoutMs: HTTP_ATTEMPT_TIMEOUT_MS });
    log.info({ channel: name, to: originOf(url), ping: kind }, `${what}: ${kind} ping delivered`);
  };
  return {
    name,
    kind: 'healthchecks',
    jobs: config.jobs,
    ping,
    send: (event, signal) => ping('log', eventText(event), signal),
  };
}
