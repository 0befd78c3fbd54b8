import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';

/** pino-pretty takes ~15 ms to load: only when a person watches a terminal. */
const loadPretty = () => createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;

export type { Logger };

/**
 * JSON lines for journald and scripts; readable lines when a person watches a terminal.
 * Logs go to stderr so that stdout carries only command results (`--json` stays parseable).
 */
export function createLogger(level: string, options: { pretty?: boolean } = {}): Logger {
  const usePretty = options.pretty ?? process.stderr.isTTY === true;
  const base = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (usePretty) return pino(base, loadPretty()({ destination: 2, colorize: true, ignore: 'pid,hostname', sync: true }));
  return pino(base, pino.destination({ dest: 2, sync: true }));
}
