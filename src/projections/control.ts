import type { Kysely } from 'kysely';
import { prepared } from '../db/prepared.js';
import type { Database } from '../db/schema.js';
import type { DispatchControl } from '../events/control.js';
import { NOT_PAUSED } from '../events/control.js';
import { CONTROL_STREAM } from '../events/types.js';

type Reader = Kysely<Database>;

/**
 * The dispatch control's projection (`dispatch_control`): one row, written in the transaction that
 * appends a control event, read by every claim and by `status`, `list`, `pause`.
 */

/** The stored control state (NOT_PAUSED when the stream has no events yet). */
export async function readControl(db: Reader): Promise<DispatchControl> {
  const [row] = await selectControl(db, CONTROL_STREAM.reservationId);
  if (row === undefined) return NOT_PAUSED;
  return { paused: row.paused === 1, reason: row.reason, until: row.until, since: row.since, actor: row.actor, version: row.version };
}

const selectControl = prepared((db, streamId: string) =>
  db.selectFrom('dispatch_control').select(['paused', 'reason', 'until', 'since', 'actor', 'version']).where('stream_id', '=', streamId),
);

/** Write the control state, inside the transaction that appended its events. */
export async function writeControl(tx: Reader, state: DispatchControl): Promise<void> {
  const row = {
    stream_id: CONTROL_STREAM.reservationId,
    paused: state.paused ? 1 : 0,
    reason: state.reason,
    until: state.until,
    since: state.since,
    actor: state.actor,
    version: state.version,
  };
  await tx
    .insertInto('dispatch_control')
    .values(row)
    .onConflict((oc) => oc.column('stream_id').doUpdateSet(row))
    .execute();
}

/** Remove the projection row (`replay --rebuild` writes it again from the ledger). */
export async function clearControl(tx: Reader): Promise<void> {
  await tx.deleteFrom('dispatch_control').execute();
}
