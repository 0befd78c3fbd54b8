import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { type ErrorCode, StackbackError } from '../errors.ts';
import type { ArtifactData } from '../repository/artifact-reader.ts';

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
  await settleFeed(pipeline(Readable.from(data), stdin), exited);
}

async function settleFeed(fed: Promise<void>, exited: Promise<unknown>): Promise<void> {
  const [feeding, exit] = await Promise.allSettled([fed, exited]);
  if (feeding.status === 'rejected' && (feeding.reason as NodeJS.ErrnoException).code !== 'EPIPE') throw feeding.reason;
  if (exit.status === 'rejected') throw exit.reason;
}

let pipeCount = 0;

/**
 * Runs a tool that reads an artifact on its stdin, fed from a worker thread through a named
 * pipe in `workDir` (see repository/artifact-pipe.ts for why). The shell opens the pipe as
 * the tool's stdin: pg_restore reopens a named input file, which a pipe cannot survive.
 */
export async function runToolOnArtifact(data: ArtifactData, workDir: string, file: string, args: string[], options: ToolOptions): Promise<void> {
  await fs.mkdir(workDir, { recursive: true, mode: 0o750 });
  const pipe = path.join(workDir, `pipe-${process.pid}-${++pipeCount}`);
  try {
    await execa('mkfifo', ['-m', '600', pipe]);
  } catch (error) {
    throw new StackbackError('RESTORE_FAILED', `cannot make a named pipe in work_dir ${workDir}: ${(error as { stderr?: string }).stderr || (error as Error).message}`, 'work_dir must be a writable local folder');
  }
  try {
    const run = runTool('/bin/sh', ['-c', 'exec "$0" "$@" < "$STACKBACK_PIPE"', file, ...args], { ...options, env: { ...options.env, STACKBACK_PIPE: pipe }, stdin: 'ignore', stdout: 'ignore' });
    const written = data.writeToPipe(pipe);
    void run.exited.catch(() => undefined).finally(() => releaseWriter(pipe, written));
    await settleFeed(written, run.exited);
  } finally {
    await fs.rm(pipe, { force: true });
  }
}

/**
 * A tool that ended before opening the pipe leaves the writer blocked in open(2): open the
 * reading end ourselves (without blocking) and close it again until the writer has moved on;
 * it then fails with EPIPE, as it does when the tool stops reading mid-way.
 */
async function releaseWriter(pipe: string, written: Promise<void>): Promise<void> {
  let settled = false;
  void written.then(
    () => (settled = true),
    () => (settled = true),
  );
  while (!settled) {
    const handle = await fs.open(pipe, constants.O_RDONLY | constants.O_NONBLOCK).catch(() => undefined);
    await handle?.close();
    if (!handle) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
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
