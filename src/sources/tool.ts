import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { type ErrorCode, StackbackError } from '../errors.ts';

/**
 * Runs an external tool (pg_dump, pg_restore, psql, …) whose stdout is streamed rather
 * than buffered. `exited` settles only after the process has ended: it resolves when the
 * exit status is 0 and rejects otherwise, with the tool's own stderr in the message, so
 * a dump that died half-way can never pass for a finished one.
 */
export interface ToolRun {
  /** Null when options.stdout is 'ignore'. */
  stdout: Readable | null;
  /** Null when options.stdin is 'ignore'. */
  stdin: Writable | null;
  exited: Promise<{ stderr: string }>;
}

export interface ToolOptions {
  env: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** Error code and a phrase for messages: "pg_dump of database app". */
  errorCode: ErrorCode;
  what: string;
  stdin?: 'pipe' | 'ignore';
  stdout?: 'pipe' | 'ignore';
}

const STDERR_TAIL = 2000;

function tail(text: string): string {
  const trimmed = text.trim();
  return trimmed.length > STDERR_TAIL ? `…${trimmed.slice(-STDERR_TAIL)}` : trimmed;
}

export function runTool(file: string, args: string[], options: ToolOptions): ToolRun {
  const child = execa(file, args, {
    env: options.env,
    extendEnv: true,
    stdin: options.stdin ?? 'ignore',
    stdout: options.stdout ?? 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    maxBuffer: { stderr: 1024 * 1024 },
    reject: false,
    ...(options.signal ? { cancelSignal: options.signal } : {}),
    forceKillAfterDelay: 5000,
  });
  const exited = child.then((result) => {
    const stderr = typeof result.stderr === 'string' ? result.stderr : '';
    if (result.isCanceled) throw new StackbackError(options.errorCode, `${options.what} was cancelled`);
    if (result.failed) {
      const status = result.exitCode !== undefined ? `exit status ${result.exitCode}` : `signal ${result.signal ?? 'unknown'}`;
      const reason = result.code === 'ENOENT' ? `${file} not found` : tail(stderr) || result.shortMessage || 'no message';
      throw new StackbackError(options.errorCode, `${options.what} failed (${status}): ${reason}`);
    }
    return { stderr };
  });
  // stdin may be closed by the tool before we finish writing (pg_restore --list stops early).
  child.stdin?.on('error', () => undefined);
  return { stdout: child.stdout, stdin: child.stdin, exited };
}

/** Feeds `data` to a tool's stdin; reports the data's own error before the tool's complaint about a cut input. */
export async function feedTool(data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, stdin: NodeJS.WritableStream, exited: Promise<unknown>): Promise<void> {
  const [fed, exit] = await Promise.allSettled([pipeline(Readable.from(data), stdin), exited]);
  if (fed.status === 'rejected' && (fed.reason as NodeJS.ErrnoException).code !== 'EPIPE') throw fed.reason;
  if (exit.status === 'rejected') throw exit.reason;
}

/**
 * Writes `data` to a tool that may stop reading early (pg_restore --list reads only the
 * table of contents), and keeps consuming `data` to its end regardless: the caller's
 * integrity checks run over every byte.
 */
export async function feedWhileOpen(data: AsyncIterable<Uint8Array>, stdin: Writable): Promise<void> {
  let open = true;
  const closed = new Promise<void>((resolve) => {
    const stop = () => {
      open = false;
      resolve();
    };
    stdin.once('close', stop);
    stdin.once('error', stop);
  });
  for await (const chunk of data) {
    if (open && !stdin.write(chunk)) {
      await Promise.race([new Promise<void>((resolve) => stdin.once('drain', resolve)), closed]);
    }
  }
  if (open) stdin.end();
}
