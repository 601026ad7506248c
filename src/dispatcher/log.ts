import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { ReservationEvent, ReservationState } from '../events/index.js';
import { fold } from '../events/index.js';
import type { StoredEvent } from '../events/store.js';
import { readStream } from '../events/store.js';
import { stringifySorted } from '../json.js';
import { isoUtc, localIso } from '../output.js';

/**
 * The dispatcher's JSON Lines. Ledger events are printed from the ledger, one line per event, with
 * the Python tool's event names and fields (log parsers read them) plus `position` and `event_id`.
 * Every line has `event`, `ts` (ISO 8601, local offset, whole seconds) and `ts_epoch`.
 */

export type LogLine = Record<string, unknown> & { readonly event: string };

/** The log event name of each ledger event type. */
export const LOG_EVENT_OF = {
  Reserved: 'reservation_accepted',
  DispatchClaimed: 'orchesjob_start_call',
  Dispatched: 'dispatch_succeeded',
  DispatchFailed: 'dispatch_failed',
  Expired: 'reservation_expired',
  Cancelled: 'reservation_cancelled',
  Cleaned: 'reservation_cleaned',
  ClaimReleased: 'recovered_dispatching',
  DispatchAttemptFailed: 'dispatch_attempt_failed',
  DispatchRefused: 'dispatch_refused',
  Rescheduled: 'reservation_rescheduled',
  Requeued: 'reservation_requeued',
  DispatchPaused: 'dispatch_paused',
  DispatchResumed: 'dispatch_resumed',
} as const satisfies Record<ReservationEvent['type'], string>;

/**
 * The line for one ledger event. `state` is the reservation as it was right after the event (needed
 * only for `reservation_expired`, whose fields describe the whole reservation).
 */
export function eventLine(event: StoredEvent, state: ReservationState): LogLine {
  const base = {
    ...timestamp(event.recordedAtMs),
    event: LOG_EVENT_OF[event.type],
    position: event.position,
    event_id: event.eventId,
    reservation_id: event.reservationId,
    run_key: event.runKey,
  };
  switch (event.type) {
    case 'Reserved':
      return {
        ...base,
        reservation_status: 'RESERVED',
        command: event.data.command,
        orchesjob_start_options: event.data.orchesjob_start_options,
        not_before: event.data.not_before,
        expires_at: event.data.expires_at,
        created_at: event.recordedAt,
      };
    case 'DispatchClaimed':
      return {
        ...base,
        command: event.data.argv,
        dispatcher_id: event.data.dispatcher_id,
        late_by_ms: event.data.late_by_ms,
      };
    case 'Dispatched':
      return { ...base, job_id: event.data.job_id, ...(event.data.recovered ? { recovered: true } : {}) };
    case 'DispatchFailed':
      return { ...base, error: event.data.error, exit_code: event.data.exit_code };
    case 'Expired':
      return {
        ...base,
        reservation_status: 'EXPIRED',
        command: state?.command ?? null,
        not_before: state?.notBefore ?? null,
        expires_at: event.data.expires_at,
        created_at: state?.createdAt ?? null,
        updated_at: event.recordedAt,
        last_error: state?.lastError ?? null,
      };
    case 'Cancelled':
      return { ...base, actor: event.actor };
    case 'Cleaned':
      return { ...base, actor: event.actor };
    case 'DispatchAttemptFailed':
      return {
        ...base,
        error: event.data.error,
        exit_code: event.data.exit_code,
        attempt: event.data.attempt,
        max_attempts: event.data.max_attempts,
        retry_at: event.data.retry_at,
      };
    case 'DispatchRefused':
      return { ...base, error: event.data.error };
    case 'ClaimReleased':
      return { ...base, count: 1, reason: event.data.reason, previous_owner: event.data.previous_owner };
    case 'Rescheduled':
    case 'Requeued':
      return { ...base, ...event.data, actor: event.actor };
    case 'DispatchPaused': {
      // The control stream is no reservation: its line has no reservation id or run key.
      const { reservation_id: _id, run_key: _key, ...control } = base;
      return { ...control, actor: event.actor, reason: event.data.reason, until: event.data.until, until_iso: isoUtc(event.data.until) };
    }
    case 'DispatchResumed': {
      const { reservation_id: _id, run_key: _key, ...control } = base;
      return { ...control, actor: event.actor, until_passed: event.data.until_passed === true };
    }
    default: {
      const unhandled: never = event;
      throw new Error(`unhandled event ${JSON.stringify(unhandled)}`);
    }
  }
}

/** A line that is not a ledger event: `reserver_started`, `reserver_stopped`, `dispatcher_error` ... */
export function lifecycleLine(event: string, fields: Record<string, unknown>, nowMs: number): LogLine {
  return { ...fields, ...timestamp(nowMs), event };
}

/** `reserver_started`: how this dispatcher was configured. */
export function startedLine(
  o: {
    readonly dbLabel: string;
    readonly orchesjobBin: string;
    readonly startOptions: readonly string[];
    readonly pollIntervalMs: number;
    readonly dispatcherId: string;
    readonly maxConcurrentStarts: number;
    readonly startTimeoutMs: number;
    readonly spawner: string;
  },
  startedAtMs: number,
): LogLine {
  const fields = {
    db: o.dbLabel,
    orchesjob_bin: o.orchesjobBin,
    orchesjob_start_options: o.startOptions,
    poll_interval: o.pollIntervalMs / 1000,
    run_started_at: Math.floor(startedAtMs / 1000),
    dispatcher_id: o.dispatcherId,
    pid: process.pid,
    max_concurrent_starts: o.maxConcurrentStarts,
    start_timeout: o.startTimeoutMs / 1000,
    spawner: o.spawner,
  };
  return lifecycleLine('reserver_started', fields, startedAtMs);
}

/** `ts` in the host's local time with its offset, as the Python tool printed it, and `ts_epoch`. */
export function timestamp(ms: number): { ts: string; ts_epoch: number } {
  return { ts: localIso(ms), ts_epoch: Math.floor(ms / 1000) };
}

/** One JSON line, keys sorted. */
export function formatLine(line: LogLine): string {
  return stringifySorted(line);
}

/** The lines of a page of ledger events, in order, joined for one write. */
export async function eventLines(db: Kysely<Database>, events: readonly StoredEvent[]): Promise<string> {
  const lines: string[] = [];
  for (const event of events) lines.push(formatLine(eventLine(event, event.type === 'Expired' ? await stateAt(db, event) : null)));
  return lines.join('\n');
}

/** A reservation as it was right after `event` (the fold of its stream up to that version). */
async function stateAt(db: Kysely<Database>, event: StoredEvent): Promise<ReservationState> {
  const stream = await readStream(db, event.reservationId);
  return fold(stream.filter((e) => e.version <= event.version));
}
