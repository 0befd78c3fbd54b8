// The dashboard's only way to the server: same-origin fetches of the JSON API. The types are
// the server's own (type-only imports: nothing of the server ends up in the bundle).
import type { RunRow } from '../../catalog/catalog.ts';
import type { BackupDetail, ChartSeries, ListedBackup, Page, RestoreCommand } from '../../catalog/views.ts';
import type { JobEvent, JobView } from '../../daemon/queue.ts';
import type { StatusDocument } from '../../daemon/status.ts';
import type { ArtifactVerdict } from '../../jobs/verify.ts';

export type { ArtifactVerdict, BackupDetail, ChartSeries, JobEvent, JobView, ListedBackup, RestoreCommand, RunRow, StatusDocument };
export type BackupPage = Page & { backups: ListedBackup[] };
export type RunPage = Page & { runs: RunRow[] };

/** GET /api/session (csrf_token and expires_at are null only for a bearer token, which a browser never has). */
export interface Session {
  csrf_token: string | null;
  allow_actions: boolean;
  timezone: string;
  expires_at: string | null;
  version: string;
}

/**
 * GET /api/config, as src/daemon/config-view.ts has it (not imported: that module pulls in
 * every source's code, which needs a newer lib than this page's).
 */
export interface ConfigView {
  file: string;
  effective: unknown;
  check: { ok: boolean; problems: string[]; sources: string[] };
}

/** What an action answers: the job it queued, or the identical one already waiting (collapsed). */
export interface Submitted {
  job: JobView;
  collapsed: boolean;
}

export class ApiError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  constructor(code: string, message: string, hint?: string) {
    super(message);
    this.code = code;
    this.hint = hint;
  }
}

let csrfToken = '';

/** An expired session: the server answers the reload with its login page. Never settles. */
function sessionExpired(): Promise<never> {
  location.reload();
  return new Promise(() => {});
}

async function send(method: string, path: string, options: { body?: unknown; signal?: AbortSignal | undefined; csrf?: boolean } = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (options.csrf) headers['x-csrf-token'] = csrfToken;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers,
    signal: options.signal ?? null,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  if (response.status === 401) return sessionExpired();
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response: Response): Promise<ApiError> {
  try {
    const { error } = (await response.json()) as { error?: { code?: string; message?: string; hint?: string } };
    if (error?.message) return new ApiError(error.code ?? `HTTP_${response.status}`, error.message, error.hint);
  } catch {
    // not JSON: a proxy's page, say
  }
  return new ApiError(`HTTP_${response.status}`, `the server answered ${response.status} ${response.statusText}`.trim());
}

export async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  return (await (await send('GET', path, { signal })).json()) as T;
}

/** A state-changing call (CSRF header; verify is a GET that starts a job). */
export async function act<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const response = await send(method, path, { body, csrf: true });
  return (response.status === 204 ? undefined : await response.json()) as T;
}

export async function loadSession(): Promise<Session> {
  const session = await get<Session>('/api/session');
  csrfToken = session.csrf_token ?? '';
  return session;
}

/** `?a=1&b=2` from the set values of `params` (empty and undefined ones left out). */
export function query(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== '') search.set(key, String(value));
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** A job's events (NDJSON), the current state first, until the job has finished or `signal` aborts. */
export async function* jobEvents(id: number, signal: AbortSignal): AsyncGenerator<JobEvent> {
  const response = await send('GET', `/api/jobs/${id}/events`, { signal });
  if (!response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) yield JSON.parse(line) as JobEvent;
    }
    if (buffered.trim()) yield JSON.parse(buffered) as JobEvent;
  } finally {
    reader.cancel().catch(() => {});
  }
}
