/**
 * The one error type stackback raises on purpose. `code` is stable (scripts and tests match
 * on it), `message` is for people, `hint` says what to do about it. The CLI maps codes to
 * exit statuses in one place (src/cli/exit.ts).
 */
export class StackbackError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StackbackError';
    this.code = code;
    this.hint = hint;
  }
}

/** Codes whose cause is the operator's input rather than the environment: exit status 2. */
export const USAGE_ERROR_CODES = new Set([
  'CONFIG_INVALID',
  'CONFIG_NOT_FOUND',
  'USAGE',
  'BACKUP_NAME_INVALID',
  'REPO_OWNER',
  'KEY_MISSING',
  'KEY_INVALID',
  'KEY_WRONG',
  'KEY_EXISTS',
  'REMOTE_NOT_FOUND',
] as const);

export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_NOT_FOUND'
  | 'USAGE'
  | 'BACKUP_NAME_INVALID'
  | 'BACKUP_NOT_FOUND'
  | 'BACKUP_FAILED'
  | 'BACKUP_STALLED'
  | 'SOURCE_NOT_FOUND'
  | 'ARTIFACT_NOT_FOUND'
  | 'REPO_NOT_INITIALIZED'
  | 'REPO_MISSING'
  | 'REPO_MISMATCH'
  | 'REPO_EXISTS'
  | 'REPO_OWNER'
  | 'REPO_FORMAT'
  | 'REPO_LOCKED'
  | 'REPO_CORRUPT'
  | 'KEY_MISSING'
  | 'KEY_INVALID'
  | 'KEY_WRONG'
  | 'KEY_EXISTS'
  | 'CHUNK_MISSING'
  | 'CHUNK_CORRUPT'
  | 'ARTIFACT_CORRUPT'
  | 'VERIFY_FAILED'
  | 'PG_BINARY_MISSING'
  | 'PG_VERSION_MISMATCH'
  | 'PG_CONNECT'
  | 'PG_AUTH'
  | 'PG_DATABASE_MISSING'
  | 'PG_DUMP_FAILED'
  | 'PG_RESTORE_FAILED'
  | 'PG_TARGET_EXISTS'
  | 'PG_TARGET_BUSY'
  | 'QDRANT_AUTH'
  | 'QDRANT_CONNECT'
  | 'QDRANT_NOT_FOUND'
  | 'QDRANT_FAILED'
  | 'QDRANT_VERSION'
  | 'QDRANT_CHECKSUM'
  | 'COMMAND_FAILED'
  | 'RESTORE_FAILED'
  | 'DAEMON_RUNNING'
  | 'DAEMON_UNREACHABLE'
  | 'NOT_FOUND'
  | 'BAD_REQUEST'
  | 'CANCELLED'
  | 'METHOD_NOT_ALLOWED'
  | 'BODY_TOO_LARGE'
  | 'DAEMON_STOPPING'
  | 'FORBIDDEN'
  | 'UNAUTHORIZED'
  | 'RATE_LIMITED'
  | 'WEB_TOKEN'
  | 'QUEUE_FULL'
  | 'TOO_MANY_CONNECTIONS'
  | 'DISK_SPACE'
  | 'SECRET_FILE'
  | 'REMOTE_NOT_FOUND'
  | 'REMOTE_MISMATCH'
  | 'REMOTE_AUTH'
  | 'REMOTE_BUCKET'
  | 'REMOTE_REGION'
  | 'REMOTE_CLOCK'
  | 'REMOTE_OBJECT_LOCK'
  | 'REMOTE_UNAVAILABLE'
  | 'REMOTE_FAILED'
  | 'INTERNAL';

export function isStackbackError(error: unknown): error is StackbackError {
  return error instanceof StackbackError;
}

/** A message for any thrown value, without stack noise. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

export interface ErrorDetails {
  code: string;
  message: string;
  hint?: string;
  /** One line per problem, for errors that collect several (an invalid config). */
  problems?: string[];
}

/** The JSON shape of an error, as the CLI's --json and the control channel report it. */
export function errorDetails(error: unknown): ErrorDetails {
  if (isStackbackError(error)) {
    const problems = (error as { problems?: string[] }).problems;
    return { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}), ...(problems ? { problems } : {}) };
  }
  return { code: 'INTERNAL', message: errorMessage(error) };
}
