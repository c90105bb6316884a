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
