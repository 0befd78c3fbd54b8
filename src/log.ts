import { createRequire } from 'node:module';
import pino, { type DestinationStream, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';

/** pino-pretty takes ~15 ms to load: only when a person watches a terminal. */
const loadPretty = () => createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;

export type { Logger };

/**
 * The newest log lines of this process (pino's JSON lines, as written), bounded by count and
 * bytes: healthchecks pings carry the end of a run's log as their body (issue 17). A caller
 * takes mark() when a run starts and since(mark) when it ends; lines pushed out by newer ones
 * are simply gone (`dropped` says how many).
 */
export class RecentLines {
  private lines: { seq: number; text: string }[] = [];
  private bytes = 0;
  private nextSeq = 0;
  private readonly maxLines: number;
  private readonly maxBytes: number;

  constructor(maxLines = 5000, maxBytes = 1024 * 1024) {
    this.maxLines = maxLines;
    this.maxBytes = maxBytes;
  }

  push(text: string): void {
    this.lines.push({ seq: this.nextSeq++, text });
    this.bytes += text.length;
    if (this.lines.length > this.maxLines || this.bytes > this.maxBytes) {
      // Drop in batches (a quarter at a time): one splice per many lines, not one shift per line.
      let drop = 0;
      let freed = 0;
      const keepBytes = this.maxBytes * 0.75;
      const keepLines = Math.floor(this.maxLines * 0.75);
      while (drop < this.lines.length && (this.lines.length - drop > keepLines || this.bytes - freed > keepBytes)) freed += this.lines[drop++]!.text.length;
      this.lines.splice(0, drop);
      this.bytes -= freed;
    }
  }

  /** The sequence number the next line will get. */
  mark(): number {
    return this.nextSeq;
  }

  /** Lines pushed since `mark` that are still kept, oldest first, and how many of them were dropped already. */
  since(mark: number): { lines: string[]; dropped: number } {
    const first = this.lines[0]?.seq ?? this.nextSeq;
    const lines = this.lines.filter((l) => l.seq >= mark).map((l) => l.text);
    return { lines, dropped: Math.max(0, first - mark) };
  }
}

/** What every logger of this process also writes to (a few hundred kB at most). */
export const recentLogLines = new RecentLines();

/** Writes every line to `destination` and keeps it in `recent`. */
function teeStream(destination: DestinationStream, recent: RecentLines): DestinationStream {
  return {
    write(line: string) {
      recent.push(line);
      return destination.write(line);
    },
  };
}

/**
 * JSON lines for journald and scripts; readable lines when a person watches a terminal.
 * Logs go to stderr so that stdout carries only command results (`--json` stays parseable).
 * Every line written is also kept in `recent` (default: recentLogLines).
 */
export function createLogger(level: string, options: { pretty?: boolean; recent?: RecentLines } = {}): Logger {
  const usePretty = options.pretty ?? process.stderr.isTTY === true;
  const recent = options.recent ?? recentLogLines;
  const base = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (usePretty) return pino(base, teeStream(loadPretty()({ destination: 2, colorize: true, ignore: 'pid,hostname', sync: true }), recent));
  return pino(base, teeStream(pino.destination({ dest: 2, sync: true }), recent));
}
