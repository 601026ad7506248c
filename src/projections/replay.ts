import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { snapshot } from '../db/transaction.js';
import type { DispatchControl } from '../events/control.js';
import { evolveControl, isControlEvent, NOT_PAUSED } from '../events/control.js';
import type { Reservation, ReservationState } from '../events/index.js';
import { CONTROL_STREAM, evolve } from '../events/index.js';
import { clearControl, readControl, writeControl } from './control.js';
import type { EventSource, StreamCursor } from '../events/store.js';
import { lastPosition, readStreamPage, streamEvents } from '../events/store.js';
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
  /** The dispatch control stream's state at that position. */
  readonly control: DispatchControl;
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
  let control = NOT_PAUSED;
  try {
    // A generator left early (return) finalises its statement, freeing the connection.
    for (const event of streamEvents(source)) {
      if (until.position !== undefined && event.position > until.position) break;
      if (until.second !== undefined && event.recordedAt > until.second) break;
      if (isControlEvent(event)) control = evolveControl(control, event);
      else states.set(event.reservationId, evolve(states.get(event.reservationId) ?? null, event));
      position = event.position;
      events++;
      if (events % REPORT_EVERY === 0) {
        report.update(position, total);
        await null; // let the progress line (a promise) be printed
      }
    }
    return { states, position, events, control };
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
  /** The control stream, folded on the way (its events are no reservation's). */
  control: DispatchControl;
}

/** Events read per page by the stream-by-stream fold (tests pass small pages, to cross page ends). */
export const PAGE_EVENTS = 5000;

/**
 * The state of each reservation after all its events, in reservation-id order, cleaned ones included,
 * a page at a time: each yielded array holds the reservations whose streams ended in the page just
 * read (the last stream of a page may go on in the next). Memory holds one page, whatever the
 * ledger's length, and the connection is free while the consumer handles a page.
 */
async function* foldStreamPages(
  source: EventSource,
  count: FoldCount,
  report: Progress,
  total: number,
  pageEvents: number,
): AsyncGenerator<Reservation[]> {
  let state: ReservationState = null;
  let after: StreamCursor | null = null;
  for (;;) {
    const page = readStreamPage(source, after, pageEvents);
    const ended: Reservation[] = [];
    for (const event of page) {
      if (isControlEvent(event)) {
        count.control = evolveControl(count.control, event);
        continue;
      }
      if (state !== null && state.reservationId !== event.reservationId) {
        ended.push(state);
        state = null;
      }
      state = evolve(state, event);
    }
    count.events += page.length;
    const last = page.at(-1);
    if (last === undefined) {
      if (state !== null) yield [state];
      return;
    }
    after = { reservationId: last.reservationId, version: last.version };
    if (ended.length > 0) yield ended;
    report.update(count.events, total);
    await null; // let the progress line (a promise) be printed
  }
}

/**
 * Compare the projection with the fold of the whole ledger, column by column, in one read
 * transaction (one snapshot of both). The ledger is folded a page at a time in reservation-id order;
 * the projection rows of the same id range are read beside each page, so memory holds one page of
 * each, however many reservations and events there are.
 */
export async function verifyProjection(
  source: EventSource,
  pageEvents = PAGE_EVENTS,
): Promise<{ verified: boolean; events: number; reservations: number; mismatches: Mismatch[] }> {
  const mismatches: Mismatch[] = [];
  const count: FoldCount = { events: 0, control: NOT_PAUSED };
  let reservations = 0;
  const report = progress('verify', 'events');
  try {
    await snapshot(source.db, async (tx) => {
      const pages = { db: tx, raw: source.raw };
      const total = await lastPosition(tx); // the number of events, but for rolled-back positions
      // Rows with an id after `lower` and up to the page's last reservation: each row is read once.
      let lower: string | null = null;
      for await (const ended of foldStreamPages(pages, count, report, total, pageEvents)) {
        const upper = (ended.at(-1) as Reservation).reservationId;
        const rows = await projectionRange(tx, lower, upper);
        reservations += rows.length;
        compareRange(ended, rows, mismatches);
        lower = upper;
      }
      // Rows after the last stream: no events at all.
      const rows = await projectionRange(tx, lower, null);
      reservations += rows.length;
      compareRange([], rows, mismatches);
      compareControl(count.control, await readControl(tx), mismatches);
    });
  } finally {
    report.finish();
  }
  return { verified: mismatches.length === 0, events: count.events, reservations, mismatches };
}

/** Projection rows with `lower < reservation_id <= upper` (unbounded where null), in id order. */
function projectionRange(db: Kysely<Database>, lower: string | null, upper: string | null): Promise<ReservationRow[]> {
  let query = db.selectFrom('reservations').selectAll();
  if (lower !== null) query = query.where('reservation_id', '>', lower);
  if (upper !== null) query = query.where('reservation_id', '<=', upper);
  return query.orderBy('reservation_id').execute() as Promise<ReservationRow[]>;
}

/** Compare folded reservations with the projection rows of the same id range. */
function compareRange(folded: readonly Reservation[], rows: readonly ReservationRow[], mismatches: Mismatch[]): void {
  const unexplained = new Map(rows.map((row) => [row.reservation_id, row]));
  for (const state of folded) {
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
  for (const row of unexplained.values()) {
    mismatches.push({ reservation_id: row.reservation_id, run_key: row.run_key, field: 'row', projection: 'present', ledger: 'no events' });
  }
}

/** Compare the control stream's fold with its `dispatch_control` row. */
function compareControl(folded: DispatchControl, stored: DispatchControl, mismatches: Mismatch[]): void {
  for (const field of Object.keys(folded) as (keyof DispatchControl)[]) {
    if (folded[field] !== stored[field]) {
      mismatches.push({ reservation_id: CONTROL_STREAM.reservationId, run_key: CONTROL_STREAM.runKey, field, projection: stored[field], ledger: folded[field] });
    }
  }
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
  pageEvents = PAGE_EVENTS,
): Promise<{ events: number; reservations: number }> {
  const count: FoldCount = { events: 0, control: NOT_PAUSED };
  const report = progress('rebuild', 'events');
  let reservations = 0;
  try {
    const total = await lastPosition(tx);
    // The fold reads only events, so the old projection can go first; each page is written as it ends.
    await tx.deleteFrom('reservations').execute();
    for await (const ended of foldStreamPages({ db: tx, raw }, count, report, total, pageEvents)) {
      for (const state of ended) {
        if (state.cleaned) continue;
        await writeProjection(tx, state);
        reservations++;
      }
    }
    await clearControl(tx);
    if (count.control.version > 0) await writeControl(tx, count.control);
  } finally {
    report.finish();
  }
  return { events: count.events, reservations };
}
