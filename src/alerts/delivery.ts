import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import { DeliveryError } from './http.ts';

/** First retry after about this long; each next one doubles, up to MAX_DELAY_MS. */
export const RETRY_BASE_MS = 1000;
const MAX_DELAY_MS = 5 * 60_000;
/** Deliveries waiting behind a stuck one, per channel; beyond it the oldest waiting is dropped (and logged). */
const MAX_WAITING = 100;

export interface ChannelHealth {
  name: string;
  kind: string;
  /** When the first failed attempt since the last delivery that succeeded happened, or null. */
  failing_since: string | null;
  /** That failure's words (an origin, a status code, an SMTP reply: never a URL's token or a header value), or null. */
  last_error: string | null;
}

interface Delivery {
  /** "failure event", "start ping": for logs. */
  what: string;
  attempt: (signal: AbortSignal) => Promise<void>;
}

interface Lane {
  health: ChannelHealth;
  waiting: Delivery[];
  busy: Promise<void> | undefined;
}

/**
 * Sends in the background, never in the caller's way: each channel has its own lane, where
 * deliveries go one after another (a healthchecks /start arrives before its /fail, a failure
 * before its recovered), each retried with exponential backoff and jitter until it succeeds,
 * fails for good (an HTTP 4xx, a missing URL file) or `retryForMs` is spent. A delivery that
 * gives up is logged and reported through onFailed; channels() shows who is failing.
 */
export class Deliveries {
  private readonly lanes = new Map<string, Lane>();
  private readonly stop = new AbortController();
  private readonly log: Logger;
  private readonly retryForMs: () => number;
  private readonly onFailed: (channel: string) => void;
  private readonly baseMs: number;

  constructor(options: { log: Logger; retryForMs: () => number; onFailed?: (channel: string) => void; retryBaseMs?: number }) {
    this.log = options.log;
    this.retryForMs = options.retryForMs;
    this.onFailed = options.onFailed ?? (() => undefined);
    this.baseMs = options.retryBaseMs ?? RETRY_BASE_MS;
  }

  private lane(name: string, kind: string): Lane {
    let lane = this.lanes.get(name);
    if (!lane) {
      lane = { health: { name, kind, failing_since: null, last_error: null }, waiting: [], busy: undefined };
      this.lanes.set(name, lane);
    }
    lane.health.kind = kind;
    return lane;
  }

  /** Queues a delivery on channel `name`'s lane; returns at once. */
  enqueue(name: string, kind: string, what: string, attempt: (signal: AbortSignal) => Promise<void>): void {
    if (this.stop.signal.aborted) {
      this.log.warn({ channel: name }, `${kind} ${name}: not sending the ${what}: notifications are shut down`);
      return;
    }
    const lane = this.lane(name, kind);
    lane.waiting.push({ what, attempt });
    if (lane.waiting.length > MAX_WAITING) {
      const dropped = lane.waiting.shift()!;
      this.log.error({ channel: name }, `${kind} ${name}: ${MAX_WAITING} deliveries wait behind a failing one: dropping the oldest (${dropped.what})`);
      this.onFailed(name);
    }
    lane.busy ??= this.run(lane).finally(() => (lane.busy = undefined));
  }

  private async run(lane: Lane): Promise<void> {
    for (let next = lane.waiting.shift(); next; next = lane.waiting.shift()) await this.deliver(lane, next);
  }

  private async deliver(lane: Lane, delivery: Delivery): Promise<void> {
    const { name, kind } = lane.health;
    const label = `${kind} ${name}`;
    const started = Date.now();
    const budget = this.retryForMs();
    for (let attempt = 1; ; attempt++) {
      try {
        await delivery.attempt(this.stop.signal);
        if (lane.health.failing_since !== null) this.log.info({ channel: name }, `${label}: delivering again (failing since ${lane.health.failing_since})`);
        lane.health.failing_since = null;
        lane.health.last_error = null;
        return;
      } catch (error) {
        const message = errorMessage(error);
        lane.health.failing_since ??= new Date().toISOString();
        lane.health.last_error = message;
        const permanent = error instanceof DeliveryError && error.permanent;
        const delay = Math.min(MAX_DELAY_MS, this.baseMs * 2 ** (attempt - 1)) * (0.5 + Math.random() * 0.5);
        const elapsed = Date.now() - started;
        if (this.stop.signal.aborted || permanent || elapsed + delay > budget) {
          const why = this.stop.signal.aborted ? 'notifications shut down' : permanent ? 'not retried' : `retried for ${Math.round(elapsed / 1000)} s`;
          this.log.error({ channel: name, attempts: attempt, err: message }, `${label}: the ${delivery.what} was not delivered (${attempt} attempt(s), ${why}): ${message}`);
          this.onFailed(name);
          return;
        }
        this.log.warn({ channel: name, attempt, retry_in_ms: Math.round(delay), err: message }, `${label}: ${delivery.what} not delivered, retrying in ${(delay / 1000).toFixed(1)} s: ${message}`);
        try {
          await sleep(delay, undefined, { signal: this.stop.signal });
        } catch {
          // Shut down while waiting: the next turn of the loop gives up.
        }
      }
    }
  }

  /** The delivery state of the channels that had deliveries so far. */
  health(name: string): ChannelHealth | undefined {
    const lane = this.lanes.get(name);
    return lane ? { ...lane.health } : undefined;
  }

  /** Whether anything is being delivered or waits. */
  busy(): boolean {
    return [...this.lanes.values()].some((l) => l.busy !== undefined);
  }

  /** Waits until every lane is empty, up to `ms`: true when it is. Nothing is stopped. */
  async idle(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.busy()) {
      if (Date.now() >= deadline) return false;
      await sleep(10);
    }
    return true;
  }

  /** Waits for every lane to empty, up to `ms`; then stops what is still going (retries end, requests are aborted). */
  async drain(ms: number): Promise<void> {
    const all = () => Promise.all([...this.lanes.values()].map((l) => l.busy).filter((b) => b !== undefined));
    const deadline = Date.now() + ms;
    const timer = new AbortController();
    while (this.busy() && Date.now() < deadline) {
      await Promise.race([all(), sleep(Math.max(0, deadline - Date.now()), undefined, { signal: timer.signal }).catch(() => undefined)]);
    }
    timer.abort();
    this.stop.abort(new Error('notifications shut down'));
    for (const lane of this.lanes.values()) {
      for (const dropped of lane.waiting.splice(0)) this.log.error({ channel: lane.health.name }, `${lane.health.kind} ${lane.health.name}: the ${dropped.what} was not delivered: shutting down`);
    }
    await all();
  }
}
