/**
 * The error tree of the CLI. Every failure a user can cause or meet has a stable code; the entry point
 * maps codes to the exit statuses of the contract in one place (`EXIT_CODES`).
 */
export type ErrorCode =
  | 'GENERAL'
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'NOT_DISPATCHED'
  | 'CANNOT_CANCEL';

/** Exit statuses of the spec: 1 general, 2 invalid arguments, 4 not found, 5 not dispatched, 6 cannot cancel. */
export const EXIT_CODES: { readonly [C in ErrorCode]: number } = {
  GENERAL: 1,
  INVALID_ARGUMENT: 2,
  NOT_FOUND: 4,
  NOT_DISPATCHED: 5,
  CANNOT_CANCEL: 6,
};

/** A failure with a message meant for the user: printed as `{"error": message}`, never as a stack. */
export class ReserverError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ReserverError';
  }
}

/** Shorthand for the most common case: a bad flag or value (exit 2). */
export function invalidArgument(message: string): ReserverError {
  return new ReserverError('INVALID_ARGUMENT', message);
}
