import type { Insertable, Kysely, Selectable } from 'kysely';
import { sql } from 'kysely';
import { prepared } from '../db/prepared.js';
import type { Database, ReservationsTable } from '../db/schema.js';
import { stringifySorted } from '../json.js';
import type { Reservation, ReservationStatus } from '../events/index.js';
import { TERMINAL_STATUSES } from '../events/index.js';

/** A `reservations` row as SQLite returns it. */
export type ReservationRow = Selectable<ReservationsTable>;

type Reader = Kysely<Database>;

/** Row -> domain. Rows stay snake_case; the domain is camelCase. */
export function rowToReservation(row: ReservationRow): Reservation {
  return {
    reservationId: row.reservation_id,
    runKey: row.run_key,
    status: row.reservation_status as ReservationStatus,
    jobId: row.job_id,
    command: JSON.parse(row.command_json) as string[],
    orchesjobStartOptions: JSON.parse(row.orchesjob_start_options_json || '[]') as string[],
    metadata: row.metadata_json === null ? null : (JSON.parse(row.metadata_json) as Record<string, unknown>),
    notBefore: row.not_before,
    expiresAt: row.expires_at,
    createdAt: row.created_at,
    createdAtMs: row.created_at_ms ?? row.created_at * 1000,
    updatedAt: row.updated_at,
    dispatchedAt: row.dispatched_at,
    lastError: row.last_error,
    version: row.version,
    maxAttempts: row.max_attempts,
    retryDelay: row.retry_delay,
    attempts: row.attempts,
    retryAt: row.retry_at,
    claim:
      row.claim_dispatcher_id === null
        ? null
        : {
            dispatcher_id: row.claim_dispatcher_id,
            host: row.claim_host ?? '',
            pid: row.claim_pid ?? 0,
            claimedAtMs: row.claimed_at_ms ?? 0,
          },
    cleaned: false,
  };
}

/**
 * Domain -> row. JSON columns are written compact with sorted keys, as the Python tool wrote them, so
 * that SQL comparing `metadata_json` text keeps matching.
 */
export function reservationToRow(r: Reservation): Insertable<ReservationsTable> {
  return {
    reservation_id: r.reservationId,
    run_key: r.runKey,
    command_json: canonicalJson(r.command),
    reservation_status: r.status,
    job_id: r.jobId,
    not_before: r.notBefore,
    expires_at: r.expiresAt,
    metadata_json: r.metadata === null ? null : canonicalJson(r.metadata),
    orchesjob_start_options_json: canonicalJson(r.orchesjobStartOptions),
    created_at: r.createdAt,
    updated_at: r.updatedAt,
    dispatched_at: r.dispatchedAt,
    last_error: r.lastError,
    version: r.version,
    created_at_ms: r.createdAtMs,
    claim_dispatcher_id: r.claim?.dispatcher_id ?? null,
    claim_host: r.claim?.host ?? null,
    claim_pid: r.claim?.pid ?? null,
    claimed_at_ms: r.claim?.claimedAtMs ?? null,
    attempts: r.attempts,
    max_attempts: r.maxAttempts,
    retry_delay: r.retryDelay,
    retry_at: r.retryAt,
  };
}

/**
 * Write a reservation's new state to the projection: upsert the row, or delete it once cleaned.
 * Called only by the ledger's write path, in the transaction that appended the events.
 */
export async function writeProjection(tx: Reader, r: Reservation): Promise<void> {
  if (r.cleaned) {
    await deleteRow(tx, r.reservationId);
    return;
  }
  const row = reservationToRow(r) as Record<ProjectionColumn, unknown>;
  await upsertRow(tx, ...PROJECTION_COLUMNS.map((column) => row[column]));
}

/** Every column `reservationToRow` writes, in the order `upsertRow` binds them. */
const PROJECTION_COLUMNS = [
  'reservation_id',
  'run_key',
  'command_json',
  'reservation_status',
  'job_id',
  'not_before',
  'expires_at',
  'metadata_json',
  'orchesjob_start_options_json',
  'created_at',
  'updated_at',
  'dispatched_at',
  'last_error',
  'version',
  'created_at_ms',
  'claim_dispatcher_id',
  'claim_host',
  'claim_pid',
  'claimed_at_ms',
  'attempts',
  'max_attempts',
  'retry_delay',
  'retry_at',
] as const satisfies readonly (keyof ReservationsTable)[];
type ProjectionColumn = (typeof PROJECTION_COLUMNS)[number];

const upsertRow = prepared((db, ...values: unknown[]) =>
  db
    .insertInto('reservations')
    .values(Object.fromEntries(PROJECTION_COLUMNS.map((column, i) => [column, values[i]])) as Insertable<ReservationsTable>)
    .onConflict((oc) =>
      oc
        .column('reservation_id')
        .doUpdateSet((eb) =>
          Object.fromEntries(
            PROJECTION_COLUMNS.filter((c) => c !== 'reservation_id').map((c) => [c, eb.ref(`excluded.${c}`)]),
          ),
        ),
    ),
);

const deleteRow = prepared((db, reservationId: string) =>
  db.deleteFrom('reservations').where('reservation_id', '=', reservationId),
);

export async function findByRunKey(db: Reader, runKey: string): Promise<Reservation | null> {
  const [row] = await selectByRunKey(db, runKey);
  return row === undefined ? null : rowToReservation(row);
}

const selectByRunKey = prepared((db, runKey: string) => db.selectFrom('reservations').selectAll().where('run_key', '=', runKey));

export async function findById(db: Reader, reservationId: string): Promise<Reservation | null> {
  const [row] = await selectById(db, reservationId);
  return row === undefined ? null : rowToReservation(row);
}

const selectById = prepared((db, reservationId: string) =>
  db.selectFrom('reservations').selectAll().where('reservation_id', '=', reservationId),
);

/** `list`: newest `created_at` first (ties: newest id first), optionally one status, optionally one run-key prefix. */
export async function listReservations(
  db: Reader,
  filter: { status: ReservationStatus | null; limit: number; runKeyPrefix?: string },
): Promise<Reservation[]> {
  let query = db.selectFrom('reservations').selectAll();
  if (filter.status !== null) query = query.where('reservation_status', '=', filter.status);
  const prefix = filter.runKeyPrefix ?? '';
  // substr and length count characters alike, and `=` compares bytes: no LIKE wildcards to escape.
  if (prefix !== '') query = query.where(sql<boolean>`substr(run_key, 1, length(${prefix})) = ${prefix}`);
  const rows = await query
    .orderBy('created_at', 'desc')
    .orderBy('reservation_id', 'desc')
    .limit(filter.limit)
    .execute();
  return rows.map(rowToReservation);
}

function canonicalJson(value: unknown): string {
  return stringifySorted(value);
}

/** What `clean` selects: terminal reservations, by one id, or by run key and an `updated_at` range. */
export type CleanSelection =
  | { readonly by: 'job_id'; readonly jobId: string }
  | { readonly by: 'reservation_id'; readonly reservationId: string }
  | {
      readonly by: 'range';
      readonly runKey: string | null;
      /** `updated_at < before` */
      readonly before: number | null;
      /** `updated_at >= after` */
      readonly after: number | null;
    };

/** Terminal reservations matching a selection, oldest `updated_at` first. */
export async function findCleanable(db: Reader, selection: CleanSelection): Promise<Reservation[]> {
  let query = db
    .selectFrom('reservations')
    .selectAll()
    .where('reservation_status', 'in', TERMINAL_STATUSES as ReservationStatus[]);
  if (selection.by === 'job_id') query = query.where('job_id', '=', selection.jobId);
  else if (selection.by === 'reservation_id') query = query.where('reservation_id', '=', selection.reservationId);
  else {
    if (selection.runKey !== null) query = query.where('run_key', '=', selection.runKey);
    if (selection.before !== null) query = query.where('updated_at', '<', selection.before);
    if (selection.after !== null) query = query.where('updated_at', '>=', selection.after);
  }
  const rows = await query.orderBy('updated_at').orderBy('reservation_id').execute();
  return rows.map(rowToReservation);
}

/**
 * The dispatcher's ready queue: RESERVED, due (`COALESCE(not_before, created_at) <= now`, and a
 * retry's `retry_at <= now`) and not expired, in the Python tool's order. Served by
 * `idx_reservations_ready`.
 */
export async function findReady(db: Reader, nowSec: number, limit: number): Promise<Reservation[]> {
  return (await selectReady(db, nowSec, limit)).map(rowToReservation);
}

const selectReady = prepared((db, nowSec: number, limit: number) =>
  db
    .selectFrom('reservations')
    .selectAll()
    .where('reservation_status', '=', 'RESERVED')
    .where(sql<number>`COALESCE(not_before, created_at)`, '<=', nowSec)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', nowSec)]))
    .where((eb) => eb.or([eb('retry_at', 'is', null), eb('retry_at', '<=', nowSec)]))
    .orderBy(sql`COALESCE(not_before, created_at)`)
    .orderBy('created_at')
    .limit(limit),
);

/** RESERVED reservations whose `expires_at` has come (`expires_at <= now`). */
export async function findExpiring(db: Reader, nowSec: number): Promise<Reservation[]> {
  return (await selectExpiring(db, nowSec)).map(rowToReservation);
}

const selectExpiring = prepared((db, nowSec: number) =>
  db
    .selectFrom('reservations')
    .selectAll()
    .where('reservation_status', '=', 'RESERVED')
    .where('expires_at', '<=', nowSec)
    .orderBy('expires_at')
    .orderBy('reservation_id'),
);

/**
 * The earliest second at which a RESERVED reservation becomes due or expires, or null when none
 * waits: the dispatcher sleeps until then (or its poll interval, whichever comes first).
 */
export async function nextDueAt(db: Reader): Promise<number | null> {
  const { nextDueSec, nextExpirySec } = await nextWakeTimes(db);
  const times = [nextDueSec, nextExpirySec].filter((t): t is number => t !== null);
  return times.length === 0 ? null : Math.min(...times);
}

/**
 * `nextDueAt`'s two times apart: the earliest due (`not_before`, retry) and the earliest `expires_at`;
 * with `afterSec`, the earliest strictly after it (what the loop sleeps until while it passes over
 * reservations already due, the gated ones `run --policy` holds).
 */
export async function nextWakeTimes(
  db: Reader,
  afterSec: number | null = null,
): Promise<{ nextDueSec: number | null; nextExpirySec: number | null }> {
  const [due] = afterSec === null ? await selectNextDue(db) : await selectNextDueAfter(db, afterSec);
  const [expiry] = afterSec === null ? await selectNextExpiry(db) : await selectNextExpiryAfter(db, afterSec);
  const at = (row: { at: number | null } | undefined) => (typeof row?.at === 'number' ? row.at : null);
  return { nextDueSec: at(due), nextExpirySec: at(expiry) };
}

const selectNextDue = prepared((db) => nextDueQueries(db).due);
const selectNextExpiry = prepared((db) => nextDueQueries(db).expiry);
const selectNextDueAfter = prepared((db, afterSec: number) =>
  nextDueQueries(db).due.where(sql<number>`MAX(COALESCE(not_before, created_at), COALESCE(retry_at, 0))`, '>', afterSec),
);
const selectNextExpiryAfter = prepared((db, afterSec: number) => nextDueQueries(db).expiry.where('expires_at', '>', afterSec));

/**
 * Whether a RESERVED reservation's `expires_at` has come. One index entry (the first non-null
 * `expires_at`), where `findExpiring` steps over every waiting reservation without one.
 */
export async function anyExpiring(db: Reader, nowSec: number): Promise<boolean> {
  const [expiry] = await selectNextExpiry(db);
  return typeof expiry?.at === 'number' && expiry.at <= nowSec;
}

/**
 * `nextDueAt`'s two reads, each answered from the first entry of an index whatever the number of
 * waiting rows: `idx_reservations_due` (migration 0004) indexes the due expression exactly as written
 * here, and `idx_reservations_status_expires_at` serves the expiry. Apart so that a test can check
 * their query plans.
 */
export function nextDueQueries(db: Reader) {
  return {
    due: db
      .selectFrom('reservations')
      .select(sql<number | null>`MIN(MAX(COALESCE(not_before, created_at), COALESCE(retry_at, 0)))`.as('at'))
      .where('reservation_status', '=', 'RESERVED'),
    expiry: db
      .selectFrom('reservations')
      .select((eb) => eb.fn.min('expires_at').as('at'))
      .where('reservation_status', '=', 'RESERVED')
      .where('expires_at', 'is not', null),
  };
}

/** Every live claim (DISPATCHING), for start-up recovery. */
export async function findClaimed(db: Reader): Promise<Reservation[]> {
  const rows = await db
    .selectFrom('reservations')
    .selectAll()
    .where('reservation_status', '=', 'DISPATCHING')
    .orderBy('updated_at')
    .execute();
  return rows.map(rowToReservation);
}

/** The run keys of the reservations whose job is `jobId` (the gate's `orchesjob status --job-id`). */
export async function runKeysOfJob(db: Reader, jobId: string): Promise<string[]> {
  const rows = await db.selectFrom('reservations').select('run_key').where('job_id', '=', jobId).execute();
  return rows.map((r) => r.run_key);
}
