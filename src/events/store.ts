import type BetterSqlite3 from 'better-sqlite3';
import type { Kysely, Selectable } from 'kysely';
import type { Database, ReservationEventsTable } from '../db/schema.js';
import type { EventMeta, NewEvent, ReservationEvent } from './types.js';

type Handle = Kysely<Database>;

/** A `reservation_events` row as SQLite returns it. */
export type EventRow = Selectable<ReservationEventsTable>;

/** A stored event and where it sits in the ledger. */
export type StoredEvent = ReservationEvent & { readonly position: number };

/** Row -> domain. */
export function rowToEvent(row: EventRow): StoredEvent {
  return {
    position: row.position,
    eventId: row.event_id,
    reservationId: row.reservation_id,
    runKey: row.run_key,
    version: row.version,
    type: row.type,
    data: JSON.parse(row.data),
    recordedAt: row.recorded_at,
    recordedAtMs: row.recorded_at_ms,
    actor: row.actor,
  } as StoredEvent;
}

/** Give `decide`'s events their envelope: ids, consecutive versions, the time and the actor. */
export function stamp(
  events: readonly NewEvent[],
  stream: { reservationId: string; runKey: string; version: number },
  ctx: { nowMs: number; actor: string; newId: () => string },
): ReservationEvent[] {
  return events.map((event, i) => {
    const meta: EventMeta = {
      eventId: ctx.newId(),
      reservationId: stream.reservationId,
      runKey: stream.runKey,
      version: stream.version + i + 1,
      recordedAt: Math.floor(ctx.nowMs / 1000),
      recordedAtMs: ctx.nowMs,
      actor: ctx.actor,
    };
    return { ...event, ...meta } as ReservationEvent;
  });
}

/**
 * Append events to the ledger, inside the caller's transaction. `UNIQUE(reservation_id, version)`
 * turns a writer that decided on a stale version into a `ConcurrencyError` instead of a fork.
 */
export async function appendEvents(tx: Handle, events: readonly ReservationEvent[]): Promise<StoredEvent[]> {
  const stored: StoredEvent[] = [];
  for (const event of events) {
    try {
      const { position } = await tx
        .insertInto('reservation_events')
        .values({
          event_id: event.eventId,
          reservation_id: event.reservationId,
          version: event.version,
          run_key: event.runKey,
          type: event.type,
          data: JSON.stringify(event.data),
          recorded_at: event.recordedAt,
          recorded_at_ms: event.recordedAtMs,
          actor: event.actor,
        })
        .returning('position')
        .executeTakeFirstOrThrow();
      stored.push({ ...event, position });
    } catch (error) {
      if (isStreamVersionConflict(error)) throw new ConcurrencyError(event.reservationId, event.version);
      throw error;
    }
  }
  return stored;
}

/** Another writer appended to the stream first. The only error the write path retries. */
export class ConcurrencyError extends Error {
  constructor(
    readonly reservationId: string,
    readonly version: number,
  ) {
    super(`reservation ${reservationId} already has an event with version ${version}`);
    this.name = 'ConcurrencyError';
  }
}

function isStreamVersionConflict(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  return (
    e.code === 'SQLITE_CONSTRAINT_UNIQUE' &&
    (e.message ?? '').includes('reservation_events.reservation_id, reservation_events.version')
  );
}

/** One reservation's events, in order. */
export async function readStream(db: Handle, reservationId: string): Promise<StoredEvent[]> {
  const rows = await db
    .selectFrom('reservation_events')
    .selectAll()
    .where('reservation_id', '=', reservationId)
    .orderBy('version')
    .execute();
  return rows.map(rowToEvent);
}

/** Ledger events after `position` (exclusive), in ledger order. */
export async function readEventsAfter(db: Handle, position: number, limit = 1000): Promise<StoredEvent[]> {
  const rows = await db
    .selectFrom('reservation_events')
    .selectAll()
    .where('position', '>', position)
    .orderBy('position')
    .limit(limit)
    .execute();
  return rows.map(rowToEvent);
}

/** Where a whole-ledger read runs: Kysely builds the query, the native handle runs it. */
export interface EventSource {
  readonly db: Handle;
  readonly raw: BetterSqlite3.Database;
}

const EVENT_COLUMNS = [
  'position',
  'event_id',
  'reservation_id',
  'run_key',
  'version',
  'type',
  'data',
  'recorded_at',
  'recorded_at_ms',
  'actor',
] as const;

/**
 * Every event, one at a time: replaying a million events. In ledger order (`position`), or stream by
 * stream (`reservation_id`, then `version`: the order of the ledger's unique index, so that a fold
 * holds one reservation at a time).
 *
 * Kysely builds the query; better-sqlite3 steps it returning each row as an array, which costs half
 * of what building an object per row does. The connection is busy until the iteration ends: run
 * nothing else on it meanwhile.
 */
export function* streamEvents(
  { db, raw }: EventSource,
  order: 'ledger' | 'stream' = 'ledger',
): Generator<StoredEvent> {
  const select = db.selectFrom('reservation_events').select(EVENT_COLUMNS);
  const query = (order === 'ledger' ? select.orderBy('position') : select.orderBy('reservation_id').orderBy('version')).compile();
  const statement = raw.prepare(query.sql).raw(true);
  for (const row of statement.iterate(...query.parameters) as IterableIterator<unknown[]>) {
    // rowToEvent, from the array of EVENT_COLUMNS
    yield {
      position: row[0],
      eventId: row[1],
      reservationId: row[2],
      runKey: row[3],
      version: row[4],
      type: row[5],
      data: JSON.parse(row[6] as string),
      recordedAt: row[7],
      recordedAtMs: row[8],
      actor: row[9],
    } as StoredEvent;
  }
}

/** The ledger's last position, 0 when empty. */
export async function lastPosition(db: Handle): Promise<number> {
  const row = await db
    .selectFrom('reservation_events')
    .select((eb) => eb.fn.max('position').as('last'))
    .executeTakeFirst();
  return Number(row?.last ?? 0);
}
