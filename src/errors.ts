/**
 * One error type for everything a person is meant to read. Any other error is
 * internal: clients get generic text, the program log gets the stack.
 */
export type ErrorCode = 'NOT_FOUND' | 'USAGE' | 'DENIED' | 'DAMAGED' | 'UNAVAILABLE';

/** DESIGN.md's exit-code table; a new code without a status does not compile. */
export const EXIT_STATUS: Record<ErrorCode, number> = {
  NOT_FOUND: 1,
  USAGE: 2,
  DENIED: 3,
  DAMAGED: 4,
  UNAVAILABLE: 5,
};

/**
 * With `get-wal --fatal-errors`, for point-in-time recovery: in archive
 * recovery PostgreSQL ends recovery and promotes on any exit from 1 to 125, so
 * a busy hub or a damaged file would end it early, silently. Above 125 it stops
 * with FATAL instead, and the administrator can fix the cause and start again.
 * 128 + the usual status; "not found" stays 1, the normal end of the archive.
 * Never 143 (128 + SIGTERM), which PostgreSQL takes for a quiet shutdown, nor
 * 126/127 ("cannot execute", "command not found"), which would mislead.
 */
export const FATAL_EXIT_STATUS: Record<ErrorCode, number> = {
  NOT_FOUND: 1,
  USAGE: 130,
  DENIED: 131,
  DAMAGED: 132,
  UNAVAILABLE: 133,
};

export function exitStatus(code: ErrorCode, fatalErrors: boolean): number {
  return (fatalErrors ? FATAL_EXIT_STATUS : EXIT_STATUS)[code];
}

/** The word the audit log records for each outcome. */
export type RequestResult = 'ok' | 'not_found' | 'usage' | 'denied' | 'damaged' | 'unavailable' | 'aborted';

export const AUDIT_RESULT: Record<ErrorCode, RequestResult> = {
  NOT_FOUND: 'not_found',
  USAGE: 'usage',
  DENIED: 'denied',
  DAMAGED: 'damaged',
  UNAVAILABLE: 'unavailable',
};

export class WalhubError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'WalhubError';
  }
}

export function isWalhubError(error: unknown): error is WalhubError {
  return error instanceof WalhubError;
}
