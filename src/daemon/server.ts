import http from 'node:http';
import { type ErrorDetails, errorDetails, StackbackError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { JobEvent, JobView } from './queue.ts';
import type { ForegroundActivity } from './foreground.ts';
import type { StatusDocument } from './status.ts';

/**
 * The control channel: HTTP/1.1 over a Unix socket, JSON in and out, errors as
 * `{"error":{"code","message"}}`. Routes only parse and answer; the daemon does the work.
 * Nothing a client sends can crash the daemon: every handler error becomes a 4xx/5xx.
 *
 * The daemon listens twice with the same routes: on the read-only socket, which monitoring
 * and operators in the socket's group use, every route that starts a job or changes
 * anything answers 403; the admin socket (root or the daemon's user) serves them all.
 */
export interface ControlApi {
  status(): StatusDocument;
  listBackups(): unknown;
  getBackup(name: string): unknown;
  /** The run history, newest first (at most `limit` runs). */
  history(limit: number): unknown;
  /** One page of the backups, newest first, filtered (GET /api/backups). */
  backupPage(query: URLSearchParams): unknown;
  /** One page of the runs, newest first, filtered (GET /api/runs). */
  runPage(query: URLSearchParams): unknown;
  /** Series for the dashboard's charts (GET /api/charts). */
  charts(): unknown;
  /** The running config without secrets, and what a check of the file on disk says (GET /api/config). */
  configView(): unknown;
  submitBackup(body: Record<string, unknown>): { job: JobView; collapsed: boolean };
  submitRestore(name: string, body: Record<string, unknown>): { job: JobView; collapsed: boolean };
  submitVerify(name: string, level: string | null, remote: string | null): { job: JobView; collapsed: boolean };
  submitDelete(name: string): { job: JobView; collapsed: boolean };
  submitPrune(dryRun: boolean): { job: JobView; collapsed: boolean };
  /** Body: { remotes?: string[], backups?: string[] } (absent or empty: all). */
  submitCopy(body: Record<string, unknown>): { job: JobView; collapsed: boolean };
  jobs(): JobView[];
  job(id: number): JobView | undefined;
  subscribe(id: number, listener: (event: JobEvent) => void): () => void;
  cancel(id: number): boolean;
  reload(): { ok: true } | { ok: false; problems: string[] };
  /** The Prometheus exposition (text format 0.0.4) for `GET /metrics`. */
  metrics(): Promise<string>;
}

const MAX_BODY_BYTES = 64 * 1024;

/** Error codes and the HTTP status that goes with them. */
function httpStatus(error: ErrorDetails): number {
  switch (error.code) {
    case 'BAD_REQUEST':
    case 'USAGE':
    case 'BACKUP_NAME_INVALID':
    case 'CONFIG_INVALID':
      return 400;
    case 'NOT_FOUND':
    case 'BACKUP_NOT_FOUND':
    case 'REMOTE_NOT_FOUND':
      return 404;
    case 'UNAUTHORIZED':
      return 401;
    case 'FORBIDDEN':
      return 403;
    case 'METHOD_NOT_ALLOWED':
      return 405;
    case 'BODY_TOO_LARGE':
      return 413;
    case 'QUEUE_FULL':
    case 'RATE_LIMITED':
      return 429;
    case 'DAEMON_STOPPING':
    case 'TOO_MANY_CONNECTIONS':
      return 503;
    default:
      return 500;
  }
}

function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new StackbackError('BAD_REQUEST', `malformed %-escape in the path: ${part}`);
  }
}

/** `GET /metrics`: Prometheus' text format, on both sockets (it reads only). */
const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function sendMetrics(response: http.ServerResponse, text: string): void {
  response.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  response.end(text);
}

export function send(response: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

/** Past this much, an oversized body is no longer drained but the connection dropped. */
const MAX_DRAIN_BYTES = 16 * 1024 * 1024;

async function readJson(request: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    // Keep reading (and dropping) an oversized body, so the client gets the 413 instead of a reset.
    if (size > MAX_DRAIN_BYTES) request.destroy();
    if (size <= MAX_BODY_BYTES) chunks.push(chunk);
  }
  if (size > MAX_BODY_BYTES) throw new StackbackError('BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`);
  if (size === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw new StackbackError('BAD_REQUEST', `the request body is not valid JSON: ${(error as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new StackbackError('BAD_REQUEST', 'the request body must be a JSON object');
  return value as Record<string, unknown>;
}

type Handler = (match: RegExpExecArray, request: http.IncomingMessage, response: http.ServerResponse, url: URL) => Promise<void> | void;

const EVENTS_ROUTE = /^\/api\/jobs\/(\d+)\/events$/;

/** Which routes a listener serves: `read` only those that change nothing. */
export type SocketRole = 'read' | 'admin';

export interface ListenerOptions {
  role: SocketRole;
  /** Named in the 403 of the read-only socket, so the client knows where to go. */
  adminSocket: string;
  /** Connections served at once; more get a 503 with Retry-After, and past twice as many none are accepted. */
  maxConnections: number;
}

/** Who is asking, as the listener that took the request judged it. */
export interface Caller {
  /** Whether this caller may use a route that starts a job or changes the daemon (the admin socket: all; the dashboard: a few, with web.allow_actions). */
  mayAct(method: string, path: string): boolean;
  /** The 403 message when it may not (it says where to go instead). */
  refusal(method: string, path: string): string;
}

/** Seconds a client turned away for too many connections is told to wait. */
const RETRY_AFTER_SECONDS = 1;

export type ControlHandler = (request: http.IncomingMessage, response: http.ServerResponse, url: URL, caller: Caller) => Promise<void>;

/**
 * The control API's routes, for any listener: the two sockets and the dashboard serve this
 * one implementation. Every error becomes a JSON `{"error"}` answer with its status.
 */
export function controlHandler(api: ControlApi, log: Logger): ControlHandler {
  // [method, path, changes something, handler]
  const routes: [string, RegExp, boolean, Handler][] = [
    ['GET', /^\/api\/backup\/status$/, false, (_m, _q, res) => send(res, 200, api.status())],
    ['GET', /^\/api\/backup\/list$/, false, (_m, _q, res) => send(res, 200, api.listBackups())],
    ['POST', /^\/api\/backup\/create$/, true, async (_m, req, res) => send(res, 202, api.submitBackup(await readJson(req)))],
    ['POST', /^\/api\/backup\/restore\/([^/]+)$/, true, async (m, req, res) => send(res, 202, api.submitRestore(decodePathPart(m[1]!), await readJson(req)))],
    // A GET, but it starts a job that holds the repository and (as a drill) restores into scratch databases.
    ['GET', /^\/api\/backup\/verify\/([^/]+)$/, true, (m, _q, res, url) => send(res, 202, api.submitVerify(decodePathPart(m[1]!), url.searchParams.get('level'), url.searchParams.get('remote')))],
    ['DELETE', /^\/api\/backup\/([^/]+)$/, true, (m, _q, res) => send(res, 202, api.submitDelete(decodePathPart(m[1]!)))],
    ['GET', /^\/api\/backup\/([^/]+)$/, false, (m, _q, res) => send(res, 200, api.getBackup(decodePathPart(m[1]!)))],
    ['GET', /^\/api\/backups$/, false, (_m, _q, res, url) => send(res, 200, api.backupPage(url.searchParams))],
    ['GET', /^\/api\/history$/, false, (_m, _q, res, url) => send(res, 200, api.history(Number(url.searchParams.get('limit') ?? 30)))],
    ['GET', /^\/api\/runs$/, false, (_m, _q, res, url) => send(res, 200, api.runPage(url.searchParams))],
    ['GET', /^\/api\/charts$/, false, (_m, _q, res) => send(res, 200, api.charts())],
    ['GET', /^\/api\/config$/, false, (_m, _q, res) => send(res, 200, api.configView())],
    ['GET', /^\/api\/jobs$/, false, (_m, _q, res) => send(res, 200, api.jobs())],
    ['GET', /^\/api\/jobs\/(\d+)$/, false, (m, _q, res) => send(res, 200, jobOr404(api, Number(m[1])))],
    ['GET', EVENTS_ROUTE, false, (m, req, res) => streamEvents(api, Number(m[1]), req, res)],
    ['POST', /^\/api\/jobs\/(\d+)\/cancel$/, true, (m, _q, res) => {
      jobOr404(api, Number(m[1]));
      send(res, 200, { cancelled: api.cancel(Number(m[1])) });
    }],
    ['POST', /^\/api\/retention\/apply$/, true, (_m, _q, res, url) => send(res, 202, api.submitPrune(['1', 'true'].includes(url.searchParams.get('dry_run') ?? '')))],
    ['POST', /^\/api\/copy$/, true, async (_m, req, res) => send(res, 202, api.submitCopy(await readJson(req)))],
    ['GET', /^\/metrics$/, false, async (_m, _q, res) => sendMetrics(res, await api.metrics())],
    ['POST', /^\/api\/config\/reload$/, true, (_m, _q, res) => {
      const result = api.reload();
      if (result.ok) send(res, 200, result);
      else send(res, 400, { error: { code: 'CONFIG_INVALID', message: 'the new config is invalid; the old one keeps running', problems: result.problems } });
    }],
  ];
  return async (request, response, url, caller) => {
    try {
      const matching = routes.filter(([, pattern]) => pattern.test(url.pathname));
      if (matching.length === 0) throw new StackbackError('NOT_FOUND', `no route ${request.method} ${url.pathname}`);
      const route = matching.find(([method]) => method === request.method);
      if (!route) {
        response.setHeader('allow', matching.map(([method]) => method).join(', '));
        throw new StackbackError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${url.pathname}`);
      }
      const [, pattern, acts, handler] = route;
      if (acts && !caller.mayAct(request.method ?? 'GET', url.pathname)) throw new StackbackError('FORBIDDEN', caller.refusal(request.method ?? 'GET', url.pathname));
      await handler(pattern.exec(url.pathname)!, request, response, url);
    } catch (error) {
      answerError(response, error, log, `control request ${url.pathname}`);
    }
  };
}

/**
 * A failed request's answer: `{"error"}` with the status its code maps to (a stream already
 * under way is cut off instead); server-side failures are logged, naming `what`.
 */
export function answerError(response: http.ServerResponse, error: unknown, log: Logger, what: string): void {
  const details = errorDetails(error);
  const status = httpStatus(details);
  if (status >= 500) log.error({ err: details.message }, `${what} failed: ${details.message}`);
  if (response.headersSent) response.destroy();
  else send(response, status, { error: details });
}

/** Whether a request for `path` holds up background work while it is served (progress streams do not: they last as long as their job). */
export function isForegroundRequest(path: string): boolean {
  return !EVENTS_ROUTE.test(path);
}

export function createControlServer(api: ControlApi, log: Logger, foreground: ForegroundActivity, listener: ListenerOptions): http.Server {
  const handle = controlHandler(api, log);
  const caller: Caller = {
    mayAct: () => listener.role === 'admin',
    refusal: (method, path) => `${method} ${path} starts a job or changes the daemon: it needs the admin socket ${listener.adminSocket}; this socket is read-only`,
  };
  // Connections past the limit are still answered (a 503 the client can act on), each once.
  let open = 0;
  const turnedAway = new WeakSet<object>();
  // Bodies here are small JSON: a client that takes longer than this to send its request is stuck.
  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://stackback');
    if (turnedAway.has(request.socket)) {
      response.setHeader('retry-after', String(RETRY_AFTER_SECONDS));
      response.shouldKeepAlive = false;
      send(response, 503, { error: { code: 'TOO_MANY_CONNECTIONS', message: `this socket already serves ${listener.maxConnections} connections (control.max_connections); try again shortly` } });
      return;
    }
    if (isForegroundRequest(url.pathname)) response.once('close', foreground.enter());
    await handle(request, response, url, caller);
  });
  server.on('connection', (socket) => {
    open += 1;
    if (open > listener.maxConnections) turnedAway.add(socket);
    socket.once('close', () => (open -= 1));
  });
  // A client that opens connections and sends nothing would hold one file descriptor each until headersTimeout.
  server.maxConnections = 2 * listener.maxConnections;
  return server;
}

function jobOr404(api: ControlApi, id: number): JobView {
  const job = api.job(id);
  if (!job) throw new StackbackError('NOT_FOUND', `no job ${id} (finished jobs are kept for the last 200)`);
  return job;
}

/** NDJSON: the job's state now, then every event, until the job has finished. */
function streamEvents(api: ControlApi, id: number, request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
  const job = jobOr404(api, id);
  response.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  const write = (event: JobEvent) => response.write(`${JSON.stringify(event)}\n`);
  const done = (state: string) => state !== 'queued' && state !== 'running';
  write({ job: id, time: new Date().toISOString(), state: job.state, ...(job.progress ? { progress: job.progress } : {}), ...(job.result !== null ? { result: job.result } : {}), ...(job.error ? { error: job.error } : {}) });
  if (done(job.state)) {
    response.end();
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const unsubscribe = api.subscribe(id, (event) => {
      write(event);
      if (done(event.state)) finish();
    });
    const finish = () => {
      unsubscribe();
      response.end();
      resolve();
    };
    request.on('close', finish);
  });
}
