import http from 'node:http';
import { StackbackError } from '../errors.ts';
import type { JobEvent } from './queue.ts';

/**
 * The client side of the control channel (used by the CLI, and by a starting daemon to see
 * whether another one already answers on the socket).
 */
export interface DaemonResponse {
  status: number;
  body: unknown;
}

export function daemonRequest(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<DaemonResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const request = http.request(
      { socketPath, method, path, timeout: timeoutMs, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {} },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: response.statusCode ?? 0, body: text ? JSON.parse(text) : null });
          } catch {
            reject(new StackbackError('DAEMON_UNREACHABLE', `the daemon on ${socketPath} answered ${method} ${path} with something that is not JSON`));
          }
        });
      },
    );
    request.on('timeout', () => request.destroy(new StackbackError('DAEMON_UNREACHABLE', `the daemon on ${socketPath} did not answer ${method} ${path} within ${timeoutMs} ms`)));
    request.on('error', reject);
    request.end(payload);
  });
}

/** Follows a job's NDJSON event stream until the job ends; resolves with the last event. */
export function followJob(socketPath: string, id: number, onEvent: (event: JobEvent) => void): Promise<JobEvent> {
  return new Promise((resolve, reject) => {
    const request = http.request({ socketPath, method: 'GET', path: `/api/jobs/${id}/events` }, (response) => {
      let buffer = '';
      let last: JobEvent | undefined;
      response.setEncoding('utf8');
      response.on('data', (text: string) => {
        buffer += text;
        let newline: number;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (!line.trim()) continue;
          last = JSON.parse(line) as JobEvent;
          onEvent(last);
        }
      });
      response.on('end', () => (last ? resolve(last) : reject(new StackbackError('DAEMON_UNREACHABLE', `the event stream of job ${id} ended without news`))));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}
