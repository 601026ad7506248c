import type { Ledger } from '../db/open.js';
import { invalidArgument } from '../errors.js';
import type { Reservation } from '../events/index.js';
import { findById, findByRunKey } from '../projections/reservations.js';
import type { Scope } from './scope.js';
import { inScope, notFound } from './scope.js';
import type { FlagsDef, FlagValues } from './argv.js';

/** `--run-key` / `--reservation-id`, exactly one of them. */
export const identityArgs = {
  'run-key': { type: 'string', valueHint: 'KEY', description: 'Look up by run key' },
  'reservation-id': { type: 'string', valueHint: 'ID', description: 'Look up by reservation ID' },
} as const satisfies FlagsDef;

/** Which reservation `--run-key` / `--reservation-id` names. Exactly one must be given. */
export type Identity = { runKey: string } | { reservationId: string };

export function identity(flags: Partial<FlagValues<typeof identityArgs>>): Identity {
  const runKey = flags['run-key'];
  const reservationId = flags['reservation-id'];
  if ((runKey === undefined) === (reservationId === undefined)) {
    throw invalidArgument('Specify exactly one of --run-key or --reservation-id.');
  }
  if (runKey !== undefined) return { runKey: validRunKey(runKey) };
  if (reservationId === '') throw invalidArgument('Invalid --reservation-id: empty value.');
  return { reservationId: reservationId as string };
}

/** Look a reservation up, or fail with exit 4 (also when it is outside `scope`: it does not exist there). */
export async function resolveReservation(ledger: Ledger, id: Identity, scope?: Scope): Promise<Reservation> {
  if (scope !== undefined && 'runKey' in id && !inScope(scope, id.runKey)) throw notFound();
  const found = 'runKey' in id ? await findByRunKey(ledger.db, id.runKey) : await findById(ledger.db, id.reservationId);
  if (found === null || (scope !== undefined && !inScope(scope, found.runKey))) throw notFound();
  return found;
}

export const MAX_RUN_KEY_LENGTH = 512;

/** A run key is printable text of 1..512 characters. */
export function validRunKey(runKey: string): string {
  if (runKey === '') throw invalidArgument('Invalid --run-key: empty value.');
  if ([...runKey].length > MAX_RUN_KEY_LENGTH) {
    throw invalidArgument(`Invalid --run-key: longer than ${MAX_RUN_KEY_LENGTH} characters.`);
  }
  if (/[\u0000-\u001f\u007f-\u009f]/.test(runKey)) {
    throw invalidArgument('Invalid --run-key: contains a control character.');
  }
  return runKey;
}
