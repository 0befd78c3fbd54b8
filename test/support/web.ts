// Talks to the daemon's web dashboard over HTTP on loopback, as a browser or a script would.
import { readFile } from 'node:fs/promises';

export interface WebResponse {
  status: number;
  headers: Headers;
  text: string;
  json<T = unknown>(): T;
}

export interface WebCredentials {
  cookie?: string;
  bearer?: string;
  csrf?: string;
}

/** One request to the dashboard at `base` (http://127.0.0.1:PORT); no redirects followed. */
export async function webRequest(base: string, method: string, path: string, options: WebCredentials & { body?: unknown; form?: Record<string, string>; headers?: Record<string, string> } = {}): Promise<WebResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.cookie) headers.cookie = options.cookie;
  if (options.bearer) headers.authorization = `Bearer ${options.bearer}`;
  if (options.csrf) headers['x-csrf-token'] = options.csrf;
  let body: string | undefined;
  if (options.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(options.form).toString();
  } else if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  const response = await fetch(`${base}${path}`, { method, headers, body, redirect: 'manual' });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, json: <T>() => JSON.parse(text) as T };
}

/** Signs in with the token in `tokenFile`: the session cookie ("name=value") and its CSRF token. */
export async function signIn(base: string, tokenFile: string): Promise<{ cookie: string; csrf: string }> {
  const token = (await readFile(tokenFile, 'utf8')).trim();
  const login = await webRequest(base, 'POST', '/login', { form: { token } });
  if (login.status !== 303) throw new Error(`sign-in answered ${login.status}: ${login.text}`);
  const cookie = /^([^;]+)/.exec(login.headers.get('set-cookie') ?? '')![1]!;
  const session = await webRequest(base, 'GET', '/api/session', { cookie });
  return { cookie, csrf: session.json<{ csrf_token: string }>().csrf_token };
}
