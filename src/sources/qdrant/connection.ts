import type { QdrantClient } from '@qdrant/js-client-rest';
import type { QdrantSourceConfig } from '../../config/load.ts';
import { StackbackError } from '../../errors.ts';
import { secretFromFile } from '../secret-file.ts';

/**
 * How stackback reaches one Qdrant server: the official client for the calls it covers,
 * plain fetch for snapshot download and upload (the client has no streaming helpers).
 * The API key is read from its file once and sent only as the `api-key` header.
 */
export class QdrantServer {
  readonly config: QdrantSourceConfig;
  private readonly apiKey: () => string | undefined;
  private cachedClient: QdrantClient | undefined;

  constructor(config: QdrantSourceConfig) {
    this.config = config;
    this.apiKey = secretFromFile(config.apiKeyFile, 'api_key_file', config.name);
  }

  describe(): string {
    return `qdrant source ${this.config.name} (${this.config.url})`;
  }

  /** Loaded on first use: the client library costs ~50 ms of start-up that PostgreSQL-only setups should not pay. */
  async client(): Promise<QdrantClient> {
    const { QdrantClient } = await import('@qdrant/js-client-rest');
    const apiKey = this.apiKey();
    // Our own version check replaces the client's, which only prints a warning.
    this.cachedClient ??= new QdrantClient({ url: this.config.url, timeout: this.config.timeoutMs, checkCompatibility: false, ...(apiKey ? { apiKey } : {}) });
    return this.cachedClient;
  }

  /** fetch with the key and the timeout; non-2xx answers become errors naming the server. */
  async fetch(path: string, what: string, init: RequestInit = {}): Promise<Response> {
    const apiKey = this.apiKey();
    const headers = new Headers(init.headers);
    if (apiKey) headers.set('api-key', apiKey);
    // The timeout covers waiting for the answer, not streaming its body (a big snapshot may
    // take longer than any sensible API timeout; a stalled stream is the stall watchdog's job).
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(Object.assign(new Error('timeout'), { name: 'TimeoutError' })), this.config.timeoutMs);
    let response: Response;
    try {
      response = await fetch(`${this.config.url}${path}`, { ...init, headers, signal: init.signal ? AbortSignal.any([init.signal, timeout.signal]) : timeout.signal });
    } catch (error) {
      throw this.explain(error, what);
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) {
      const text = await response.text().catch(() => '');
      throw this.explain({ status: response.status, data: parseBody(text) }, what);
    }
    return response;
  }

  /** The server's version from GET / (open without a key). */
  async version(): Promise<string> {
    const response = await this.fetch('/', 'reading the server version');
    const body = (await response.json()) as { version?: string };
    if (typeof body.version !== 'string') throw new StackbackError('QDRANT_FAILED', `${this.describe()} did not report its version on GET /`);
    return body.version;
  }

  /** Turns a client or fetch failure into an error that names the server and what was being done. */
  explain(error: unknown, what: string): StackbackError {
    const where = this.describe();
    const e = error as { status?: number; data?: unknown; message?: string; cause?: { code?: string }; name?: string };
    const message = serverMessage(e.data) ?? e.message ?? String(error);
    if (e.status === 401 || e.status === 403) {
      return new StackbackError('QDRANT_AUTH', `${what} on ${where} was refused (${e.status}): ${message}`, 'check api_key_file; restores need a key with manage access');
    }
    if (e.status === 404) return new StackbackError('QDRANT_NOT_FOUND', `${what} on ${where}: ${message}`);
    if (e.status !== undefined) return new StackbackError('QDRANT_FAILED', `${what} on ${where} failed (${e.status}): ${message}`);
    const code = e.cause?.code;
    if (e.name === 'TimeoutError' || e.name === 'QdrantClientTimeoutError') {
      return new StackbackError('QDRANT_CONNECT', `${what} on ${where} timed out after ${Math.round(this.config.timeoutMs / 1000)} s`, 'raise the source\'s timeout for big collections');
    }
    if (code) return new StackbackError('QDRANT_CONNECT', `cannot reach ${where} (${what}): ${code}`, 'is Qdrant running, and is url right?');
    return new StackbackError('QDRANT_FAILED', `${what} on ${where} failed: ${message}`);
  }
}

function parseBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The error text of a Qdrant answer: the JSON envelope's status.error, or a plain-text body. */
function serverMessage(data: unknown): string | undefined {
  if (typeof data === 'string' && data.trim() !== '') return data.trim();
  const error = (data as { status?: { error?: string } } | undefined)?.status?.error;
  return typeof error === 'string' ? error : undefined;
}
