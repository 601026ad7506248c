import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { DispatchClaimedData } from '../events/index.js';
import type { StoredEvent } from '../events/store.js';
import { readStream } from '../events/store.js';
import { applyCommand, write } from '../ledger.js';
import { findClaimed, findById } from '../projections/reservations.js';
import { ownerLiveness } from './owner.js';

/**
 * Start-up recovery: release (`ClaimReleased`, DISPATCHING -> RESERVED) the claims whose owner process
 * is gone. A live owner's claims, and claims of owners on another host, are never touched: two
 * dispatchers on one file do not undo each other's work.
 */
export async function recoverStaleClaims(
  db: Kysely<Database>,
  ctx: { actor: string; clock: () => number },
): Promise<StoredEvent[]> {
  const released: StoredEvent[] = [];
  for (const claimed of await findClaimed(db)) {
    if (claimed.claim === null) continue;
    const claimEvent = (await readStream(db, claimed.reservationId)).findLast((e) => e.type === 'DispatchClaimed');
    const recordedStart = (claimEvent?.data as DispatchClaimedData | undefined)?.process_start;
    if (ownerLiveness(claimed.claim, recordedStart) !== 'gone') continue;
    const events = await write(db, async (tx) => {
      const current = await findById(tx, claimed.reservationId);
      // Re-check inside the lock: the claim may have been settled meanwhile.
      if (current === null || current.status !== 'DISPATCHING' || current.version !== claimed.version) return [];
      const nowMs = ctx.clock();
      const applied = await applyCommand(
        tx,
        current,
        { type: 'ReleaseClaim', reason: `owner ${claimed.claim?.dispatcher_id} (pid ${claimed.claim?.pid}) is gone` },
        { nowMs, actor: ctx.actor },
      );
      return applied.events;
    });
    released.push(...events);
  }
  return released;
}
