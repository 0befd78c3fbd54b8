import type { WebhookConfig } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { eventText, eventTitle } from './document.ts';
import type { AlertChannel, AlertEvent } from './event.ts';
import { headerText, httpRequest, originOf, readHeadersFile, readUrlFile } from './http.ts';

/** One request may take this long before it counts as a failed attempt (and is retried). */
export const HTTP_ATTEMPT_TIMEOUT_MS = 15_000;

/** ntfy priorities (1 min … 5 urgent) and tags (emoji short codes) per event kind. */
const NTFY: Record<AlertEvent['kind'], { priority: string; tags: string }> = {
  failure: { priority: '4', tags: 'rotating_light' },
  partial: { priority: '4', tags: 'warning' },
  stale: { priority: '4', tags: 'hourglass' },
  recovered: { priority: '3', tags: 'white_check_mark' },
  success: { priority: '2', tags: 'floppy_disk' },
  start: { priority: '1', tags: 'arrow_forward' },
};

const SLACK_ICON: Record<AlertEvent['kind'], string> = {
  failure: ':rotating_light:',
  partial: ':warning:',
  stale: ':hourglass:',
  recovered: ':white_check_mark:',
  success: ':floppy_disk:',
  start: ':arrow_forward:',
};

/** The request a webhook sends for `event`: body and content headers per format. */
export function webhookPayload(format: WebhookConfig['format'], event: AlertEvent): { headers: Record<string, string>; body: string } {
  if (format === 'ntfy') {
    // ntfy: the message is the plain body; title, priority and tags go in headers (https://docs.ntfy.sh/publish/).
    const style = NTFY[event.kind];
    return {
      headers: { 'content-type': 'text/plain; charset=utf-8', title: headerText(eventTitle(event)), priority: event.test ? '2' : style.priority, tags: event.test ? 'test_tube' : style.tags },
      body: eventText(event),
    };
  }
  if (format === 'slack') {
    const [first, ...rest] = eventText(event).split('\n');
    const text = `${event.test ? ':test_tube:' : SLACK_ICON[event.kind]} *${escapeSlack(eventTitle(event))}*\n${escapeSlack(first ?? '')}${rest.length ? `\n${rest.map(escapeSlack).join('\n')}` : ''}`;
    return { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) };
  }
  return { headers: { 'content-type': 'application/json' }, body: JSON.stringify(event) };
}

/** Slack's mrkdwn treats &, < and > as control characters. */
function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * A webhook: each event POSTed to the URL in url_file, as stackback's event document (json), a
 * ntfy message or a Slack incoming-webhook message, with the extra headers of headers_file.
 * Logs name the URL's origin only (the path or query may hold the token), never a header value.
 */
export function createWebhookChannel(config: WebhookConfig, log: Logger, index = 0): AlertChannel {
  const name = config.name || `webhook-${index + 1}`;
  const what = `webhook ${name}`;
  return {
    name,
    kind: 'webhook',
    async send(event, signal) {
      const url = readUrlFile(config.urlFile, what);
      const extra = config.headersFile ? readHeadersFile(config.headersFile, what) : {};
      const payload = webhookPayload(config.format, event);
      await httpRequest({ method: 'POST', url, headers: { ...payload.headers, ...extra }, body: payload.body, what, signal, timeoutMs: HTTP_ATTEMPT_TIMEOUT_MS });
      log.info({ channel: name, to: originOf(url), format: config.format, event: event.kind }, `${what}: ${event.kind} event delivered`);
    },
  };
}
