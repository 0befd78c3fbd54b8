import { execa } from 'execa';
import { StackbackError } from '../errors.ts';

/** After SIGTERM, the hook's processes get this long before SIGKILL. */
const KILL_GRACE_MS = 5_000;

export interface HookOptions {
  /** The hook is stopped after this long and fails. */
  timeoutMs: number;
  /** The job's signal: stops the hook at once. Left out for a hook that must run even after a cancel (post_command). */
  signal?: AbortSignal;
}

/**
 * Runs an operator-configured hook (`pre_command`, `post_command`) through the shell.
 * Output is kept for the error message only; the command line itself comes from the
 * config file, which the operator controls. The shell runs in a process group of its own,
 * so a timeout or a cancel stops everything it started (a `sleep` it spawned would
 * otherwise outlive it, and hold its output pipe open).
 */
export async function runHook(command: string, what: string, options: HookOptions): Promise<void> {
  const child = execa('sh', ['-c', command], { reject: false, all: true, detached: true, stdin: 'ignore' });
  let stopped: { why: string; code: 'CANCELLED' | 'COMMAND_FAILED' } | undefined;
  let grace: NodeJS.Timeout | undefined;
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // The group is gone already.
    }
  };
  const stop = (why: string, code: 'CANCELLED' | 'COMMAND_FAILED') => {
    if (stopped !== undefined) return;
    stopped = { why, code };
    killGroup('SIGTERM');
    grace = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
  };
  const timer = setTimeout(() => stop(`did not finish within ${options.timeoutMs / 1000} s (hook_timeout): stopped it`, 'COMMAND_FAILED'), options.timeoutMs);
  const onAbort = () => stop('was stopped: the job was cancelled', 'CANCELLED');
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const result = await child;
    const output = String(result.all ?? '').trim().slice(-2000);
    if (stopped !== undefined) {
      // Whatever ignored SIGTERM goes too: no process of a stopped hook stays behind.
      killGroup('SIGKILL');
      throw new StackbackError(stopped.code, `${what} \`${command}\` ${stopped.why}${output ? `: ${output}` : ''}`);
    }
    if (result.failed) throw new StackbackError('COMMAND_FAILED', `${what} \`${command}\` failed (exit status ${result.exitCode ?? result.signal}): ${output || 'no output'}`);
  } finally {
    clearTimeout(timer);
    clearTimeout(grace);
    options.signal?.removeEventListener('abort', onAbort);
  }
}
