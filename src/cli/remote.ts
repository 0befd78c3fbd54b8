import { type ErrorCode, StackbackError } from '../errors.ts';
import type { Config } from '../config/load.ts';
import { daemonRequest, followJob } from '../daemon/client.ts';
import type { JobEvent, JobView } from '../daemon/queue.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { type GlobalOptions, loadCliConfig, openCliContext } from './context.ts';
import { formatBytes, printJson, printLine } from './output.ts';

/**
 * The CLI's side of the daemon: when the daemon answers on its sockets, commands that touch
 * the repository run as daemon jobs (one queue, no lock fights) and the CLI follows them.
 */

/** What a command asks of the daemon: `read` only looks, `admin` submits jobs. */
export type DaemonAccess = 'read' | 'admin';

type Probe = 'answers' | 'absent' | 'forbidden';

async function probe(socket: string): Promise<Probe> {
  try {
    await daemonRequest(socket, 'GET', '/api/backup/status', undefined, 2000);
    return 'answers';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') return 'absent';
    if (code === 'EACCES') return 'forbidden';
    throw error;
  }
}

/**
 * The socket to reach the daemon through; undefined when no daemon runs (the CLI then works
 * locally). Reading takes the read-only socket, or the admin one if this user may use it.
 * Submitting jobs takes the admin socket; a daemon that runs but whose admin socket this
 * user may not use is an error, never a reason to run the job locally beside it.
 */
export async function findDaemon(config: Config, access: DaemonAccess): Promise<string | undefined> {
  const { socket, adminSocket, socketGroup } = config.control;
  const admin = await probe(adminSocket);
  if (admin === 'answers') return adminSocket;
  if (access === 'admin') {
    if (admin === 'forbidden') {
      throw new StackbackError('FORBIDDEN', `this user may not use the daemon's admin socket ${adminSocket}, which this command needs`, "run it as root or as the daemon's user: sudo -u stackback stackback …");
    }
    if ((await probe(socket)) !== 'absent') {
      throw new StackbackError('DAEMON_UNREACHABLE', `a daemon runs (its socket ${socket} is there) but nothing answers on its admin socket ${adminSocket}, which this command needs`, 'a changed control.admin_socket takes effect when the daemon restarts (systemctl restart stackback)');
    }
    return undefined;
  }
  const read = await probe(socket);
  if (read === 'answers') return socket;
  if (read === 'forbidden') {
    throw new StackbackError('FORBIDDEN', `this user may not use the daemon's socket ${socket}`, `run it as a member of the socket's group${socketGroup ? ` (${socketGroup})` : ''}, as the daemon's user or as root`);
  }
  return undefined;
}

/**
 * A document that only reads the catalog (list, show, history): asked of the daemon when one
 * answers, so the CLI opens no catalog file of its own (root never leaves files the daemon
 * cannot use); otherwise read here.
 */
export async function readView<T>(options: GlobalOptions, path: string, local: (catalog: Catalog) => T): Promise<T> {
  const config = loadCliConfig(options);
  const socket = await findDaemon(config, 'read');
  if (socket) {
    const response = await daemonRequest(socket, 'GET', path);
    if (response.status >= 400) throw remoteError(response.body, `the daemon refused GET ${path} (${response.status})`);
    return response.body as T;
  }
  const ctx = openCliContext(options, config);
  try {
    return local(ctx.catalog);
  } finally {
    ctx.close();
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
