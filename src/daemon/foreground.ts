/**
 * Control requests being answered right now, so that background work can step aside for
 * them. A backup's read loop (hashing and chunking every byte) keeps the main thread about
 * two-thirds busy on a small machine, and a burst of `GET /api/backup/status` would
 * otherwise wait its turn behind it. The backup waits while requests are in flight and for
 * a moment after (a burst arrives over several event-loop turns), but never longer than
 * MAX_WAIT_MS per read: a steady stream of requests slows a backup down, never stops it.
 */
const AFTERGLOW_MS = 5;
const MAX_WAIT_MS = 50;

export class ForegroundActivity {
  private active = 0;
  private waiters: (() => void)[] = [];
  private afterglow: NodeJS.Timeout | undefined;

  /** Marks a request as begun; call the returned function once it is answered (more calls are ignored). */
  enter(): () => void {
    this.active += 1;
    clearTimeout(this.afterglow);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.active -= 1;
      if (this.active === 0) this.afterglow = setTimeout(() => this.release(), AFTERGLOW_MS);
    };
  }

  /** Undefined when nothing is in flight (no await needed), else a wait until the requests are answered. */
  yieldTo(): Promise<void> | undefined {
    if (this.active === 0 && this.afterglow === undefined) return undefined;
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, MAX_WAIT_MS);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private release(): void {
    this.afterglow = undefined;
    const waiting = this.waiters;
    this.waiters = [];
    for (const wake of waiting) wake();
  }
}
