import { randomBytes } from 'node:crypto';
import { constants, existsSync, mkdtempSync, promises as fs, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { type ErrorCode, StackbackError } from '../errors.ts';
import type { ArtifactData, ModuleSink } from '../repository/artifact-reader.ts';
import { pidExists } from '../process-identity.ts';

/**
 * Runs an external tool (pg_dump, pg_restore, psql, …) whose stdout is streamed rather
 * than buffered. `exited` settles only after the process has ended: it resolves when the
 * exit status is 0 and rejects otherwise, with the tool's own first error line in the
 * message, so a dump that died half-way can never pass for a finished one.
 */
export interface ToolRun {
  /** Null when options.stdout is 'ignore'. */
  stdout: Readable | null;
  /** Null when options.stdin is 'ignore'. */
  stdin: Writable | null;
  exited: Promise<{ stderr: string }>;
}

export interface ToolOptions {
  /** The tool's environment, beside the few variables every tool gets (see BASE_ENV): nothing else of ours is inherited. */
  env: Record<string, string>;
  /**
   * A secret the tool reads from a file that an environment variable names (libpq's
   * PGPASSFILE): written mode 0600 into a private temporary folder for this run only, and
   * removed when the tool has ended, whether it succeeded, failed or was cancelled.
   */
  secretFile?: { variable: string; content: string } | undefined;
  signal?: AbortSignal | undefined;
  /** Error code and a phrase for messages: "pg_dump of database app". */
  errorCode: ErrorCode;
  what: string;
  stdin?: 'pipe' | 'ignore';
  stdout?: 'pipe' | 'ignore';
  /**
   * Give the tool's stdout a 64 KiB buffer, the size of a pipe (coreutils' stdbuf, when
   * present): pg_dump writes a pipe 4 KiB at a time, and every write wakes the reading
   * main thread. Measured on a 305 MiB dump: 26,000 reads and 1.05 CPU-s of reading and
   * hashing become 4,900 reads and 0.6 CPU-s. Larger buffers make pg_dump block on the
   * pipe in bursts that leave its server idle (1 MiB: an unchanged incremental 3.0 -> 4.4 s).
   */
  bigWrites?: boolean;
}

const STDBUF = '/usr/bin/stdbuf';

/**
 * The command line that runs `file` (stdbuf replaces itself with it: the pid, signals and exit
 * status are the tool's). A tool that is not there runs bare, so its ENOENT still says so.
 */
function withBigWrites(file: string, args: string[], bigWrites: boolean): [string, string[]] {
  return bigWrites && existsSync(STDBUF) && existsSync(file) ? [STDBUF, ['--output=64K', file, ...args]] : [file, args];
}

/** What a tool inherits from our environment: where programs are, the home folder, locale and time zone. */
const BASE_ENV = /^(PATH|HOME|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR)$/;

function baseEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => BASE_ENV.test(entry[0]) && entry[1] !== undefined));
}

const MAX_ERROR_LINE = 500;

/**
 * The line of a tool's stderr that says what went wrong, and nothing else: the lines after
 * it (DETAIL, CONTEXT) can quote row data, which must not reach status or the run history.
 */
function firstErrorLine(stderr: string): string {
  const lines = stderr.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  const line = lines.find((each) => /\b(?:ERROR|FATAL|PANIC|error|fatal)\b:/.test(each)) ?? lines[0] ?? '';
  return line.length > MAX_ERROR_LINE ? `${line.slice(0, MAX_ERROR_LINE)}…` : line;
}

/** Writes a secret file for one tool run; returns its environment variable and a remover. */
function writeSecretFile(secret: NonNullable<ToolOptions['secretFile']>): { env: Record<string, string>; remove: () => Promise<void> } {
  const folder = mkdtempSync(path.join(tmpdir(), 'stackback-secret-'));
  const remove = () => fs.rm(folder, { recursive: true, force: true });
  try {
    const file = path.join(folder, 'secret');
    writeFileSync(file, secret.content, { mode: 0o600, flag: 'wx' });
    return { env: { [secret.variable]: file }, remove };
  } catch (error) {
    void remove();
    throw error;
  }
}

export function runTool(file: string, args: string[], options: ToolOptions): ToolRun {
  const secret = options.secretFile ? writeSecretFile(options.secretFile) : undefined;
  const spawn = () => execa(...withBigWrites(file, args, options.bigWrites ?? false), {
    env: { ...baseEnv(), ...options.env, ...secret?.env },
    extendEnv: false,
    stdin: options.stdin ?? 'ignore',
    stdout: options.stdout ?? 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    maxBuffer: { stderr: 1024 * 1024 },
    reject: false,
    ...(options.signal ? { cancelSignal: options.signal } : {}),
    forceKillAfterDelay: 5000,
  });
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn();
  } catch (error) {
    void secret?.remove();
    throw error;
  }
  const exited = child.then(async (result) => {
    await secret?.remove();
    const stderr = typeof result.stderr === 'string' ? result.stderr : '';
    if (result.isCanceled) throw new StackbackError(options.errorCode, `${options.what} was cancelled`);
    if (result.failed) {
      const status = result.exitCode !== undefined ? `exit status ${result.exitCode}` : `signal ${result.signal ?? 'unknown'}`;
      const reason = result.code === 'ENOENT' ? `${file} not found` : firstErrorLine(stderr) || result.shortMessage || 'no message';
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

/** Named pipes are `pipe-<pid>-<random>` in work_dir, so that leftovers can be told apart by owner. */
function newPipePath(workDir: string): string {
  return path.join(workDir, `pipe-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** A restore pipe (see newPipePath) left by a process that is gone, or by an earlier life of this one (same pid). */
export function isDeadProcessPipe(name: string): boolean {
  const match = /^pipe-(\d+)-[0-9a-f]+$/.exec(name);
  if (!match) return false;
  const pid = Number(match[1]);
  return pid === process.pid || !pidExists(pid);
}

/** Where perl is (Debian's perl-base is essential): it can give the pipe a bigger buffer, Node cannot. */
const PERL = '/usr/bin/perl';

/**
 * The command line that runs `file` with the named pipe as its stdin. pg_restore reopens a
 * named input file, which a pipe cannot survive, so something else must open it: perl when
 * present, which also grows the pipe from 64 KiB to 1 MiB (fcntl F_SETPIPE_SZ = 1031; a
 * refusal, e.g. past the user's pipe quota, keeps the default), so that the writer's short
 * gaps between chunks never leave pg_restore waiting; else the shell. Either replaces itself
 * with the tool (exec), so signals and the exit status are the tool's own.
 */
function withPipeAsStdin(file: string, args: string[], bigPipe: boolean): [string, string[]] {
  if (bigPipe && existsSync(PERL)) {
    const script = 'open(STDIN, "<", $ENV{STACKBACK_PIPE}) or die "cannot open $ENV{STACKBACK_PIPE}: $!\n"; fcntl(STDIN, 1031, 1048576); exec { $ARGV[0] } @ARGV or die "cannot run $ARGV[0]: $!\n";';
    return [PERL, ['-e', script, file, ...args]];
  }
  return ['/bin/sh', ['-c', 'exec "$0" "$@" < "$STACKBACK_PIPE"', file, ...args]];
}

/** Why `workDir` cannot hold the named pipes of restores, or undefined when it can (it is made if missing). */
export async function pipeFolderProblem(workDir: string): Promise<string | undefined> {
  try {
    await fs.mkdir(workDir, { recursive: true, mode: 0o750 });
    await fs.access(workDir, constants.W_OK);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** Makes the named pipe (readable and writable by this user only); says why when it cannot. */
async function makeFifo(pipe: string): Promise<string | undefined> {
  try {
    await execa('mkfifo', ['-m', '600', pipe]);
    return undefined;
  } catch (error) {
    return (error as { stderr?: string }).stderr || (error as Error).message;
  }
}

/** The CPU priority of the thread that feeds the tools: below theirs, so a tool never waits for it (see chunk-threads.ts). */
const FEEDER_NICE = 10;

export interface FeedOptions {
  /** CPU priority of the feeding thread (default FEEDER_NICE; drills use 19). */
  feederNice?: number | undefined;
  /** How many named pipes the feed writes, each read by one of run()'s tools (default 1). */
  pipes?: number;
  /**
   * The sink module (see PlaintextSink) that takes the plaintext in the feeding thread and
   * writes the pipes, given their paths; without one, the plaintext goes into the one pipe as it is.
   */
  sink?: (pipes: string[]) => ModuleSink;
  /** Called with the tools' exits once run() has started them all (the sink's answers may depend on them). */
  onToolsStarted?: (exits: Promise<unknown>[]) => void;
  /** Codes of feed failures that only follow from a tool's, as EPIPE does: that tool's own error is reported instead. */
  toolFailureCodes?: string[];
}

/** A tool that reads one of the feed's pipes; it runs with run()'s options, under its own `what`. */
export interface PipeTool {
  file: string;
  args: string[];
  what: string;
}

/**
 * An artifact on its way into tools' stdin through named pipes in work_dir, fed from a
 * worker thread (see repository/chunk-threads.ts for why). The thread starts at once and
 * waits in open(2) for the reader, so its start-up overlaps whatever the caller prepares
 * before it runs the tools (creating the target database). Exactly one of run() or cancel()
 * must follow: both remove the pipes.
 */
export interface ArtifactFeed {
  /**
   * Runs the tools, `tools[i]` with pipe i as its stdin (`bigPipe: false` leaves the pipes at
   * their default size, as on machines without perl; the tests use it to cover that path).
   * Settles when the feed and every tool are done, with what the sink reported of its work; a
   * damaged chunk is reported before the tools' complaints about their cut input, and one tool
   * that fails stops the others.
   */
  run(tools: PipeTool[], options: Omit<ToolOptions, 'what'> & { bigPipe?: boolean }): Promise<unknown>;
  /** Stops the feed without running a tool. */
  cancel(): Promise<void>;
}

export async function startArtifactFeed(data: ArtifactData, workDir: string, options: FeedOptions = {}): Promise<ArtifactFeed> {
  const pipes = Array.from({ length: options.pipes ?? 1 }, () => newPipePath(workDir));
  let problem = await pipeFolderProblem(workDir);
  for (const pipe of pipes) problem ??= await makeFifo(pipe);
  const removePipes = () => Promise.all(pipes.map((pipe) => fs.rm(pipe, { force: true })));
  if (problem) {
    await removePipes();
    throw new StackbackError('RESTORE_FAILED', `cannot make a named pipe in work_dir ${workDir}: ${problem}`, 'work_dir must be a writable local folder');
  }
  const nice = options.feederNice ?? FEEDER_NICE;
  const written = options.sink ? data.writeToSink(options.sink(pipes), { nice }) : data.writeToPipe(pipes[0]!, { nice });
  // Observed by run() or cancel(); until then a failure must not count as unhandled.
  written.catch(() => undefined);
  const cancel = async () => {
    try {
      await Promise.all(pipes.map((each) => releaseWriter(each, written)));
    } finally {
      await removePipes();
    }
  };
  return {
    async run(tools, toolOptions) {
      try {
        if (tools.length !== pipes.length) {
          await cancel();
          throw new Error(`the feed has ${pipes.length} pipe(s) but ${tools.length} tool(s)`);
        }
        // A writer that fails before opening its end would leave the tools waiting in open(2) for ever; one failed tool
        // makes the others' work pointless: stop them all then.
        const stopAll = new AbortController();
        const signal = toolOptions.signal ? AbortSignal.any([toolOptions.signal, stopAll.signal]) : stopAll.signal;
        let firstFailure: unknown;
        const start = (tool: PipeTool, toolPipe: string) => {
          const [opener, argv] = withPipeAsStdin(tool.file, tool.args, toolOptions.bigPipe ?? true);
          const run = runTool(opener, argv, { ...toolOptions, what: tool.what, signal, env: { ...toolOptions.env, STACKBACK_PIPE: toolPipe }, stdin: 'ignore', stdout: 'ignore' });
          const exited = run.exited.catch((error: unknown) => {
            firstFailure ??= error;
            stopAll.abort();
            throw error;
          });
          void exited.catch(() => undefined).finally(() => releaseWriter(toolPipe, written));
          return exited;
        };
        const exits = tools.map((tool, index) => start(tool, pipes[index]!));
        options.onToolsStarted?.(exits);
        // EPIPE: a tool closed its pipe itself, and its own exit status tells why; toolFailureCodes: another tool's does.
        const followsFromTools = new Set(['EPIPE', ...(options.toolFailureCodes ?? [])]);
        const ownFailure = (error: NodeJS.ErrnoException) => !followsFromTools.has(error.code ?? '');
        written.catch((error: NodeJS.ErrnoException) => ownFailure(error) && stopAll.abort());
        const [feeding] = await Promise.allSettled([written, ...exits]);
        // A damaged chunk first: the tools' complaints about their cut input follow from it.
        if (feeding.status === 'rejected' && ownFailure(feeding.reason as NodeJS.ErrnoException)) throw feeding.reason;
        if (firstFailure !== undefined) throw firstFailure;
        return feeding.status === 'fulfilled' ? feeding.value : undefined;
      } finally {
        await removePipes();
      }
    },
    cancel,
  };
}

/**
 * A tool that ended before opening the pipe leaves the writer blocked in open(2): open the
 * reading end ourselves (without blocking) and close it again until the writer has moved on;
 * it then fails with EPIPE, as it does when the tool stops reading mid-way.
 */
async function releaseWriter(pipe: string, written: Promise<unknown>): Promise<void> {
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
