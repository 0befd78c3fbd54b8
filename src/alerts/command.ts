import { execa } from 'execa';
import type { Logger } from '../log.ts';
import { oneLine } from './document.ts';
import type { AlertChannel } from './event.ts';
import { DeliveryError } from './http.ts';

/** A command that runs longer than this is killed and the delivery fails (and is retried). */
export const COMMAND_TIMEOUT_MS = 30_000;

/**
 * notify.command: the program runs once per event with the event document as JSON on its stdin,
 * without a shell (argv from the config as is). Exit status 0 is a delivery; anything else, a
 * timeout or a program that cannot start is a failure. STACKBACK_EVENT_KIND and
 * STACKBACK_EVENT_SUMMARY are set for scripts that do not parse JSON.
 */
export function createCommandChannel(argv: string[], log: Logger, options: { timeoutMs?: number } = {}): AlertChannel {
  const name = 'command';
  const [program, ...args] = argv;
  const timeoutMs = options.timeoutMs ?? COMMAND_TIMEOUT_MS;
  return {
    name,
    kind: 'command',
    async send(event, signal) {
      if (!program) throw new DeliveryError('command: notify.command is empty', true);
      const result = await execa(program, args, {
        input: `${JSON.stringify(event)}\n`,
        shell: false,
        reject: false,
        timeout: timeoutMs,
        cancelSignal: signal,
        forceKillAfterDelay: 2000,
        stdout: 'ignore',
        stderr: 'pipe',
        maxBuffer: { stderr: 64 * 1024 },
        env: { STACKBACK_EVENT_KIND: event.kind, STACKBACK_EVENT_SUMMARY: oneLine(event.summary, 1000) },
      });
      const stderr = oneLine(String(result.stderr ?? ''), 300);
      if (result.timedOut) throw new DeliveryError(`command ${program} did not finish within ${timeoutMs / 1000} s`);
      if (result.isCanceled) throw new DeliveryError(`command ${program} was stopped (delivery cancelled)`);
      if (result.failed) {
        const why = result.exitCode !== undefined ? `exited with status ${result.exitCode}` : result.signal ? `was killed by ${result.signal}` : `could not run (${(result as { code?: string }).code ?? oneLine(result.shortMessage ?? "", 200)})`;
        throw new DeliveryError(`command ${program} ${why}${stderr ? `: ${stderr}` : ''}`, result.exitCode === undefined && !result.signal);
      }
      log.info({ channel: name, program, event: event.kind }, `command: ${event.kind} event delivered`);
    },
  };
}
