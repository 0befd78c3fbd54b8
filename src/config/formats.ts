import convict from 'convict';
import { Cron } from 'croner';
import { isIPv4, isIPv6 } from 'node:net';
import { NOTIFY_EVENTS, NOTIFY_JOB_KINDS } from './schema.ts';

/**
 * Value formats used by the schema. Each validator throws a short "must be …" message;
 * the loader adds the key path and the offending value, so an operator reads
 * `sources.postgres[0].port: must be a port number, got "abc"`.
 */

const DURATION_UNITS_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const MAX_TIMER_MS = 24 * 86_400_000;

/** "30m", "2d", "1500ms" → milliseconds; undefined when it is not a duration. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value * 1000;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+)\s*(ms|s|m|h|d|w)$/.exec(value.trim());
  if (!match) return undefined;
  return Number(match[1]) * DURATION_UNITS_MS[match[2]!]!;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** 1048576, "128MiB", "2 GB" → bytes; undefined when it is not a size. */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]+)?$/i.exec(value.trim());
  if (!match) return undefined;
  const unit = SIZE_UNITS[(match[2] ?? 'b').toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(match[1]) * unit);
}

/** The croner error for a pattern, or undefined when it parses (seconds field allowed). */
export function cronProblem(pattern: string): string | undefined {
  try {
    new Cron(pattern, { paused: true });
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

function checkSchedule(value: unknown, words: string[]): void {
  check(typeof value === 'string', `must be a cron expression or ${words.map((w) => `"${w}"`).join(' or ')}`);
  if (words.includes(value as string)) return;
  const problem = cronProblem(value as string);
  check(problem === undefined, `must be a cron expression (minute hour day month weekday, optional seconds first) or ${words.map((w) => `"${w}"`).join(' or ')}: ${problem}`);
}

/** Whether Intl knows the zone (croner only fails on a bad zone when it computes a run). */
export function isTimeZone(value: string): boolean {
  // Fast paths first: the first DateTimeFormat loads ICU's zone data (~15-30 ms of every CLI
  // start); the list of canonical names does not. Aliases (Etc/UTC, US/Eastern) need the full check.
  if (value === 'UTC' || Intl.supportedValuesOf('timeZone').includes(value)) return true;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: value });
    return true;
  } catch {
    return false;
  }
}

export const SOURCE_NAME_PATTERN = /^[a-z0-9_-]+$/;

/** "20MiB", "20MiB/s", 1048576 → bytes per second; undefined when it is not a size. */
export function parseBandwidth(value: unknown): number | undefined {
  return parseSize(typeof value === 'string' ? value.trim().replace(/\s*\/\s*s$/i, '') : value);
}

/** Why a key prefix in a bucket is unusable, or undefined when it is fine ('' and null are). */
export function s3PrefixProblem(value: unknown): string | undefined {
  if (value === null || value === '') return undefined;
  if (typeof value !== 'string') return 'must be a relative path such as db1/, or ""';
  if (value.startsWith('/')) return 'must not start with "/"';
  if (!/^[A-Za-z0-9._/-]+$/.test(value)) return 'may hold only letters, digits, ".", "_", "-" and "/"';
  if (value.includes('//')) return 'must not contain "//"';
  const segments = value.replace(/\/$/, '').split('/');
  if (segments.some((s) => s === '.' || s === '..')) return 'must not contain "." or ".." segments';
  if (value.length > 512) return 'must be at most 512 characters';
  return undefined;
}

/** A checked prefix as stored: '' or ending in exactly one '/' ('db1' → 'db1/'). */
export function normalizeS3Prefix(value: string | null): string {
  if (value === null || value === '') return '';
  return value.endsWith('/') ? value : `${value}/`;
}

/** Why a bucket name breaks the S3 naming rules, or undefined when it keeps them. */
export function s3BucketProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value === '') return 'is required';
  if (value.length < 3 || value.length > 63) return 'must be 3 to 63 characters long';
  if (!/^[a-z0-9.-]+$/.test(value)) return 'may hold only lower case letters, digits, "." and "-"';
  if (!/^[a-z0-9].*[a-z0-9]$/.test(value)) return 'must start and end with a letter or a digit';
  if (value.includes('..')) return 'must not contain ".."';
  if (/^\d+\.\d+\.\d+\.\d+$/.test(value)) return 'must not look like an IP address';
  return undefined;
}

/** Why an S3 endpoint is unusable, or undefined when it is a plain http(s) URL (or null). */
/** The start of the refusal of a URL with a user or password in it; the loader never echoes such a value. */
export const CREDENTIALS_IN_URL = 'must not hold a user name or password';

function endpointProblem(value: unknown): string | undefined {
  const message = 'must be an http:// or https:// URL such as https://s3.eu-central-1.amazonaws.com, or null';
  if (value === null) return undefined;
  if (typeof value !== 'string' || !/^https?:\/\/[^\s/]+/.test(value) || !URL.canParse(value)) return message;
  const url = new URL(value);
  // Keys in the URL would end up in logs and status output: they belong in credentials_file.
  if (url.username !== '' || url.password !== '') return `${CREDENTIALS_IN_URL} (use credentials_file)`;
  if (url.search !== '' || url.hash !== '') return 'must not have a query (?…) or a fragment (#…)';
  return undefined;
}

/**
 * metrics.listen: "host:port", "[v6]:port" → { host, port } (host without brackets); undefined
 * when it is not one. The host is an IPv4 address, a bracketed IPv6 address or a host name.
 */
export function parseListenAddress(value: unknown): { host: string; port: number } | undefined {
  if (typeof value !== 'string') return undefined;
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value.trim());
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return undefined;
  const v6 = match[1];
  if (v6 !== undefined) return isIPv6(v6) ? { host: v6, port } : undefined;
  const host = match[2]!;
  if (host.startsWith('.') || host.startsWith('-') || host.endsWith('-') || host.includes('..')) return undefined;
  return { host, port };
}

/** Whether a listen host only reaches this machine: 127.0.0.0/8, ::1 (or ::ffff:127.x.y.z), localhost. */
export function isLoopbackHost(host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  if (isIPv4(name)) return name.startsWith('127.');
  if (isIPv6(name)) {
    // The URL parser writes an IPv6 address in its shortest form: 0:0:0:0:0:0:0:1 → ::1.
    const short = new URL(`http://[${name}]/`).hostname.slice(1, -1);
    if (short === '::1') return true;
    const mapped = /^::ffff:([0-9a-f]{1,4}):[0-9a-f]{1,4}$/.exec(short);
    return mapped !== null && Number.parseInt(mapped[1]!, 16) >> 8 === 127;
  }
  return false;
}

// An address as nodemailer takes it: local@domain, optionally as "Display Name <local@domain>".
// No line breaks (header injection), no spaces or brackets in the address itself.
const BARE_ADDRESS = /^[^\s@<>(),;:"\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** Whether a value is an email address (bare, or "Name <address>"). */
export function isEmailAddress(value: unknown): boolean {
  if (typeof value !== 'string' || /[\r\n\0]/.test(value)) return false;
  const named = /^([^<>]*)<([^<>]+)>$/.exec(value.trim());
  return BARE_ADDRESS.test(named ? named[2]!.trim() : value.trim());
}

function checkOneOf(value: unknown, allowed: readonly string[], what: string, nonEmpty: boolean): void {
  const list = `a ${nonEmpty ? 'non-empty ' : ''}list of ${allowed.join(', ')}`;
  check(Array.isArray(value) && (!nonEmpty || value.length > 0), `must be ${list}`);
  const unknown = (value as unknown[]).filter((item) => typeof item !== 'string' || !allowed.includes(item));
  check(unknown.length === 0, `unknown ${what} ${unknown.map((u) => JSON.stringify(u)).join(', ')}: must be ${list}`);
}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

export function registerFormats(): void {
  convict.addFormats({
    'port-number': {
      validate: (value: unknown) =>
        check(Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535, 'must be a port number'),
    },
    // Not convict's Boolean: it turns every string but "false" into true, so `globals: no` (a
    // string in YAML 1.2) or "off" would silently mean true.
    flag: {
      validate: (value: unknown) => check(typeof value === 'boolean', 'must be true or false'),
    },
    'nonempty-string': {
      validate: (value: unknown) => check(typeof value === 'string' && value.trim() !== '', 'must be a non-empty string'),
    },
    'optional-path': {
      validate: (value: unknown) =>
        check(value === null || (typeof value === 'string' && value.trim() !== ''), 'must be a file path or null'),
    },
    'source-name': {
      validate: (value: unknown) => {
        check(value !== '' && value !== undefined, 'is required');
        check(typeof value === 'string' && SOURCE_NAME_PATTERN.test(value), 'must match [a-z0-9_-]+ (lower case letters, digits, _ and -)');
      },
    },
    duration: {
      validate: (value: unknown) => check(parseDuration(value) !== undefined, 'must be a duration such as 90s, 30m, 6h or 2d'),
    },
    // Timers fire at once past 2^31-1 ms (about 24.8 days): a longer timeout would stop everything immediately.
    timeout: {
      validate: (value: unknown) => {
        const ms = parseDuration(value);
        check(ms !== undefined, 'must be a duration such as 90s, 30m, 6h or 2d');
        check(ms! <= MAX_TIMER_MS, 'must be at most 24d');
      },
    },
    size: {
      validate: (value: unknown) => check(parseSize(value) !== undefined, 'must be a size such as 512MiB, 2GB or a number of bytes'),
    },
    'name-list': {
      validate: (value: unknown) =>
        check(
          value === 'all' ||
            (Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === 'string' && item !== '')),
          'must be "all" or a non-empty list of names',
        ),
    },
    'path-list': {
      validate: (value: unknown) =>
        check(Array.isArray(value) && value.length > 0 && value.every((p) => typeof p === 'string' && p.startsWith('/')), 'must be a non-empty list of absolute paths'),
    },
    'string-list': {
      validate: (value: unknown) => check(Array.isArray(value) && value.every((p) => typeof p === 'string' && p !== ''), 'must be a list of strings'),
    },
    'optional-string': {
      validate: (value: unknown) => check(value === null || (typeof value === 'string' && value.trim() !== ''), 'must be a string or null'),
    },
    'http-url': {
      validate: (value: unknown) => {
        check(typeof value === 'string' && /^https?:\/\/[^\s/]+/.test(value) && URL.canParse(value), 'must be an http:// or https:// URL');
        // A password in the URL would end up in logs, errors and status output: the key belongs in api_key_file.
        const url = new URL(value as string);
        check(url.username === '' && url.password === '', `${CREDENTIALS_IN_URL} (put the API key in api_key_file)`);
      },
    },
    'optional-mapping': {
      validate: (value: unknown) => check(value === null || (typeof value === 'object' && !Array.isArray(value)), 'must be a mapping of keys or null'),
    },
    'object-list': {
      validate: (value: unknown) => check(Array.isArray(value), 'must be a list'),
    },
    schedule: { validate: (value: unknown) => checkSchedule(value, ['off']) },
    // schedule.prune and schedule.copy: after each backup, on a cron schedule, or never.
    'prune-schedule': { validate: (value: unknown) => checkSchedule(value, ['after_backup', 'off']) },
    // A socket anyone may write to is a control channel anyone may use.
    'socket-mode': {
      validate: (value: unknown) => {
        check(typeof value === 'string' && /^0?[0-7]{3}$/.test(value), 'must be an octal file mode such as "0660"');
        check((Number.parseInt(value as string, 8) & 0o002) === 0, 'must not be writable by others (o+w): that would let every local user control the daemon');
      },
    },
    'positive-count': {
      validate: (value: unknown) => check(Number.isInteger(value) && (value as number) >= 1, 'must be a whole number, 1 or more'),
    },
    'session-count': {
      validate: (value: unknown) => check(Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 16, 'must be a whole number from 1 to 16'),
    },
    count: {
      validate: (value: unknown) => check(Number.isInteger(value) && (value as number) >= 0, 'must be a whole number, 0 or more'),
    },
    timezone: {
      validate: (value: unknown) => check(typeof value === 'string' && isTimeZone(value), 'must be an IANA time zone such as UTC or Europe/Berlin'),
    },
    'optional-count': {
      validate: (value: unknown) => check(value === null || (Number.isInteger(value) && (value as number) >= 0), 'must be a whole number, 0 or more, or null'),
    },
    'optional-duration': {
      validate: (value: unknown) => check(value === null || parseDuration(value) !== undefined, 'must be a duration such as 90s, 30m, 6h or 2d, or null'),
    },
    's3-endpoint': {
      validate: (value: unknown) => {
        const problem = endpointProblem(value);
        check(problem === undefined, problem!);
      },
    },
    's3-region': {
      validate: (value: unknown) => check(typeof value === 'string' && /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(value), 'must be a region name such as us-east-1 (letters, digits, _ and -)'),
    },
    's3-bucket': {
      validate: (value: unknown) => {
        const problem = s3BucketProblem(value);
        check(problem === undefined, problem!);
      },
    },
    's3-prefix': {
      validate: (value: unknown) => {
        const problem = s3PrefixProblem(value);
        check(problem === undefined, problem!);
      },
    },
    's3-storage-class': {
      validate: (value: unknown) => check(value === null || (typeof value === 'string' && /^[A-Z_]+$/.test(value)), 'must be a storage class such as STANDARD_IA (upper case letters and _), or null'),
    },
    'upload-concurrency': {
      validate: (value: unknown) => check(Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 64, 'must be a whole number from 1 to 64'),
    },
    bandwidth: {
      validate: (value: unknown) => {
        if (value === null) return;
        const bytes = parseBandwidth(value);
        check(bytes !== undefined, 'must be a size per second such as 20MiB (or 20MiB/s), or null for no limit');
        check(bytes! > 0, 'must be more than 0 (null: no limit)');
      },
    },
    'lock-days': {
      validate: (value: unknown) => {
        check(value !== null, 'is required: how many days each object stays locked');
        check(Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 36500, 'must be a whole number of days from 1 to 36500');
      },
    },
    'request-timeout': {
      validate: (value: unknown) => {
        const ms = parseDuration(value);
        check(ms !== undefined, 'must be a duration such as 90s, 30m, 6h or 2d');
        check(ms! >= 1000, 'must be at least 1s');
        check(ms! <= MAX_TIMER_MS, 'must be at most 24d');
      },
    },
    'pack-size': {
      validate: (value: unknown) => {
        const bytes = parseSize(value);
        check(bytes !== undefined, 'must be a size such as 16MiB');
        check(bytes! >= 1024 ** 2 && bytes! <= 512 * 1024 ** 2, 'must be from 1MiB to 512MiB');
      },
    },
    // notify.*: names of channels, null where the loader gives a default name.
    'channel-name': {
      validate: (value: unknown) => check(value === null || (typeof value === 'string' && SOURCE_NAME_PATTERN.test(value)), 'must match [a-z0-9_-]+ (lower case letters, digits, _ and -), or null'),
    },
    'required-path': {
      validate: (value: unknown) => {
        check(value !== null && value !== '', 'is required');
        check(typeof value === 'string' && value.trim() !== '', 'must be a file path');
      },
    },
    'notify-events': { validate: (value: unknown) => checkOneOf(value, NOTIFY_EVENTS, 'event', false) },
    'notify-jobs': { validate: (value: unknown) => checkOneOf(value, NOTIFY_JOB_KINDS, 'job kind', true) },
    // A reminder interval: a timer, so at most 24d; "off" and 0s both mean never.
    'repeat-interval': {
      validate: (value: unknown) => {
        if (value === 'off') return;
        const ms = parseDuration(value);
        check(ms !== undefined, 'must be a duration such as 4h or 1d, or "off"');
        check(ms! <= MAX_TIMER_MS, 'must be at most 24d');
      },
    },
    'host-name': {
      validate: (value: unknown) => {
        check(value !== '' && value !== null, 'is required');
        check(typeof value === 'string' && /^[A-Za-z0-9.:_\[\]-]+$/.test(value), 'must be a host name or an IP address');
      },
    },
    'optional-port': {
      validate: (value: unknown) =>
        check(value === null || (Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535), 'must be a port number or null'),
    },
    'email-address': {
      validate: (value: unknown) => {
        check(value !== null && value !== '', 'is required');
        check(isEmailAddress(value), 'must be an email address such as backup@example.com or "stackback <backup@example.com>"');
      },
    },
    'email-list': {
      validate: (value: unknown) => {
        check(Array.isArray(value) && value.length > 0, 'is required: a non-empty list of email addresses');
        const bad = (value as unknown[]).filter((item) => !isEmailAddress(item));
        check(bad.length === 0, `not an email address: ${bad.map((b) => JSON.stringify(b)).join(', ')}`);
      },
    },
    'notify-command': {
      validate: (value: unknown) => {
        if (value === null) return;
        check(Array.isArray(value) && value.length > 0 && value.every((a) => typeof a === 'string' && a !== ''), 'must be null or a list [program, arg, …] of non-empty strings (no shell: a command line in one string is not split)');
        check((value as string[])[0]!.startsWith('/'), 'must start with the absolute path of the program');
      },
    },
    'listen-address': {
      validate: (value: unknown) => check(value === null || parseListenAddress(value) !== undefined, 'must be "host:port" such as 127.0.0.1:9464 or [::1]:9464, or null'),
    },
    'prom-textfile': {
      validate: (value: unknown) => {
        if (value === null) return;
        check(typeof value === 'string' && value.startsWith('/'), 'must be an absolute path (ending in .prom) or null');
        check(/[^/]\.prom$/.test(value as string), 'must end in .prom (node_exporter\'s textfile collector reads only *.prom files)');
      },
    },
    'zstd-level': {
      validate: (value: unknown) =>
        check(Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 19, 'must be a zstd level from 1 to 19'),
    },
  });
}
