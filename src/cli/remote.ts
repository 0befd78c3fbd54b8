import { type ErrorCode, StackbackError } from '../errors.ts';
import type { Config } from '../config/load.ts';
import { daemonRequest, followJob } from '../daemon/client.ts';
import type { JobEvent, JobView } from '../daemon/queue.ts';
import { formatBytes, printJson, printLine } from './output.ts';

/**
 * The CLI's side of the daemon: when the daemon answers on its socket, commands that touch
 * the repository run as daemon jobs (one queue, no lock fights) and the CLI follows them.
 */

/** The daemon's socket if a daemon answers there; undefined when none runs (the CLI then works locally). */
export async function findDaemon(config: Config): Promise<string | undefined> {
  try {
    await daemonRequest(config.control.socket, 'GET', '/api/backup/status', undefined, 2000);
    return config.control.socket;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') return undefined;
    if (code === 'EACCES') {
      throw new StackbackError('DAEMON_UNREACHABLE', `a daemon runs, but this user may not use its socket ${config.control.socket}`, 'run as the stackback user or a member of control.socket_group');
    }
    throw error;
  }
}

function remoteError(body: unknown, fallback: string): StackbackError {
  const error = (body as { error?: { code?: string; message?: string; hint?: string } } | null)?.error;
  return new StackbackError((error?.code ?? 'INTERNAL') as ErrorCode, error?.message ?? fallback, error?.hint);
}

/** Renders job progress on stderr: one rewritten line on a terminal, plain lines otherwise. */
class ProgressView {
  private readonly tty = process.stderr.isTTY === true;
  private lastLine = '';

  show(event: JobEvent): void {
    const p = event.progress;
    if (!p) return;
    const percent = p.bytes_done !== undefined && p.bytes_estimated ? Math.min(99, Math.floor((p.bytes_done / p.bytes_estimated) * 100)) : undefined;
    const what = [p.phase, p.artifact ?? p.source].filter(Boolean).join(' ');
    const amount = p.bytes_done !== undefined ? ` ${formatBytes(p.bytes_done)}${p.bytes_estimated ? ` of ~${formatBytes(p.bytes_estimated)}` : ''}` : '';
    if (this.tty) {
      const bar = percent === undefined ? '' : `[${'#'.repeat(Math.floor(percent / 5)).padEnd(20, '-')}] ${String(percent).padStart(2)}% `;
      process.stderr.write(`\r\x1b[2K${bar}${what}${amount}`);
      this.lastLine = 'x';
    } else {
      const line = `${what}${percent === undefined ? '' : ` ${Math.floor(percent / 10) * 10}%`}`;
      if (line !== this.lastLine) process.stderr.write(`${line}\n`);
      this.lastLine = line;
    }
  }

  end(): void {
    if (this.tty && this.lastLine) process.stderr.write('\r\x1b[2K');
  }
}

export interface RemoteOutcome {
  state: 'ok' | 'partial' | 'failed';
  result: unknown;
}

/**
 * Submits a job and follows it to its end. Returns undefined with --detach (the job id is
 * printed instead). A failed or cancelled job throws its own error, so exit codes match
 * a local run.
 */
export async function runAsDaemonJob(socket: string, method: string, path: string, body: unknown, options: { json?: boolean; detach?: boolean }): Promise<RemoteOutcome | undefined> {
  const response = await daemonRequest(socket, method, path, body);
  if (response.status >= 400) throw remoteError(response.body, `the daemon refused ${method} ${path} (${response.status})`);
  const { job, collapsed } = response.body as { job: JobView; collapsed: boolean };
  if (options.detach) {
    if (options.json) printJson({ job, collapsed });
    else printLine(`job ${job.id} ${collapsed ? 'was already queued' : 'queued'} (${job.kind}); follow it with: curl --unix-socket ${socket} http://stackback/api/jobs/${job.id}/events`);
    return undefined;
  }
  if (!options.json) process.stderr.write(`${collapsed ? 'joined the identical waiting' : 'started'} daemon job ${job.id} (${job.kind})\n`);
  const view = new ProgressView();
  const last = await followJob(socket, job.id, (event) => {
    if (!options.json) view.show(event);
  });
  view.end();
  if (last.state === 'ok' || last.state === 'partial') return { state: last.state, result: last.result };
  if (last.state === 'failed' && last.result !== undefined && last.result !== null) return { state: 'failed', result: last.result };
  throw remoteError({ error: last.error }, `daemon job ${job.id} ended ${last.state}`);
}
