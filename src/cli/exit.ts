import { type ErrorDetails, errorDetails, isStackbackError, USAGE_ERROR_CODES } from '../errors.ts';

/** Exit statuses, one place: 0 ok, 1 failed, 2 usage or config error. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export function exitCodeFor(error: unknown): number {
  if (isStackbackError(error) && (USAGE_ERROR_CODES as Set<string>).has(error.code)) return EXIT_USAGE;
  return EXIT_FAILED;
}

export function errorJson(error: unknown): { error: ErrorDetails } {
  return { error: errorDetails(error) };
}

let commandExitCode = EXIT_OK;

/** A command that finished but failed (a partial backup, a failed verify) reports it here. */
export function setCommandExitCode(code: number): void {
  commandExitCode = Math.max(commandExitCode, code);
}

export function takeCommandExitCode(): number {
  const code = commandExitCode;
  commandExitCode = EXIT_OK;
  return code;
}
