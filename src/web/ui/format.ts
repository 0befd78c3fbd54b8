// Times in the configured zone, relative times, byte sizes, durations.

// The formatters are made on first use, not when the script loads: the first Intl object of a
// page loads the locale's data (tens of ms on a slow machine), which must not hold up the first paint.
const DATE_STYLE = { dateStyle: 'medium', timeStyle: 'short' } as const;
let configuredZone: string | undefined;
let dates: { format: Intl.DateTimeFormat; zone: string | undefined } | undefined;
let numbers: Intl.NumberFormat | undefined;

/** Absolute times are shown in the daemon's configured zone (falls back to the browser's for an unknown one). */
export function setTimeZone(zone: string): void {
  configuredZone = zone;
  dates = undefined;
}

function dateFormat(): { format: Intl.DateTimeFormat; zone: string | undefined } {
  if (!dates) {
    try {
      dates = { format: new Intl.DateTimeFormat(undefined, { ...DATE_STYLE, timeZone: configuredZone }), zone: configuredZone };
    } catch {
      dates = { format: new Intl.DateTimeFormat(undefined, DATE_STYLE), zone: undefined };
    }
  }
  return dates;
}

/** The configured zone, or undefined when there is none or the browser does not know it. */
export function zone(): string | undefined {
  return dateFormat().zone;
}

/** Makes the formatters now (while the page waits for the network) rather than when the first answer is drawn. */
export function warmUp(): void {
  dateFormat().format.format(0);
  count(0);
}

export function absolute(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateFormat().format.format(date);
}

const UNITS: [limit: number, size: number, unit: string][] = [
  [60, 1, 's'],
  [3600, 60, 'min'],
  [48 * 3600, 3600, 'h'],
  [Infinity, 86400, 'days'],
];

/** "3 h ago", "in 20 min", "just now". */
export function relative(iso: string, now = Date.now()): string {
  const seconds = (Date.parse(iso) - now) / 1000;
  const abs = Math.abs(seconds);
  if (Number.isNaN(abs)) return '';
  if (abs < 10) return 'just now';
  const [, size, unit] = UNITS.find(([limit]) => abs < limit)!;
  const amount = `${Math.round(abs / size)} ${unit}`;
  return seconds < 0 ? `${amount} ago` : `in ${amount}`;
}

/** "12 Mar 2026, 14:05 (3 h ago)". */
export function when(iso: string | null | undefined): string {
  return iso ? `${absolute(iso)} (${relative(iso)})` : '—';
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  let value = Math.abs(n);
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${n < 0 ? '-' : ''}${value.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

/** "45 s", "3 min 20 s", "2 h 5 min", "3 d 4 h". */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const parts: [number, string][] =
    s < 3600 ? [[Math.floor(s / 60), 'min'], [s % 60, 's']] : s < 86400 ? [[Math.floor(s / 3600), 'h'], [Math.floor((s % 3600) / 60), 'min']] : [[Math.floor(s / 86400), 'd'], [Math.floor((s % 86400) / 3600), 'h']];
  return parts
    .filter(([value], i) => i === 0 || value > 0)
    .map(([value, unit]) => `${value} ${unit}`)
    .join(' ');
}

/** Seconds from `start` to `end` (ISO), or undefined while it has no end. */
export function elapsed(start: string, end: string | null | undefined): number | undefined {
  return end ? (Date.parse(end) - Date.parse(start)) / 1000 : undefined;
}

export function count(n: number): string {
  numbers ??= new Intl.NumberFormat();
  return numbers.format(n);
}

export function plural(n: number, word: string, many = `${word}s`): string {
  return `${count(n)} ${n === 1 ? word : many}`;
}
