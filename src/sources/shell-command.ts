import { execa } from 'execa';
import { StackbackError } from '../errors.ts';

/**
 * Runs an operator-configured hook (`pre_command`, `post_command`) through the shell.
 * Output is kept for the error message only; the command line itself comes from the
 * config file, which the operator controls.
 */
export async function runHook(command: string, what: string, signal?: AbortSignal): Promise<void> {
  const result = await execa('sh', ['-c', command], { reject: false, all: true, ...(signal ? { cancelSignal: signal } : {}) });
  if (result.failed) {
    const output = String(result.all ?? '').trim().slice(-2000);
    throw new StackbackError('COMMAND_FAILED', `${what} \`${command}\` failed (exit status ${result.exitCode ?? result.signal}): ${output || 'no output'}`);
  }
}
