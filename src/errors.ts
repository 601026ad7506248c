/**
 * The error tree of the CLI. Every failure a user can cause or meet has a stable code; the entry point
 * maps codes to the exit statuses of the contract through the one map of every status (`EXIT_CODES`).
 */

/**
 * Every exit status this program sets, by name, with what the top-level usage says of it. `meaning`
 * is null for the two a shell would report anyway for a process killed by a signal (128 + its number),
 * which `run` and `events --follow` use when a second SIGINT/SIGTERM cuts a clean stop short. (A
 * status orchesjob returned, which `result` and `cancel` pass through, is orchesjob's.)
 */
export const EXIT_CODES = {
  OK: { status: 0, meaning: 'ok' },
  GENERAL: { status: 1, meaning: 'general error' },
  INVALID_ARGUMENT: { status: 2, meaning: 'invalid arguments' },
  NOT_PERMITTED: { status: 3, meaning: 'not permitted (gate)' },
  NOT_FOUND: { status: 4, meaning: 'not found' },
  NOT_DISPATCHED: { status: 5, meaning: 'not dispatched' },
  WRONG_STATE: { status: 6, meaning: 'not possible in this state (cancel, reschedule, requeue, wait)' },
  VERIFY_MISMATCH: { status: 7, meaning: 'replay --verify mismatch' },
  JOB_NOT_SUCCEEDED: { status: 8, meaning: 'wait --for finished: the job ended other than SUCCEEDED' },
  TIMED_OUT: { status: 124, meaning: 'wait: --timeout passed' },
  INTERRUPTED: { status: 130, meaning: null },
  TERMINATED: { status: 143, meaning: null },
} as const satisfies Record<string, { readonly status: number; readonly meaning: string | null }>;

export type ExitName = keyof typeof EXIT_CODES;

/** The exit statuses a `ReserverError` can carry: every one but success and those not thrown. */
export type ErrorCode = Exclude<ExitName, 'OK' | 'VERIFY_MISMATCH' | 'JOB_NOT_SUCCEEDED' | 'TIMED_OUT' | 'INTERRUPTED' | 'TERMINATED'>;

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

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
