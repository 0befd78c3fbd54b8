import { randomBytes, timingSafeEqual } from 'node:crypto';

export interface Session {
  id: string;
  /** Sent back in X-CSRF-Token by every request that changes something. */
  csrf: string;
  expiresAt: number;
}

/** Sessions kept at once; past this the oldest sign-in is dropped (a flood of logins cannot grow memory). */
const MAX_SESSIONS = 1_000;

/**
 * The dashboard's sign-ins, in memory: a restart of the daemon signs everybody out, which
 * is the safe direction. A session is a random 256-bit id in an HttpOnly cookie, with its
 * own CSRF token and an absolute expiry; expired ones are dropped when met.
 */
export class Sessions {
  private readonly sessions = new Map<string, Session>();

  create(ttlMs: number, now = Date.now()): Session {
    for (const [id, session] of this.sessions) if (session.expiresAt <= now) this.sessions.delete(id);
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const session = { id: randomBytes(32).toString('base64url'), csrf: randomBytes(32).toString('base64url'), expiresAt: now + ttlMs };
    this.sessions.set(session.id, session);
    return session;
  }

  /** The live session with this id, or undefined (unknown, forged or expired). */
  get(id: string, now = Date.now()): Session | undefined {
    const session = this.sessions.get(id);
    if (!session) return undefined;
    if (session.expiresAt <= now) {
      this.sessions.delete(id);
      return undefined;
    }
    return session;
  }

  delete(id: string): void {
    this.sessions.delete(id);
  }

  /** Signs everybody out (the token was rotated). */
  clear(): void {
    this.sessions.clear();
  }
}

/** Whether `sent` is the session's CSRF token (constant time). */
export function csrfMatches(session: Session, sent: string | undefined): boolean {
  if (sent === undefined) return false;
  const expected = Buffer.from(session.csrf);
  const actual = Buffer.from(sent);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** Wrong tokens one client address may try per window, and all addresses together. */
export const FAILURES_PER_CLIENT = 5;
const FAILURES_OVERALL = 50;
const WINDOW_MS = 60_000;
const MAX_CLIENTS_TRACKED = 10_000;

/**
 * Rate limit of wrong tokens: FAILURES_PER_CLIENT per client address per minute, and
 * FAILURES_OVERALL from everybody (many addresses, or a proxy in front hiding them). A
 * client over its limit is refused before its token is even compared.
 */
export class LoginLimiter {
  private readonly clients = new Map<string, { since: number; failures: number }>();
  private overall = { since: 0, failures: 0 };

  /** Milliseconds until `client` may try again, or 0 when it may now. */
  retryAfter(client: string, now = Date.now()): number {
    const entry = this.clients.get(client);
    const own = entry && now - entry.since < WINDOW_MS && entry.failures >= FAILURES_PER_CLIENT ? entry.since + WINDOW_MS - now : 0;
    const all = now - this.overall.since < WINDOW_MS && this.overall.failures >= FAILURES_OVERALL ? this.overall.since + WINDOW_MS - now : 0;
    return Math.max(own, all);
  }

  failed(client: string, now = Date.now()): void {
    const entry = this.clients.get(client);
    if (entry && now - entry.since < WINDOW_MS) entry.failures += 1;
    else {
      if (this.clients.size >= MAX_CLIENTS_TRACKED) this.clients.delete(this.clients.keys().next().value!);
      this.clients.delete(client);
      this.clients.set(client, { since: now, failures: 1 });
    }
    if (now - this.overall.since < WINDOW_MS) this.overall.failures += 1;
    else this.overall = { since: now, failures: 1 };
  }

  succeeded(client: string): void {
    this.clients.delete(client);
  }
}
