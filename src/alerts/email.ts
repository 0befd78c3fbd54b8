import { isIP } from 'node:net';
import nodemailer from 'nodemailer';
import type { EmailConfig } from '../config/load.ts';
import { StackbackError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { readPrivateText } from '../secret-file-read.ts';
import type { AlertChannel, AlertEvent } from './event.ts';

/** Connection, greeting and socket-inactivity timeout: a dead or mute server cannot hold a delivery. */
const DEFAULT_TIMEOUT_MS = 15_000;

export interface EmailChannelOptions {
  /** Overrides the 15 s connection/greeting/socket timeouts (tests use a short one). */
  timeoutMs?: number;
}

/**
 * The email channel of issue 17: one plain-text message per event through an SMTP server,
 * with nodemailer (a well-kept SMTP client: STARTTLS, implicit TLS, AUTH, timeouts, no native
 * code). Certificates are always verified. `smtp.starttls` demands the STARTTLS upgrade (a
 * server that does not offer it fails the delivery rather than getting the password in clear),
 * `smtp.tls` speaks TLS from the first byte (port 465); with neither, the session stays plain.
 * The password is read from `smtp.password_file` at every delivery (so a rotated file is
 * picked up), refused when others may read it, and never appears in a message or a log line;
 * nodemailer's own logger is off, since its debug output carries the AUTH exchange.
 * send() rejects with the channel, the server and the server's reply, for the caller to retry.
 */
export function createEmailChannel(config: EmailConfig, log: Logger, options: EmailChannelOptions = {}): AlertChannel {
  const name = config.name || 'email';
  const label = name === 'email' ? 'email' : `email ${name}`;
  const { host, port } = config.smtp;
  const server = `${host}:${port}`;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const implicitTls = config.smtp.tls;
  const requireStartTls = config.smtp.starttls && !implicitTls;

  if (config.smtp.user !== null && !implicitTls && !requireStartTls && !isLoopback(host)) {
    log.warn({ channel: name, server }, 'email channel logs in to its SMTP server without TLS: the password crosses the network in clear (set smtp.starttls or smtp.tls)');
  }

  return {
    name,
    kind: 'email',
    async send(event: AlertEvent, signal: AbortSignal): Promise<void> {
      const password = readPassword(config, label);
      const secrets = password === undefined ? [] : secretForms(config.smtp.user ?? '', password);
      const transport = nodemailer.createTransport({
        host,
        port,
        secure: implicitTls,
        requireTLS: requireStartTls,
        ignoreTLS: !implicitTls && !requireStartTls,
        // SNI names a host, never an address (RFC 6066); the certificate is checked against `host` either way.
        tls: { ...(isIP(host) === 0 ? { servername: host } : {}), minVersion: 'TLSv1.2' },
        auth: config.smtp.user !== null && password !== undefined ? { user: config.smtp.user, pass: password } : undefined,
        connectionTimeout: timeoutMs,
        greetingTimeout: timeoutMs,
        socketTimeout: timeoutMs,
        dnsTimeout: timeoutMs,
        socketCloseTimeout: Math.min(timeoutMs, 5000),
        logger: false,
        debug: false,
        disableFileAccess: true,
        disableUrlAccess: true,
      });
      // socketTimeout is about inactivity: a server that trickles bytes is bounded here, and the
      // caller's signal (daemon stopping, retry budget spent) ends the attempt too.
      const deadlineMs = timeoutMs * 4;
      const deadline = AbortSignal.timeout(deadlineMs);
      try {
        const info = await transport.sendMail({
          from: config.from,
          to: config.to,
          subject: subjectOf(event),
          text: bodyOf(event),
          headers: {
            'Auto-Submitted': 'auto-generated',
            'X-Stackback-Event': event.kind,
          },
          signal: AbortSignal.any([signal, deadline]),
        });
        log.info({ channel: name, server, kind: event.kind, accepted: info.accepted.length, rejected: info.rejected.length }, 'email alert delivered to the SMTP server');
        if (info.rejected.length > 0) {
          log.warn({ channel: name, server, rejected: info.rejected.map(String) }, 'the SMTP server refused some recipients of the email alert');
        }
      } catch (error) {
        if (deadline.aborted && !signal.aborted) throw new Error(`${label}: ${server} did not finish the delivery within ${deadlineMs / 1000} s`);
        throw new Error(scrub(describeFailure(error, label, server, config.smtp.user, timeoutMs, signal), secrets));
      } finally {
        transport.close();
      }
    },
  };
}

/** The password (first line of the file), or undefined when the channel logs in as nobody. */
function readPassword(config: EmailConfig, label: string): string | undefined {
  const { user, passwordFile } = config.smtp;
  if (passwordFile === null) {
    if (user !== null) throw new StackbackError('CONFIG_INVALID', `${label}: smtp.user ${user} is set but smtp.password_file is not`, 'set smtp.password_file to a file holding the SMTP password (mode 0600)');
    return undefined;
  }
  if (user === null) throw new StackbackError('CONFIG_INVALID', `${label}: smtp.password_file is set but smtp.user is not`, 'set smtp.user to the SMTP login name');
  const password = readPrivateText(passwordFile, `password_file ${passwordFile} of ${label === 'email' ? 'the email channel' : `email channel ${config.name}`}`).split(/\r?\n/)[0] ?? '';
  if (password === '') throw new StackbackError('SECRET_FILE', `${label}: password_file ${passwordFile} is empty`, 'write the SMTP password on the first line of the file');
  return password;
}

interface SmtpFailure {
  code?: string;
  response?: string;
  responseCode?: number;
  command?: string;
  message?: string;
  cause?: unknown;
}

/** One sentence: the channel, the server, what went wrong, the server's own reply when there is one. */
function describeFailure(error: unknown, label: string, server: string, user: string | null, timeoutMs: number, signal: AbortSignal): string {
  const failure = (typeof error === 'object' && error !== null ? error : { message: String(error) }) as SmtpFailure;
  const reply = failure.response ? ` (${oneLine(failure.response)})` : '';
  const systemCode = systemCodeOf(failure);
  switch (failure.code) {
    case 'EAUTH':
      return `${label}: ${server} refused the login${user ? ` as ${user}` : ''}${reply || ` (${oneLine(failure.message ?? 'authentication failed')})`}`;
    case 'ENOAUTH':
      return `${label}: ${server} asked for a login but no credentials are configured (set smtp.user and smtp.password_file)`;
    case 'ETLS':
      if (/STARTTLS/i.test(failure.message ?? '') && failure.response) return `${label}: ${server}: TLS failed: the server did not accept STARTTLS, which smtp.starttls requires${reply}`;
      return `${label}: ${server}: TLS failed: ${oneLine(failure.message ?? 'handshake failed')}${failure.response && !(failure.message ?? '').includes(failure.response) ? reply : ''}`;
    case 'ETIMEDOUT':
      return `${label}: ${server} did not answer within ${timeoutMs / 1000} s (${oneLine(failure.message ?? 'timeout')})`;
    case 'EENVELOPE':
      return `${label}: ${server} refused the sender or the recipients${reply || ` (${oneLine(failure.message ?? '')})`}`;
    case 'EMESSAGE':
      return `${label}: ${server} refused the message${reply || ` (${oneLine(failure.message ?? '')})`}`;
    case 'EABORT':
      return `${label}: delivery to ${server} was cancelled${signal.reason instanceof Error ? ` (${oneLine(signal.reason.message)})` : ''}`;
    case 'EDNS':
      return `${label}: cannot resolve ${server} (${oneLine(failure.message ?? '')})`;
    case 'ECONNECTION':
    case 'ESOCKET':
      if (systemCode === 'ECONNREFUSED' || systemCode === 'EHOSTUNREACH' || systemCode === 'ENETUNREACH') return `${label}: cannot connect to ${server} (${systemCode})`;
      if (isCertificateError(systemCode, failure.message)) return `${label}: ${server}: TLS certificate not accepted (${oneLine(failure.message ?? systemCode ?? '')})`;
      return `${label}: the connection to ${server} failed: ${oneLine(failure.message ?? 'closed')}${reply}`;
    default:
      return `${label}: delivery to ${server} failed: ${oneLine(failure.message ?? String(error))}${reply}`;
  }
}

function systemCodeOf(failure: SmtpFailure): string | undefined {
  const cause = failure.cause as { code?: unknown } | undefined;
  if (cause && typeof cause.code === 'string') return cause.code;
  const match = /\b(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|EPIPE)\b/.exec(failure.message ?? '');
  return match?.[1];
}

function isCertificateError(code: string | undefined, message: string | undefined): boolean {
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|altnames/i.test(`${code ?? ''} ${message ?? ''}`);
}

/** The password, and the forms an AUTH exchange sends it in, are cut from any text that leaves. */
function secretForms(user: string, password: string): string[] {
  return [
    password,
    Buffer.from(password).toString('base64'),
    Buffer.from(`\0${user}\0${password}`).toString('base64'),
    Buffer.from(`${user}\0${user}\0${password}`).toString('base64'),
  ];
}

function scrub(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) if (secret !== '') out = out.split(secret).join('***');
  return out;
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim().slice(0, 500);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
}

/** `[stackback] FAILURE backup on db1: …`; `[stackback] TEST on db1: …` for `notify test`. */
export function subjectOf(event: AlertEvent): string {
  const kind = event.test ? 'TEST' : event.kind.toUpperCase();
  const reminder = event.reminder ? ' (reminder)' : '';
  const what = event.job && !event.test ? ` ${event.job.kind}` : event.remote && !event.test ? ` remote ${event.remote}` : '';
  const subject = `[stackback] ${kind}${reminder}${what} on ${event.host}: ${oneLine(event.summary)}`;
  return subject.length > 200 ? `${subject.slice(0, 199)}…` : subject;
}

/** Plain text for people, every field of the event, then the event document itself for tools. */
export function bodyOf(event: AlertEvent): string {
  const lines: string[] = [];
  const kind = event.test ? 'TEST' : event.kind.toUpperCase();
  lines.push(`${kind}: ${event.summary}`);
  if (event.test) lines.push('', 'This is a test message from `stackback notify test`: the email channel works.');
  if (event.reminder) lines.push('', 'Reminder: this incident was reported before and is still going on.');
  lines.push('');
  const field = (key: string, value: string) => lines.push(`${`${key}:`.padEnd(10)}${value}`);
  field('Event', event.kind);
  field('At', event.at);
  field('Host', event.host);
  if (event.job) {
    const ids = [event.job.id !== undefined ? `job ${event.job.id}` : '', event.job.run !== undefined ? `run ${event.job.run}` : ''].filter(Boolean).join(', ');
    field('Job', `${event.job.kind}${ids ? ` (${ids})` : ''}`);
  }
  if (event.backup) field('Backup', event.backup);
  if (event.sources && event.sources.length > 0) field('Sources', event.sources.join(', '));
  if (event.remote) field('Remote', event.remote);
  if (event.error) {
    field('Error', `${event.error.message} [${event.error.code}]`);
    if (event.error.hint) field('Hint', event.error.hint);
  }
  if (event.look_further.length > 0) {
    lines.push('', 'To look further:');
    for (const command of event.look_further) lines.push(`  ${command}`);
  }
  lines.push('', '-- ', 'The event document (stackback_event 1), for tools:', JSON.stringify(event, null, 2), '');
  return lines.join('\n');
}
