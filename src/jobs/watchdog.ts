import { StackbackError } from '../errors.ts';

/**
 * Aborts a job whose source has produced no bytes for `timeoutMs`: a pg_dump waiting on a
 * lock, or a hung server, must never leave a run "running" forever. Its `signal` also
 * follows the job's own cancel signal, so one signal stops the producer for either reason.
 */
export class Watchdog {
  readonly signal: AbortSignal;
  /** Set once the watchdog fired: the error to report. */
  stalled: StackbackError | undefined;
  private readonly controller = new AbortController();
  private readonly timeoutMs: number;
  private timer: NodeJS.Timeout | undefined;
  private what = '';
  private lastProgress = 0;

  constructor(timeoutMs: number, parent?: AbortSignal) {
    this.timeoutMs = timeoutMs;
    this.signal = parent ? AbortSignal.any([parent, this.controller.signal]) : this.controller.signal;
  }

  /** Starts watching a new producer. */
  start(what: string): void {
    this.what = what;
    this.progress();
    this.arm();
  }

  /** Called on every block of bytes; cheap (no timer churn). */
  progress(): void {
    this.lastProgress = Date.now();
  }

  private arm(): void {
    clearTimeout(this.timer);
    const due = this.lastProgress + this.timeoutMs - Date.now();
    this.timer = setTimeout(() => {
      if (Date.now() - this.lastProgress < this.timeoutMs) return this.arm();
      this.stalled = new StackbackError(
        'BACKUP_STALLED',
        `${this.what} made no progress for ${Math.round(this.timeoutMs / 1000)} s (stall_timeout): backup aborted`,
        'look for a lock the dump waits on (pg_stat_activity) or a hung server; raise stall_timeout for very slow sources',
      );
      this.controller.abort(this.stalled);
    }, Math.max(due, 10));
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}
