import type { ClaimOwner, EventOf, EventType, ReservationEvent, ReservationStatus } from './types.js';
import { TERMINAL_STATUSES } from './types.js';

/** The current state of one reservation: what the `reservations` projection row holds. */
export interface Reservation {
  readonly reservationId: string;
  readonly runKey: string;
  readonly status: ReservationStatus;
  readonly jobId: string | null;
  readonly command: readonly string[];
  readonly orchesjobStartOptions: readonly string[];
  readonly metadata: Readonly<Record<string, unknown>> | null;
  readonly notBefore: number | null;
  readonly expiresAt: number | null;
  readonly createdAt: number;
  /** Creation in epoch milliseconds: when a reservation without `not_before` became due. */
  readonly createdAtMs: number;
  readonly updatedAt: number;
  readonly dispatchedAt: number | null;
  readonly lastError: string | null;
  /** Version of the last event folded in. */
  readonly version: number;
  /** Starts that may be tried, 1 unless `reserve --max-attempts` said more. */
  readonly maxAttempts: number;
  /** Seconds between a failed attempt and the next. */
  readonly retryDelay: number;
  /** Failed attempts so far. */
  readonly attempts: number;
  /** When the next attempt is due (epoch seconds) after a failed one, else null. */
  readonly retryAt: number | null;
  /** The live claim while DISPATCHING, else null. */
  readonly claim: (ClaimOwner & { readonly claimedAtMs: number }) | null;
  /** True once `Cleaned`: the projection row is gone and the run key is free. */
  readonly cleaned: boolean;
}

/** A reservation stream before its first event. */
export type ReservationState = Reservation | null;

export const initialState: ReservationState = null;

/** Where a status may be when an event happens: the state machine of DESIGN.md, as data. */
export const ALLOWED_FROM: { readonly [T in EventType]: readonly (ReservationStatus | 'NONE')[] } = {
  Reserved: ['NONE'],
  DispatchClaimed: ['RESERVED'],
  Expired: ['RESERVED'],
  Cancelled: ['RESERVED', 'DISPATCH_FAILED', 'EXPIRED'],
  Dispatched: ['DISPATCHING'],
  DispatchFailed: ['DISPATCHING'],
  ClaimReleased: ['DISPATCHING'],
  DispatchAttemptFailed: ['DISPATCHING'],
  DispatchRefused: ['RESERVED'],
  Cleaned: TERMINAL_STATUSES,
  Rescheduled: ['RESERVED'],
  Requeued: ['DISPATCH_FAILED', 'EXPIRED'],
  // The control stream's events (src/events/control.ts): never in a reservation's stream.
  DispatchPaused: [],
  DispatchResumed: [],
};

/** `last_error` text the Python tool wrote; SQL and scripts match on it. */
export const EXPIRED_ERROR = 'expired before dispatch';
export const RECOVERED_ERROR = 'recovered from DISPATCHING';

/** The status an event may follow, or 'NONE' for an empty (or cleaned) stream. */
export function statusOf(state: ReservationState): ReservationStatus | 'NONE' {
  return state === null || state.cleaned ? 'NONE' : state.status;
}

/** Thrown by `evolve` when the ledger holds an event its state cannot follow (a corrupt ledger). */
export class InvalidLedgerError extends Error {
  constructor(
    readonly event: ReservationEvent,
    readonly from: ReservationStatus | 'NONE',
    detail?: string,
  ) {
    super(
      `ledger event ${event.eventId} (${event.type}, version ${event.version}) of reservation ` +
        `${event.reservationId} cannot follow ${detail ?? `status ${from}`}`,
    );
    this.name = 'InvalidLedgerError';
  }
}

/**
 * Apply one event to a reservation's state. Pure: every time comes from the event itself.
 * The synchronous projection, `replay` and the property tests all fold with this function.
 */
export function evolve(state: ReservationState, event: ReservationEvent): Reservation {
  const from = statusOf(state);
  if (!ALLOWED_FROM[event.type].includes(from) || (state !== null && state.cleaned)) {
    throw new InvalidLedgerError(event, from);
  }
  const expectedVersion = state === null ? 1 : state.version + 1;
  if (event.version !== expectedVersion || (state !== null && state.reservationId !== event.reservationId)) {
    throw new InvalidLedgerError(event, from, `expected version ${expectedVersion} of reservation ${state?.reservationId ?? event.reservationId}`);
  }
  if (event.type === 'Reserved') return reservedState(event);
  // ALLOWED_FROM guarantees a live state for every other event type.
  const s = state as Reservation;
  const next = { ...s, version: event.version, updatedAt: event.recordedAt };
  switch (event.type) {
    case 'DispatchClaimed': {
      const { dispatcher_id, host, pid } = event.data;
      return {
        ...next,
        status: 'DISPATCHING',
        lastError: null,
        claim: { dispatcher_id, host, pid, claimedAtMs: event.recordedAtMs },
      };
    }
    case 'Dispatched':
      return {
        ...next,
        status: 'DISPATCHED',
        jobId: event.data.job_id,
        dispatchedAt: event.recordedAt,
        lastError: null,
        claim: null,
      };
    case 'DispatchFailed':
      return { ...next, status: 'DISPATCH_FAILED', lastError: event.data.error, attempts: s.attempts + 1, claim: null };
    case 'DispatchAttemptFailed':
      return {
        ...next,
        status: 'RESERVED',
        lastError: event.data.error,
        attempts: event.data.attempt,
        retryAt: event.data.retry_at,
        claim: null,
      };
    case 'DispatchRefused':
      // Never claimed, so no attempt was made: `attempts` stays.
      return { ...next, status: 'DISPATCH_FAILED', lastError: event.data.error };
    case 'Expired':
      return { ...next, status: 'EXPIRED', lastError: EXPIRED_ERROR };
    case 'Cancelled':
      return { ...next, status: 'CANCELLED', lastError: null };
    case 'ClaimReleased':
      return { ...next, status: 'RESERVED', lastError: RECOVERED_ERROR, claim: null };
    case 'Cleaned':
      return { ...next, cleaned: true };
    case 'Rescheduled': {
      const { not_before, expires_at } = event.data;
      // The operator's new time replaces a pending retry's; a change of expires_at alone keeps it.
      const retryAt = not_before === s.notBefore ? s.retryAt : null;
      return { ...next, notBefore: not_before, expiresAt: expires_at, retryAt };
    }
    case 'Requeued':
      return {
        ...next,
        status: 'RESERVED',
        notBefore: event.data.not_before,
        expiresAt: event.data.expires_at,
        lastError: null,
        attempts: 0,
        retryAt: null,
      };
    case 'DispatchPaused':
    case 'DispatchResumed':
      throw new InvalidLedgerError(event, from); // ALLOWED_FROM already refuses them
    default: {
      const unhandled: never = event;
      throw new Error(`unhandled event ${JSON.stringify(unhandled)}`);
    }
  }
}

/** A new stream's first state: everything the reservation will need is in its `Reserved` event. */
function reservedState(event: EventOf<'Reserved'>): Reservation {
  const d = event.data;
  return {
    reservationId: event.reservationId,
    runKey: event.runKey,
    status: 'RESERVED',
    jobId: null,
    command: d.command,
    orchesjobStartOptions: d.orchesjob_start_options,
    metadata: d.metadata,
    notBefore: d.not_before,
    expiresAt: d.expires_at,
    createdAt: event.recordedAt,
    createdAtMs: event.recordedAtMs,
    updatedAt: event.recordedAt,
    dispatchedAt: null,
    lastError: null,
    version: event.version,
    maxAttempts: d.max_attempts ?? 1,
    retryDelay: d.retry_delay ?? 0,
    attempts: 0,
    retryAt: null,
    claim: null,
    cleaned: false,
  };
}

/** Fold a reservation's events, oldest first. */
export function fold(events: Iterable<ReservationEvent>, state: ReservationState = initialState): ReservationState {
  let current = state;
  for (const event of events) current = evolve(current, event);
  return current;
}
