import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { StoredEvent } from './store.js';
import { rowToEvent } from './store.js';

type Handle = Kysely<Database>;

/**
 * Every event ever recorded under a run key, in ledger order: the streams of all the reservations
 * that held it, across `clean` and re-reserve (`run_key` is copied on every event, so no join, and
 * `idx_reservation_events_run_key (run_key, position)` serves both the filter and the order).
 */
export async function readRunKeyHistory(db: Handle, runKey: string): Promise<StoredEvent[]> {
  const rows = await db
    .selectFrom('reservation_events')
    .selectAll()
    .where('run_key', '=', runKey)
    .orderBy('position')
    .execute();
  return rows.map(rowToEvent);
}

/**
 * One reservation's events in ledger order (the same order as its versions), whether or not it is
 * still in the projection: a cleaned reservation keeps its history.
 */
export async function readReservationHistory(db: Handle, reservationId: string): Promise<StoredEvent[]> {
  const rows = await db
    .selectFrom('reservation_events')
    .selectAll()
    .where('reservation_id', '=', reservationId)
    .orderBy('position')
    .execute();
  return rows.map(rowToEvent);
}

/** Who made a reservation: the actor of its `Reserved` event (version 1), or null when it has none. */
export async function reservedBy(db: Handle, reservationId: string): Promise<string | null> {
  const row = await db
    .selectFrom('reservation_events')
    .select('actor')
    .where('reservation_id', '=', reservationId)
    .where('version', '=', 1)
    .executeTakeFirst();
  return row?.actor ?? null;
}
