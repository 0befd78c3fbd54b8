/**
 * The body of a healthchecks ping: the run's log lines (pino JSON, as log.ts keeps them) as
 * plain text, one line each: "time LEVEL message key=value …". The logs carry no secrets by
 * design (passwords go through files and the environment, URLs of notification channels are
 * logged by origin only); this only makes them readable.
 */
const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

export function logLineText(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    // pino-pretty's output, or anything else: as it is, without colour codes.
    // eslint-disable-next-line no-control-regex
    return line.replace(/\u001b\[[0-9;]*m/g, '').replace(/\s+$/, '');
  }
  const time = typeof entry.time === 'string' ? entry.time : typeof entry.time === 'number' ? new Date(entry.time).toISOString() : '';
  const level = LEVELS[entry.level as number] ?? String(entry.level ?? '');
  const fields = Object.entries(entry)
    .filter(([key]) => !SKIP.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' ? (/[\s"=]/.test(value) ? JSON.stringify(value) : value) : JSON.stringify(value)}`);
  return [time, level, typeof entry.msg === 'string' ? entry.msg : '', ...fields].filter((p) => p !== '').join(' ');
}

/** The lines of a run as text, saying so when the oldest were dropped from the buffer. */
export function logTail(recent: { lines: string[]; dropped: number }): string {
  const text = recent.lines.map(logLineText).join('\n');
  return `${recent.dropped > 0 ? `[${recent.dropped} earlier log lines of this run are no longer kept]\n` : ''}${text}${text ? '\n' : ''}`;
}
