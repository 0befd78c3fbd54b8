import http from 'node:http';
import { StackbackError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ForegroundActivity } from '../daemon/foreground.ts';
import { answerError, type Caller, type ControlHandler, isForegroundRequest, send } from '../daemon/server.ts';
import { asset, type AssetName } from './assets.ts';
import { appPage, loginPage } from './pages.ts';
import { csrfMatches, type LoginLimiter, type Session, type Sessions } from './sessions.ts';
import type { WebToken } from './token.ts';

/** What the dashboard's listener needs of the daemon, read per request (a reload changes it). */
export interface WebSettings {
  allowActions: boolean;
  sessionTtlMs: number;
  timezone: string;
  version: string;
}

export interface WebServerOptions {
  /** The control API's routes: the dashboard serves the same implementation as the sockets. */
  handle: ControlHandler;
  log: Logger;
  foreground: ForegroundActivity;
  settings: () => WebSettings;
  token: () => WebToken;
  sessions: Sessions;
  limiter: LoginLimiter;
}

export const SESSION_COOKIE = 'stackback_session';
/** Connections the dashboard serves at once. */
const MAX_CONNECTIONS = 64;
const MAX_LOGIN_BODY = 4096;

/** The routes the page may act through with web.allow_actions; restores, deletes, prunes and reloads stay with the CLI. */
const PAGE_ACTIONS = [/^\/api\/backup\/create$/, /^\/api\/backup\/verify\/[^/]+$/, /^\/api\/copy$/, /^\/api\/jobs\/\d+\/cancel$/];

/** Sent with every answer: no inline script, no framing, no referrer, nothing from elsewhere. */
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
};

/** How a request proved itself: a session cookie (then actions need its CSRF token) or the bearer token (a script). */
type Identity = { via: 'session'; session: Session } | { via: 'bearer' };

function cookie(request: http.IncomingMessage, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=');
  }
  return undefined;
}

function html(response: http.ServerResponse, status: number, text: string, headers: http.OutgoingHttpHeaders = {}): void {
  response.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  response.end(text);
}

function serveAsset(request: http.IncomingMessage, response: http.ServerResponse, name: AssetName): void {
  const file = asset(name);
  if (request.headers['if-none-match'] === file.etag) {
    response.writeHead(304, { etag: file.etag, 'cache-control': 'no-cache' });
    response.end();
    return;
  }
  const gzip = /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
  const body = gzip ? file.gzipped : file.body;
  response.writeHead(200, { 'content-type': file.contentType, 'content-length': body.length, etag: file.etag, 'cache-control': 'no-cache', vary: 'accept-encoding', ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
  response.end(body);
}

async function readLoginToken(request: http.IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of request as AsyncIterable<Buffer>) {
    text += chunk.toString('utf8');
    if (text.length > MAX_LOGIN_BODY) throw new StackbackError('BODY_TOO_LARGE', `a sign-in is at most ${MAX_LOGIN_BODY} bytes`);
  }
  if (String(request.headers['content-type'] ?? '').startsWith('application/json')) {
    try {
      const value = JSON.parse(text) as { token?: unknown };
      return typeof value.token === 'string' ? value.token : '';
    } catch {
      return '';
    }
  }
  return new URLSearchParams(text).get('token') ?? '';
}

/**
 * The dashboard's HTTP listener: sign-in, sessions, the CSRF rule, security headers, the
 * page and its assets; every /api route and /metrics are the control API's own handler with
 * a caller that may act only through PAGE_ACTIONS, only with web.allow_actions, and (for a
 * session) only with its CSRF token.
 */
export function createWebServer(options: WebServerOptions): http.Server {
  const { handle, log, foreground, settings, sessions, limiter } = options;

  const unauthorized = (request: http.IncomingMessage, response: http.ServerResponse, url: URL, message: string) => {
    if (url.pathname === '/' && request.method === 'GET') html(response, 401, loginPage(undefined));
    else {
      response.setHeader('www-authenticate', 'Bearer realm="stackback"');
      send(response, 401, { error: { code: 'UNAUTHORIZED', message, hint: 'sign in at / with the token in web.token_file, or send Authorization: Bearer <token>' } });
    }
  };

  const rateLimited = (response: http.ServerResponse, waitMs: number, page: boolean) => {
    const seconds = Math.ceil(waitMs / 1000);
    response.setHeader('retry-after', String(seconds));
    const message = `too many wrong tokens: try again in ${seconds} s`;
    if (page) html(response, 429, loginPage(message));
    else send(response, 429, { error: { code: 'RATE_LIMITED', message } });
  };

  const login = async (request: http.IncomingMessage, response: http.ServerResponse, client: string) => {
    const wait = limiter.retryAfter(client);
    if (wait > 0) {
      request.resume();
      return rateLimited(response, wait, true);
    }
    const candidate = await readLoginToken(request);
    if (!options.token().matches(candidate)) {
      limiter.failed(client);
      log.warn({ client }, `dashboard sign-in with a wrong token from ${client}`);
      return html(response, 401, loginPage('That token is not right.'));
    }
    limiter.succeeded(client);
    const { sessionTtlMs } = settings();
    const session = sessions.create(sessionTtlMs);
    const secure = request.headers['x-forwarded-proto'] === 'https' ? '; Secure' : '';
    response.writeHead(303, {
      location: '/',
      'set-cookie': `${SESSION_COOKIE}=${session.id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(sessionTtlMs / 1000)}${secure}`,
      'cache-control': 'no-store',
      'content-length': 0,
    });
    response.end();
    log.info({ client }, `dashboard sign-in from ${client}`);
  };

  /** The identity a request proves, or the reason it proves none. */
  const identify = (request: http.IncomingMessage, client: string): Identity | { refused: string; waitMs?: number } => {
    const authorization = request.headers.authorization;
    if (authorization !== undefined) {
      const wait = limiter.retryAfter(client);
      if (wait > 0) return { refused: 'rate limited', waitMs: wait };
      const bearer = /^Bearer (\S+)$/i.exec(authorization)?.[1];
      if (bearer !== undefined && options.token().matches(bearer)) return { via: 'bearer' };
      limiter.failed(client);
      return { refused: 'the bearer token is not right' };
    }
    const id = cookie(request, SESSION_COOKIE);
    const session = id === undefined ? undefined : sessions.get(id);
    if (session) return { via: 'session', session };
    return { refused: id === undefined ? 'sign in first' : 'the session has expired or is unknown: sign in again' };
  };

  const callerFor = (identity: Identity, request: http.IncomingMessage): Caller => {
    const csrfOk = identity.via === 'bearer' || csrfMatches(identity.session, request.headers['x-csrf-token'] as string | undefined);
    return {
      mayAct: (_method, path) => settings().allowActions && csrfOk && PAGE_ACTIONS.some((route) => route.test(path)),
      refusal: (method, path) => {
        if (!PAGE_ACTIONS.some((route) => route.test(path))) return `${method} ${path} is not served to the dashboard: restores, deletes, prunes and reloads run from the CLI or the admin socket`;
        if (!settings().allowActions) return `${method} ${path} starts a job: the dashboard only reads (web.allow_actions is false)`;
        return `${method} ${path} needs the session's CSRF token in the X-CSRF-Token header (GET /api/session gives it)`;
      },
    };
  };

  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, async (request, response) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) response.setHeader(name, value);
    const url = new URL(request.url ?? '/', 'http://stackback');
    const client = request.socket.remoteAddress ?? 'unknown';
    if (isForegroundRequest(url.pathname)) response.once('close', foreground.enter());
    try {
      if (url.pathname === '/assets/login.css' && request.method === 'GET') return serveAsset(request, response, 'login.css');
      if (url.pathname === '/login' && request.method === 'POST') return await login(request, response, client);
      const identity = identify(request, client);
      if ('refused' in identity) {
        request.resume();
        if (identity.waitMs !== undefined) return rateLimited(response, identity.waitMs, false);
        return unauthorized(request, response, url, identity.refused);
      }
      if (url.pathname === '/' && request.method === 'GET') return html(response, 200, appPage());
      if (url.pathname === '/assets/app.js' && request.method === 'GET') return serveAsset(request, response, 'app.js');
      if (url.pathname === '/assets/app.css' && request.method === 'GET') return serveAsset(request, response, 'app.css');
      if (url.pathname === '/api/session' && request.method === 'GET') {
        const { allowActions, timezone, version } = settings();
        return send(response, 200, {
          csrf_token: identity.via === 'session' ? identity.session.csrf : null,
          allow_actions: allowActions,
          timezone,
          expires_at: identity.via === 'session' ? new Date(identity.session.expiresAt).toISOString() : null,
          version,
        });
      }
      if (url.pathname === '/logout' && request.method === 'POST') {
        if (identity.via === 'session') {
          if (!csrfMatches(identity.session, request.headers['x-csrf-token'] as string | undefined)) throw new StackbackError('FORBIDDEN', 'signing out needs the session\'s CSRF token in the X-CSRF-Token header');
          sessions.delete(identity.session.id);
        }
        response.writeHead(204, { 'set-cookie': `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`, 'cache-control': 'no-store' });
        return response.end();
      }
      if (url.pathname.startsWith('/api/') || url.pathname === '/metrics') {
        response.setHeader('cache-control', 'no-store');
        return await handle(request, response, url, callerFor(identity, request));
      }
      throw new StackbackError('NOT_FOUND', `no page ${request.method} ${url.pathname}`);
    } catch (error) {
      answerError(response, error, log, `dashboard request ${url.pathname}`);
    }
  });
  server.maxConnections = MAX_CONNECTIONS;
  return server;
}
