import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * JSON lines for journald and scripts; readable lines when a person watches a terminal.
 * Logs go to stderr so that stdout carries only command results (`--json` stays parseable).
 */
export function createLogger(level: string, options: { pretty?: boolean } = {}): Logger {
  const usePretty = options.pretty ?? process.stderr.isTTY === true;
  const base = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (usePretty) return pino(base, pretty({ destination: 2, colorize: true, ignore: 'pid,hostname', sync: true }));
  return pino(base, pino.destination({ dest: 2, sync: true }));
}
