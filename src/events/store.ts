import type BetterSqlite3 from 'better-sqlite3';
import type { Kysely, Selectable } from 'kysely';
import { prepared } from '../db/prepared.js';
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
      const [row] = await insertEvent(
        tx,
        event.eventId,
        event.reservationId,
        event.version,
        event.runKey,
        event.type,
        JSON.stringify(event.data),
        event.recordedAt,
        event.recordedAtMs,
        event.actor,
      );
      stored.push({ ...event, position: (row as { position: number }).position });
    } catch (error) {
      if (isStreamVersionConflict(error)) throw new ConcurrencyError(event.reservationId, event.version);
      throw error;
    }
  }
  return stored;
}

const insertEvent = prepared(
  (
    db,
    event_id: string,
    reservation_id: string,
    version: number,
    run_key: string,
    type: EventRow['type'],
    data: string,
    recorded_at: number,
    recorded_at_ms: number,
    actor: string,
  ) =>
    db
      .insertInto('reservation_events')
      .values({ event_id, reservation_id, version, run_key, type, data, recorded_at, recorded_at_ms, actor })
      .returning('position'),
);

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
  return (await selectEventsAfter(db, position, limit)).map(rowToEvent);
}

const selectEventsAfter = prepared((db, position: number, limit: number) =>
  db.selectFrom('reservation_events').selectAll().where('position', '>', position).orderBy('position').limit(limit),
);

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
 * Every event, one at a time, in ledger order (`position`): replaying a million events
 * (`replay --position/--as-of`; `--verify` and `--rebuild` read stream by stream, `readStreamPage`).
 *
 * Kysely builds the query; better-sqlite3 steps it returning each row as an array, which costs half
 * of what building an object per row does. The connection is busy until the iteration ends: run
 * nothing else on it meanwhile.
 */
export function* streamEvents({ db, raw }: EventSource): Generator<StoredEvent> {
  const query = db.selectFrom('reservation_events').select(EVENT_COLUMNS).orderBy('position').compile();
  const statement = raw.prepare(query.sql).raw(true);
  for (const row of statement.iterate(...query.parameters) as IterableIterator<unknown[]>) yield eventOfColumns(row);
}

/** Where a stream-order page ends: the next page starts after this event. */
export interface StreamCursor {
  readonly reservationId: string;
  readonly version: number;
}

/**
 * Up to `limit` events after `after`, in stream order (`(reservation_id, version)`, the order of the
 * ledger's unique index, which each page seeks into). Read in pages, the ledger leaves the connection
 * free between two of them for other reads (`replay --verify` reads the projection alongside); run
 * them in one read transaction for one snapshot. Stepped as arrays, as `streamEvents`.
 */
export function readStreamPage({ db, raw }: EventSource, after: StreamCursor | null, limit: number): StoredEvent[] {
  let select = db.selectFrom('reservation_events').select(EVENT_COLUMNS);
  if (after !== null) {
    select = select.where((eb) => eb(eb.refTuple('reservation_id', 'version'), '>', eb.tuple(after.reservationId, after.version)));
  }
  const query = select.orderBy('reservation_id').orderBy('version').limit(limit).compile();
  const rows = raw.prepare(query.sql).raw(true).all(...query.parameters) as unknown[][];
  return rows.map(eventOfColumns);
}

/** An event from the array of EVENT_COLUMNS (rowToEvent, for raw rows). */
function eventOfColumns(row: unknown[]): StoredEvent {
  return {
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

/** The ledger's last position, 0 when empty. */
export async function lastPosition(db: Handle): Promise<number> {
  const row = await db
    .selectFrom('reservation_events')
    .select((eb) => eb.fn.max('position').as('last'))
    .executeTakeFirst();
  return Number(row?.last ?? 0);
}
