import type { Reservation, ReservationState } from './evolve.js';
import { ALLOWED_FROM, statusOf } from './evolve.js';
import type { ClaimOwner, EventType, NewEvent, RescheduledData, ReservationStatus } from './types.js';

/**
 * What a caller asks of a reservation. It carries no time: `decide` is given the transaction's one
 * clock reading beside it.
 */
export type ReservationCommand =
  | {
      readonly type: 'Reserve';
      /** The run key the new stream is for; a live reservation of it makes `Reserve` a no-op. */
      readonly runKey: string;
      readonly command: readonly string[];
      readonly orchesjobStartOptions: readonly string[];
      readonly metadata: Readonly<Record<string, unknown>> | null;
      readonly notBefore: number | null;
      readonly expiresAt: number | null;
      /** Starts to try before DISPATCH_FAILED (default 1) and seconds between them. */
      readonly maxAttempts?: number;
      readonly retryDelay?: number;
    }
  | {
      readonly type: 'Claim';
      readonly owner: ClaimOwner & { readonly process_start?: string | null };
      readonly argv: readonly string[];
      readonly startTimeoutMs?: number;
    }
  | { readonly type: 'RecordDispatch'; readonly jobId: string; readonly recovered?: boolean }
  | { readonly type: 'RecordFailure'; readonly error: string; readonly exitCode: number | null }
  /** `run --policy`: a due reservation its gate key may no longer make; `reason` is `refused by policy: ...`. */
  | { readonly type: 'Refuse'; readonly reason: string }
  | { readonly type: 'Expire' }
  | { readonly type: 'Cancel' }
  | { readonly type: 'Clean' }
  | { readonly type: 'ReleaseClaim'; readonly reason: string }
  /** `reschedule`: new times for a RESERVED reservation; an absent field keeps its value. */
  | ({ readonly type: 'Reschedule' } & NewTimes)
  /** `requeue`: DISPATCH_FAILED or EXPIRED back to RESERVED; an absent field keeps its value. */
  | ({ readonly type: 'Requeue' } & NewTimes);

/** The times `reschedule` and `requeue` set: a number or null (`--no-expiry`) replaces, undefined keeps. */
export interface NewTimes {
  readonly notBefore?: number;
  readonly expiresAt?: number | null;
}

/** The dispatch control's state as a claim sees it (src/events/control.ts, `effectivePause`). */
export interface DispatchGate {
  readonly paused: boolean;
}

/** The event type each command leads to (RecordFailure: or DispatchAttemptFailed, from the same states). */
const EVENT_OF: { readonly [C in ReservationCommand['type']]: EventType } = {
  Reserve: 'Reserved',
  Claim: 'DispatchClaimed',
  RecordDispatch: 'Dispatched',
  RecordFailure: 'DispatchFailed',
  Refuse: 'DispatchRefused',
  Expire: 'Expired',
  Cancel: 'Cancelled',
  Clean: 'Cleaned',
  ReleaseClaim: 'ClaimReleased',
  Reschedule: 'Rescheduled',
  Requeue: 'Requeued',
};

/** The command is not allowed in the reservation's current status (or not yet, for `Claim`). */
export class IllegalTransitionError extends Error {
  constructor(
    readonly command: ReservationCommand['type'],
    readonly from: ReservationStatus | 'NONE',
    detail?: string,
  ) {
    super(detail ?? `cannot ${command} a reservation in status ${from}`);
    this.name = 'IllegalTransitionError';
  }
}

/**
 * The command is allowed in this state, but not with these values (a new `expires_at` before
 * `not_before`, a requeue that would expire at once): the caller's input is wrong (exit 2).
 */
export class RejectedCommandError extends Error {
  constructor(
    readonly command: ReservationCommand['type'],
    message: string,
  ) {
    super(message);
    this.name = 'RejectedCommandError';
  }
}

/** Most `failed` dispatch errors come from orchesjob's stderr; keep the ledger and the log bounded. */
export const MAX_ERROR_CHARS = 4000;

/**
 * Decide which events a command produces. Pure: the state, the command and the clock reading `nowMs`
 * (epoch milliseconds, the write transaction's) are all it knows. Throws `IllegalTransitionError` when the state machine forbids the command.
 *
 * `Reserve` is decided against the run key's live reservation (or null): a live one makes it a no-op,
 * which is what makes `reserve` idempotent. A `Claim` is refused while `dispatch` says paused (the
 * ledger passes the control stream's state with every claim).
 */
export function decide(state: ReservationState, command: ReservationCommand, nowMs: number, dispatch?: DispatchGate): NewEvent[] {
  const from = statusOf(state);
  if (command.type === 'Reserve') {
    if (from !== 'NONE') return [];
    return [
      {
        type: 'Reserved',
        data: {
          command: command.command,
          orchesjob_start_options: command.orchesjobStartOptions,
          metadata: command.metadata,
          not_before: command.notBefore,
          expires_at: command.expiresAt,
          ...((command.maxAttempts ?? 1) > 1
            ? { max_attempts: command.maxAttempts, retry_delay: command.retryDelay ?? 0 }
            : {}),
        },
      },
    ];
  }
  if (!ALLOWED_FROM[EVENT_OF[command.type]].includes(from)) {
    throw new IllegalTransitionError(command.type, from);
  }
  const live = state as Reservation;
  switch (command.type) {
    case 'Claim': {
      const dueMs = dueAtMs(live);
      if (nowMs < dueMs) {
        throw new IllegalTransitionError('Claim', from, `reservation is not due until ${live.notBefore}`);
      }
      if (isExpiredAt(live, nowMs)) {
        throw new IllegalTransitionError('Claim', from, `reservation expired at ${live.expiresAt}`);
      }
      if (dispatch?.paused === true) throw new IllegalTransitionError('Claim', from, 'dispatching is paused');
      return [
        {
          type: 'DispatchClaimed',
          data: {
            dispatcher_id: command.owner.dispatcher_id,
            host: command.owner.host,
            pid: command.owner.pid,
            ...(command.owner.process_start === undefined ? {} : { process_start: command.owner.process_start }),
            argv: command.argv,
            late_by_ms: Math.max(0, nowMs - dueMs),
            ...(command.startTimeoutMs === undefined ? {} : { start_timeout_ms: command.startTimeoutMs }),
          },
        },
      ];
    }
    case 'RecordDispatch':
      if (command.jobId === '') throw new IllegalTransitionError('RecordDispatch', from, 'job id is empty');
      return [
        {
          type: 'Dispatched',
          data: command.recovered ? { job_id: command.jobId, recovered: true } : { job_id: command.jobId },
        },
      ];
    case 'RecordFailure': {
      const error = truncate(command.error, MAX_ERROR_CHARS);
      const attempt = live.attempts + 1;
      if (attempt < live.maxAttempts) {
        return [
          {
            type: 'DispatchAttemptFailed',
            data: {
              error,
              exit_code: command.exitCode,
              attempt,
              max_attempts: live.maxAttempts,
              retry_at: Math.floor(nowMs / 1000) + live.retryDelay,
            },
          },
        ];
      }
      return [{ type: 'DispatchFailed', data: { error, exit_code: command.exitCode } }];
    }
    case 'Refuse':
      return [{ type: 'DispatchRefused', data: { error: truncate(command.reason, MAX_ERROR_CHARS) } }];
    case 'Expire':
      if (!isExpiredAt(live, nowMs)) {
        throw new IllegalTransitionError('Expire', from, 'reservation has not reached expires_at');
      }
      return [{ type: 'Expired', data: { expires_at: live.expiresAt as number } }];
    case 'Cancel':
      return [{ type: 'Cancelled', data: {} }];
    case 'Clean':
      return [{ type: 'Cleaned', data: {} }];
    case 'ReleaseClaim':
      return [{ type: 'ClaimReleased', data: { reason: command.reason, previous_owner: ownerOf(live) } }];
    case 'Reschedule':
      return [{ type: 'Rescheduled', data: newTimes(live, command) }];
    case 'Requeue': {
      const times = newTimes(live, command);
      if (times.expires_at !== null && times.expires_at * 1000 <= nowMs) {
        throw new RejectedCommandError(
          'Requeue',
          `expires_at ${times.expires_at} has passed: the reservation would expire again at once; give a new --expires-at or --no-expiry`,
        );
      }
      return [{ type: 'Requeued', data: { ...times, previous_status: from as 'DISPATCH_FAILED' | 'EXPIRED' } }];
    }
    default: {
      const unhandled: never = command;
      throw new Error(`unhandled command ${JSON.stringify(unhandled)}`);
    }
  }
}

/**
 * When a reservation becomes due, in epoch milliseconds: `not_before`, else its creation; after a
 * failed attempt, not before its retry time.
 */
export function dueAtMs(r: Reservation): number {
  const due = r.notBefore === null ? r.createdAtMs : r.notBefore * 1000;
  return r.retryAt === null ? due : Math.max(due, r.retryAt * 1000);
}

/** A reservation with `expires_at` expires at that second: at `now >= expires_at`, as in the Python tool. */
export function isExpiredAt(r: Reservation, nowMs: number): boolean {
  return r.expiresAt !== null && r.expiresAt * 1000 <= nowMs;
}

/** The times in force after a reschedule or requeue, beside the ones they replace. */
function newTimes(live: Reservation, times: NewTimes & { readonly type: 'Reschedule' | 'Requeue' }): RescheduledData {
  const notBefore = times.notBefore === undefined ? live.notBefore : times.notBefore;
  const expiresAt = times.expiresAt === undefined ? live.expiresAt : times.expiresAt;
  if (notBefore !== null && expiresAt !== null && expiresAt < notBefore) {
    throw new RejectedCommandError(
      times.type,
      `expires_at (${expiresAt}) is before not_before (${notBefore})`,
    );
  }
  return { not_before: notBefore, expires_at: expiresAt, previous_not_before: live.notBefore, previous_expires_at: live.expiresAt };
}

/** At most `max` characters (code points: a character is never cut in half). */
function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  return Array.from(text).slice(0, max).join('');
}

function ownerOf(r: Reservation): ClaimOwner | null {
  return r.claim === null ? null : { dispatcher_id: r.claim.dispatcher_id, host: r.claim.host, pid: r.claim.pid };
}
