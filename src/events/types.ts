/**
 * The reservation ledger's vocabulary.
 *
 * Glossary
 * - reservation: the intent to run one command for one run key, at or after `not_before`, before
 *   `expires_at`. It is a stream of events keyed by `reservation_id`; its current state is the fold
 *   of those events (see `evolve`).
 * - run key: the caller's idempotency key. At most one live (not cleaned) reservation holds a run key;
 *   `clean` frees it for a new reservation, which is a new stream.
 * - claim: a dispatcher's exclusive right to start one reservation (`DispatchClaimed`). It names its
 *   owner (dispatcher id, host, pid) so that only claims of owners that are gone are ever released.
 * - dispatch: the `orchesjob start` call a claim leads to; it ends in `Dispatched` (a job id) or
 *   `DispatchFailed` (orchesjob's exit code and stderr). A reservation its gate key may no longer make
 *   is refused instead (`DispatchRefused`): never claimed, never started.
 * - position: an event's place in the whole ledger (`reservation_events.position`), the order in which
 *   the dispatcher prints its JSON Lines and in which `replay` folds.
 * - version: an event's place within its reservation, 1..n without gaps; `UNIQUE(reservation_id,
 *   version)` makes a concurrent writer fail instead of forking the stream.
 *
 * Event data is stored as JSON with snake_case keys, so that SQL audits can read it with
 * `json_extract(data, '$.job_id')`.
 */

/** The statuses of the Python tool, unchanged: SQL and scripts written against it read them. */
export const RESERVATION_STATUSES = [
  'RESERVED',
  'DISPATCHING',
  'DISPATCHED',
  'CANCELLED',
  'EXPIRED',
  'DISPATCH_FAILED',
] as const;
export type ReservationStatus = (typeof RESERVATION_STATUSES)[number];

/** Statuses `clean` may delete (the Python tool's terminal set). */
export const TERMINAL_STATUSES: readonly ReservationStatus[] = [
  'DISPATCHED',
  'CANCELLED',
  'EXPIRED',
  'DISPATCH_FAILED',
];

export const EVENT_TYPES = [
  'Reserved',
  'DispatchClaimed',
  'Dispatched',
  'DispatchFailed',
  'Expired',
  'Cancelled',
  'Cleaned',
  'ClaimReleased',
  'DispatchAttemptFailed',
  'DispatchRefused',
  'Rescheduled',
  'Requeued',
  'DispatchPaused',
  'DispatchResumed',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * The types of the dispatch control stream (`pause`, `resume`): one stream of its own in the same
 * ledger (`CONTROL_STREAM`), folded by `src/events/control.ts`, never by a reservation's `evolve`.
 */
export const CONTROL_EVENT_TYPES = ['DispatchPaused', 'DispatchResumed'] as const satisfies readonly EventType[];
export type ControlEventType = (typeof CONTROL_EVENT_TYPES)[number];

/**
 * Where the control stream's events are stored: a reservation id no reservation has (ULIDs and the
 * Python tool's ids never start with `@`) and a run key no reservation may have (run keys are never
 * empty), so that a run key's history and every fold of reservations leave it out.
 */
export const CONTROL_STREAM = { reservationId: '@dispatch', runKey: '' } as const;

/** A reservation was accepted. Everything a dispatch needs is here; nothing else ever changes it. */
export interface ReservedData {
  readonly command: readonly string[];
  readonly orchesjob_start_options: readonly string[];
  /** The caller's metadata object, or null. */
  readonly metadata: Readonly<Record<string, unknown>> | null;
  readonly not_before: number | null;
  readonly expires_at: number | null;
  /** True when this event was written while adopting a database of the Python tool. */
  readonly imported?: boolean;
  /** How many starts may be tried (`reserve --max-attempts`); absent means 1, the spec's behaviour. */
  readonly max_attempts?: number;
  /** Seconds between a failed start and the next attempt (`reserve --retry-delay`). */
  readonly retry_delay?: number;
}

/** Who holds a claim: enough to tell later whether that process still exists. */
export interface ClaimOwner {
  readonly dispatcher_id: string;
  readonly host: string;
  readonly pid: number;
}

/** A dispatcher claimed the reservation and is about to call `orchesjob start`. */
export interface DispatchClaimedData extends ClaimOwner {
  /** The full `orchesjob start` argv, orchesjob's path first. */
  readonly argv: readonly string[];
  /** How long after `not_before` (or creation) the claim happened, in milliseconds. */
  readonly late_by_ms: number;
  /**
   * The owner process's start (Linux: boot id and start tick), so that a pid reused after the owner
   * died is not mistaken for it; null where the platform cannot tell.
   */
  readonly process_start?: string | null;
  /** The owner's `--start-timeout`: after it, a start still running is one its owner would have killed. */
  readonly start_timeout_ms?: number;
  /** A claim adopted from the Python tool's DISPATCHING row: its owner is the Python dispatcher, gone. */
  readonly imported?: boolean;
}

/** `orchesjob start` returned a job id. */
export interface DispatchedData {
  readonly job_id: string;
  /** True when the job was found by asking orchesjob after a crash, not from the start's output. */
  readonly recovered?: boolean;
}

/** `orchesjob start` did not return a job id. */
export interface DispatchFailedData {
  /** Human-readable cause: orchesjob's exit code and stderr, trimmed to 4000 characters. */
  readonly error: string;
  readonly exit_code: number | null;
}

/** `expires_at` passed before the reservation was claimed. */
export interface ExpiredData {
  readonly expires_at: number;
}

/** A person or script cancelled the reservation before dispatch. */
export type CancelledData = Readonly<Record<string, never>>;

/** `clean` removed the reservation from the projection; its history stays in the ledger. */
export type CleanedData = Readonly<Record<string, never>>;

/** A claim whose owner is gone was handed back: DISPATCHING -> RESERVED. */
export interface ClaimReleasedData {
  readonly reason: string;
  readonly previous_owner: ClaimOwner | null;
}

/**
 * A start failed and attempts are left: DISPATCHING -> RESERVED, due again at `retry_at`. The last
 * attempt's failure is a `DispatchFailed` instead, so every attempt's error stays in the history.
 */
export interface DispatchAttemptFailedData {
  readonly error: string;
  readonly exit_code: number | null;
  /** Which attempt failed, from 1. */
  readonly attempt: number;
  readonly max_attempts: number;
  /** Epoch seconds at which the next attempt is due. */
  readonly retry_at: number;
}

/**
 * `run --policy` refused a due reservation made through the gate (its key may no longer make it):
 * RESERVED -> DISPATCH_FAILED without a claim and without a start; a retry would be refused too.
 */
export interface DispatchRefusedData {
  /** Why: `refused by policy: ...`. */
  readonly error: string;
}

/**
 * An operator gave a RESERVED reservation new times (`reschedule`). Both values are the ones in force
 * after it, kept or changed; a new `not_before` replaces a pending retry's time.
 */
export interface RescheduledData {
  readonly not_before: number | null;
  readonly expires_at: number | null;
  readonly previous_not_before: number | null;
  readonly previous_expires_at: number | null;
}

/**
 * An operator put a DISPATCH_FAILED or EXPIRED reservation back in the queue (`requeue`): RESERVED
 * again under the same run key and id, attempts from 0; the earlier errors stay in the history.
 */
export interface RequeuedData extends RescheduledData {
  readonly previous_status: 'DISPATCH_FAILED' | 'EXPIRED';
}

/** `pause`: no dispatcher on the file claims anything until `DispatchResumed`, or until `until` passes. */
export interface DispatchPausedData {
  readonly reason: string | null;
  /** Epoch seconds at which the pause ends by itself, or null for a pause until `resume`. */
  readonly until: number | null;
}

/** `resume`, or a dispatcher noting that a pause's `until` passed (`until_passed`). */
export interface DispatchResumedData {
  readonly until_passed?: boolean;
}

export interface EventDataByType {
  Reserved: ReservedData;
  DispatchClaimed: DispatchClaimedData;
  Dispatched: DispatchedData;
  DispatchFailed: DispatchFailedData;
  Expired: ExpiredData;
  Cancelled: CancelledData;
  Cleaned: CleanedData;
  ClaimReleased: ClaimReleasedData;
  DispatchAttemptFailed: DispatchAttemptFailedData;
  DispatchRefused: DispatchRefusedData;
  Rescheduled: RescheduledData;
  Requeued: RequeuedData;
  DispatchPaused: DispatchPausedData;
  DispatchResumed: DispatchResumedData;
}

/** What `decide` returns: the fact, before the ledger gives it an id, a version and a time. */
export type NewEvent = {
  [T in EventType]: { readonly type: T; readonly data: EventDataByType[T] };
}[EventType];

/** The envelope every stored event has. */
export interface EventMeta {
  readonly eventId: string;
  readonly reservationId: string;
  readonly runKey: string;
  readonly version: number;
  /** Epoch seconds, the unit of every time in this project's tables. */
  readonly recordedAt: number;
  /** Epoch milliseconds, for latency forensics. */
  readonly recordedAtMs: number;
  /** `cli:reserve`, `cli:cancel`, `dispatcher:<id>`, `import` ... */
  readonly actor: string;
}

/** A ledger event. `position` is known once it has been appended. */
export type ReservationEvent = NewEvent & EventMeta & { readonly position?: number };

export type EventOf<T extends EventType> = Extract<ReservationEvent, { type: T }>;
