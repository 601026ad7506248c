import { ReserverError, invalidArgument } from '../errors.js';
import type { NewTimes, Reservation } from '../events/index.js';
import { IllegalTransitionError, RejectedCommandError } from '../events/index.js';
import { write } from '../ledger.js';
import { parseTime } from '../time.js';
import type { FlagsDef, FlagValues } from './argv.js';
import type { CommonFlags } from './args.js';
import type { Identity } from './identity.js';
import { withLedger } from './paths.js';
import type { Scope } from './scope.js';
import { inScope, notFound } from './scope.js';

/**
 * `reschedule` and `requeue`: new times for a reservation, one `BEGIN IMMEDIATE` transaction that
 * reads its state and appends `Rescheduled` / `Requeued` (or nothing, on any error).
 */

/** The time flags both take; times parse as `reserve`'s. */
export const newTimesArgs = {
  'not-before': {
    type: 'string',
    valueHint: 'DATETIME',
    description: 'New not_before (epoch seconds or ISO 8601; no offset = host local time). Default: unchanged',
  },
  'expires-at': { type: 'string', valueHint: 'DATETIME', description: 'New expires_at. Default: unchanged' },
  'no-expiry': { type: 'boolean', description: 'Remove expires_at' },
} as const satisfies FlagsDef;

/** The times the flags ask for: a field is absent where the flag is (exit 2 for `--expires-at` with `--no-expiry`). */
export function newTimesOf(flags: FlagValues<typeof newTimesArgs>): NewTimes {
  const notBefore = flags['not-before'];
  const expiresAt = flags['expires-at'];
  if (expiresAt !== undefined && flags['no-expiry']) throw invalidArgument('Give --expires-at or --no-expiry, not both.');
  return {
    ...(notBefore === undefined ? {} : { notBefore: parseTime(notBefore, 'not_before') }),
    ...(expiresAt !== undefined ? { expiresAt: parseTime(expiresAt, 'expires_at') } : flags['no-expiry'] ? { expiresAt: null } : {}),
  };
}

const VERB = { Reschedule: 'reschedule', Requeue: 'requeue' } as const;

/** Apply `Reschedule` or `Requeue` to the reservation `id` names (in `scope`); returns it as it is after. */
export function retime(
  flags: CommonFlags,
  id: Identity,
  command: { readonly type: 'Reschedule' | 'Requeue' } & NewTimes,
  scope: Scope,
): Promise<Reservation> {
  return withLedger(flags, (ledger) =>
    write(ledger.db, { actor: scope.actor }, async (w) => {
      if ('runKey' in id && !inScope(scope, id.runKey)) throw notFound();
      const current = await w.read(id);
      if (!inScope(scope, current.runKey)) throw notFound();
      try {
        return (await w.execute({ state: current }, command)).reservation;
      } catch (error) {
        if (error instanceof RejectedCommandError) throw invalidArgument(`Invalid times: ${error.message}.`);
        if (error instanceof IllegalTransitionError) throw wrongState(command.type, current);
        throw error;
      }
    }),
  );
}

function wrongState(type: 'Reschedule' | 'Requeue', r: Reservation): ReserverError {
  const verb = VERB[type];
  const only = type === 'Reschedule' ? 'only a RESERVED reservation' : 'only a DISPATCH_FAILED or EXPIRED reservation';
  const hint =
    type === 'Reschedule' && (r.status === 'EXPIRED' || r.status === 'DISPATCH_FAILED')
      ? `; to put it back in the queue, use: orchesjob-reserver requeue --reservation-id ${r.reservationId}`
      : '';
  return new ReserverError('WRONG_STATE', `Cannot ${verb} reservation in status ${r.status}: ${only} can be ${verb}d${hint}.`);
}
