import { StackbackError, type ErrorCode } from '../errors.ts';

/** An error as a worker thread posts it: a StackbackError keeps its code and hint across. */
export interface ThreadFailure {
  message: string;
  /** A StackbackError's code, or an errno code such as EPIPE or ENOSPC. */
  code: string | undefined;
  hint: string | undefined;
  stackback: boolean;
}

/** The thread's side: what to post for `error`. */
export function describeFailure(error: unknown): ThreadFailure {
  return {
    message: (error as Error).message,
    code: (error as NodeJS.ErrnoException).code,
    hint: error instanceof StackbackError ? error.hint : undefined,
    stackback: error instanceof StackbackError,
  };
}

/** The main thread's side: the error again, as the thread had it. */
export function rebuildFailure(failure: ThreadFailure): Error {
  if (failure.stackback) return new StackbackError(failure.code as ErrorCode, failure.message, failure.hint);
  return Object.assign(new Error(failure.message), { code: failure.code });
}
