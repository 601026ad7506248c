import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Reservation, ReservationState } from '../events/index.js';
import { evolve } from '../events/index.js';
import type { EventSource } from '../events/store.js';
import { lastPosition, streamEvents } from '../events/store.js';
import type { Progress } from '../progress.js';
import { progress } from '../progress.js';
import { stringifySorted } from '../json.js';
import type { ReservationRow } from './reservations.js';
import { reservationToRow, writeProjection } from './reservations.js';

/**
 * Replaying the ledger: the state of every reservation folded from its events alone, at any position,
 * and compared with (or written over) the `reservations` projection.
 */

export interface Folded {
  /** Every stream's state, cleaned ones included (`cleaned: true`). */
  readonly states: Map<string, Reservation>;
  /** Position of the last event folded (0 when none). */
  readonly position: number;
  readonly events: number;
}

/** Progress is reported every this many events. */
const REPORT_EVERY = 5000;

/**
 * Fold the ledger in position order, up to and including `untilPosition`, or the events recorded at
 * or before `untilSecond` (whichever is given; the whole ledger otherwise).
 */
export async function foldLedger(
  source: EventSource,
  until: { position?: number; second?: number } = {},
  report: Progress = progress('replay', 'events'),
): Promise<Folded> {
  const states = new Map<string, Reservation>();
  const total = await lastPosition(source.db);
  let position = 0;
  let events = 0;
  try {
    // A generator left early (return) finalises its statement, freeing the connection.
    for (const event of streamEvents(source)) {
      if (until.position !== undefined && event.position > until.position) break;
      if (until.second !== undefined && event.recordedAt > until.second) break;
      const state: ReservationState = states.get(event.reservationId) ?? null;
      states.set(event.reservationId, evolve(state, event));
      position = event.position;
      events++;
      if (events % REPORT_EVERY === 0) {
        report.update(position, total);
        await null; // let the progress line (a promise) be printed
      }
    }
    return { states, position, events };
  } finally {
    report.finish();
  }
}

/** The live reservations of a fold, in `list` order (newest `created_at` first). */
export function liveReservations(folded: Folded): Reservation[] {
  return [...folded.states.values()]
    .filter((r) => !r.cleaned)
    .sort((a, b) => b.createdAt - a.createdAt || (a.reservationId < b.reservationId ? 1 : a.reservationId > b.reservationId ? -1 : 0));
}

export interface Mismatch {
  readonly reservation_id: string;
  readonly run_key: string;
  /** A column of `reservations`, or `row` when the row itself is missing from one side. */
  readonly field: string;
  readonly projection: unknown;
  readonly ledger: unknown;
}

/** Columns holding JSON text: compared by value, so `1.0` written by Python equals `1`. */
const JSON_COLUMNS = new Set(['command_json', 'metadata_json', 'orchesjob_start_options_json']);

/** What a stream-by-stream fold went through. */
interface FoldCount {
  events: number;
}

/**
 * The state of each reservation after all its events, one reservation at a time, in reservation-id
 * order, cleaned ones included. Only one reservation is held at a time, whatever the ledger's length.
 */
async function* foldStreams(source: EventSource, count: FoldCount, report: Progress, total: number): AsyncGenerator<Reservation> {
  let state: ReservationState = null;
  for (const event of streamEvents(source, 'stream')) {
    if (state !== null && state.reservationId !== event.reservationId) {
      yield state;
      state = null;
    }
    state = evolve(state, event);
    if (++count.events % REPORT_EVERY === 0) {
      report.update(count.events, total);
      await null; // let the progress line (a promise) be printed
    }
  }
  if (state !== null) yield state;
}

/**
 * Compare the projection with the fold of the whole ledger, column by column. The projection (the
 * live reservations) is read first; the ledger is then folded one reservation at a time, so memory
 * does not grow with history.
 */
export async function verifyProjection(
  source: EventSource,
): Promise<{ verified: boolean; events: number; reservations: number; mismatches: Mismatch[] }> {
  const rows = await source.db.selectFrom('reservations').selectAll().execute();
  const unexplained = new Map(rows.map((row) => [row.reservation_id, row]));
  const mismatches: Mismatch[] = [];
  const count: FoldCount = { events: 0 };
  const report = progress('verify', 'events');
  try {
    const total = await lastPosition(source.db); // the number of events, but for rolled-back positions
    for await (const state of foldStreams(source, count, report, total)) {
      const row = unexplained.get(state.reservationId);
      unexplained.delete(state.reservationId);
      if (state.cleaned) {
        if (row !== undefined) {
          mismatches.push({ reservation_id: row.reservation_id, run_key: row.run_key, field: 'row', projection: 'present', ledger: 'cleaned' });
        }
        continue;
      }
      if (row === undefined) {
        mismatches.push({ reservation_id: state.reservationId, run_key: state.runKey, field: 'row', projection: 'missing', ledger: state.status });
        continue;
      }
      const expected = reservationToRow(state) as ReservationRow;
      for (const column of Object.keys(expected) as (keyof ReservationRow)[]) {
        if (!sameValue(column, row[column], expected[column])) {
          mismatches.push({
            reservation_id: row.reservation_id,
            run_key: row.run_key,
            field: column,
            projection: row[column],
            ledger: expected[column],
          });
        }
      }
    }
  } finally {
    report.finish();
  }
  for (const row of unexplained.values()) {
    mismatches.push({ reservation_id: row.reservation_id, run_key: row.run_key, field: 'row', projection: 'present', ledger: 'no events' });
  }
  return { verified: mismatches.length === 0, events: count.events, reservations: rows.length, mismatches };
}

function sameValue(column: string, actual: unknown, expected: unknown): boolean {
  if (actual === expected) return true;
  if (JSON_COLUMNS.has(column) && typeof actual === 'string' && typeof expected === 'string') {
    try {
      return stringifySorted(JSON.parse(actual)) === stringifySorted(JSON.parse(expected));
    } catch {
      return actual === expected;
    }
  }
  return false;
}

/**
 * Replace the whole projection with the fold of the ledger, in the caller's transaction. The one
 * write to `reservations` that appends no event: it changes no state, it re-derives it.
 */
export async function rebuildProjection(
  tx: Kysely<Database>,
  raw: EventSource['raw'],
): Promise<{ events: number; reservations: number }> {
  const count: FoldCount = { events: 0 };
  const report = progress('rebuild', 'events');
  const live: Reservation[] = [];
  try {
    const total = await lastPosition(tx);
    for await (const state of foldStreams({ db: tx, raw }, count, report, total)) if (!state.cleaned) live.push(state);
  } finally {
    report.finish();
  }
  // Written once the fold is done: the connection cannot write while it steps the events.
  await tx.deleteFrom('reservations').execute();
  for (const state of live) await writeProjection(tx, state);
  return { events: count.events, reservations: live.length };
}
