/**
 * Control requests being answered right now, so that background work can step aside for
 * them. A backup's read loop (hashing and chunking every byte) keeps the main thread about
 * two-thirds busy on a small machine, and a burst of `GET /api/backup/status` would
 * otherwise wait its turn behind it. The backup waits while requests are in flight and for
 * a moment after (a burst arrives over several event-loop turns), never longer than
 * MAX_WAIT_MS per read, and after a wait that ran out it does not wait again for
 * COOL_DOWN_MS: a stream of requests, or a client that sends half a request and stalls,
 * slows a backup by a fifth at most and never stops it.
 */
const AFTERGLOW_MS = 5;
const MAX_WAIT_MS = 50;
const COOL_DOWN_MS = 200;

export class ForegroundActivity {
  private active = 0;
  private waiters = new Set<() => void>();
  private afterglow: NodeJS.Timeout | undefined;
  private coolDownUntil = 0;

  /** Marks a request as begun; call the returned function once it is answered (more calls are ignored). */
  enter(): () => void {
    this.active += 1;
    clearTimeout(this.afterglow);
    this.afterglow = undefined;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.active -= 1;
      if (this.active === 0) this.afterglow = setTimeout(() => this.release(), AFTERGLOW_MS);
    };
  }

  /** Undefined when there is nothing to wait for (no await needed), else a wait until the requests are answered. */
  yieldTo(): Promise<void> | undefined {
    if ((this.active === 0 && this.afterglow === undefined) || Date.now() < this.coolDownUntil) return undefined;
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(() => {
        this.coolDownUntil = Date.now() + COOL_DOWN_MS;
        wake();
      }, MAX_WAIT_MS);
      this.waiters.add(wake);
    });
  }

  private release(): void {
    this.afterglow = undefined;
    for (const wake of [...this.waiters]) wake();
  }
}
