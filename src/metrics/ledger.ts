import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import { prepared } from '../db/prepared.js';
import type { Database } from '../db/schema.js';
import type { Tx } from '../db/transaction.js';
import { snapshot } from '../db/transaction.js';
import { effectivePause } from '../events/control.js';
import { EVENT_TYPES, RESERVATION_STATUSES } from '../events/index.js';
import { readControl } from '../projections/control.js';

/**
 * What the metrics say of the ledger, read in one snapshot. Every read is a few rows or one index
 * range, whatever the ledger's size: the counts per type and per status are kept by triggers
 * (migration 0006), the due reservations are a range of `idx_reservations_due` (migration 0004), the
 * last position is the end of the ledger's primary key.
 */
export interface LedgerMetrics {
  /** Projection rows per status: every status, 0 included (and any other status a row holds). */
  readonly reservations: ReadonlyMap<string, number>;
  /** Ledger events per type: every type of `EVENT_TYPES`, 0 included (and any other type stored). */
  readonly events: ReadonlyMap<string, number>;
  /** RESERVED and due now (`not_before`, or creation, and a retry's `retry_at` passed), not claimed. */
  readonly due: number;
  /** How long the oldest due reservation has waited since it became due, in seconds; 0 when none. */
  readonly oldestDueAgeSeconds: number;
  /** The ledger's last position, 0 when empty. */
  readonly position: number;
  /** Whether dispatching is paused now. */
  readonly paused: boolean;
}

/** Read every ledger figure of the metrics at `nowMs`, in one read transaction. */
export function readLedgerMetrics(db: Kysely<Database>, nowMs: number): Promise<LedgerMetrics> {
  return snapshot(db, async (tx) => {
    const nowSec = Math.floor(nowMs / 1000);
    const [due] = await selectDue(tx, nowSec);
    const [last] = await selectLastPosition(tx);
    const oldest = typeof due?.oldest === 'number' ? due.oldest : null;
    return {
      reservations: counts(RESERVATION_STATUSES, (await selectStatusCounts(tx)).map((r) => [r.status, r.reservations])),
      events: counts(EVENT_TYPES, (await selectEventCounts(tx)).map((r) => [r.type, r.events])),
      due: Number(due?.due ?? 0),
      oldestDueAgeSeconds: oldest === null ? 0 : Math.max(0, nowMs / 1000 - oldest),
      position: Number(last?.last ?? 0),
      paused: await readPaused(tx, nowMs),
    };
  });
}

/** Whether dispatching is paused at `nowMs`: the `dispatch_control` row, a pause whose `until` passed counting as over. */
export async function readPaused(tx: Tx, nowMs: number): Promise<boolean> {
  return effectivePause(await readControl(tx), nowMs).paused;
}

/** Every name of `known` (0 unless counted), then any other name the table holds, with its count. */
function counts(known: readonly string[], rows: readonly (readonly [string, number])[]): Map<string, number> {
  const out = new Map<string, number>(known.map((name) => [name, 0]));
  for (const [name, n] of rows) out.set(name, Number(n));
  return out;
}

const selectStatusCounts = prepared((db) => db.selectFrom('metrics_status_counts').select(['status', 'reservations']).orderBy('status'));

const selectEventCounts = prepared((db) => db.selectFrom('metrics_event_counts').select(['type', 'events']).orderBy('type'));

const selectLastPosition = prepared((db) =>
  db.selectFrom('reservation_events').select((eb) => eb.fn.max('position').as('last')),
);

/** The due expression exactly as `idx_reservations_due` indexes it, so that the range is read from the index. */
const DUE_AT = sql<number>`MAX(COALESCE(not_before, created_at), COALESCE(retry_at, 0))`;

const selectDue = prepared((db, nowSec: number) => dueQuery(db, nowSec));

/** The due count and the oldest due time: one range of `idx_reservations_due`. Apart so that a test can check its plan. */
export function dueQuery(db: Kysely<Database>, nowSec: number) {
  return db
    .selectFrom('reservations')
    .select([sql<number>`count(*)`.as('due'), sql<number | null>`MIN(${DUE_AT})`.as('oldest')])
    .where('reservation_status', '=', 'RESERVED')
    .where(DUE_AT, '<=', nowSec);
}
