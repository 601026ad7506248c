import { ReserverError } from '../errors.js';

/**
 * Who a command runs for: a person or script on the host (`cli:<verb>`), or an SSH key locked by the
 * gate (`gate:<key>`, seeing only its run-key prefix). The command bodies take it as an argument, so
 * that the gate runs the very same code with its own scope.
 */
export interface Scope {
  /** Stored on every event the command writes. */
  readonly actor: string;
  /** Only reservations whose run key starts with it exist for this caller ('' : all of them). */
  readonly runKeyPrefix: string;
}

/** The scope of a command typed on the host. */
export function localScope(verb: string): Scope {
  return { actor: `cli:${verb}`, runKeyPrefix: '' };
}

/** Whether a run key is visible in `scope`. */
export function inScope(scope: Scope, runKey: string): boolean {
  return runKey.startsWith(scope.runKeyPrefix);
}

/** The answer for a reservation that does not exist, or exists outside the caller's scope: the same (exit 4). */
export function notFound(): ReserverError {
  return new ReserverError('NOT_FOUND', 'Reservation not found.');
}
