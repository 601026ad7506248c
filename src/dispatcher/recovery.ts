import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Reservation } from '../events/index.js';
import type { StoredEvent } from '../events/store.js';
import { write } from '../ledger.js';
import type { RecoveryClient } from '../orchesjob/client.js';
import { findClaimed, findById } from '../projections/reservations.js';
import type { RecordedClaim } from './owner.js';
import { ownerLiveness, recordedClaim } from './owner.js';
import type { Settlement } from './policy.js';
import { settleStaleClaim, staleClaimStep } from './policy.js';

/**
 * Recovery: deciding claims whose `orchesjob start` did not tell us its job id, without ever starting a
 * job twice (DESIGN.md, "Crash recovery").
 *
 * A start may have created the job and still failed (killed after creating it, timed out, crashed
 * before printing), and a dispatcher killed with SIGKILL leaves its start running: the start is a
 * separate process in its own process group and outlives it. So before a claim is released (and the
 * reservation re-queued) or a failure recorded:
 * 1. no process may still be running that start (found by its argv in /proc); an orphaned start older
 *    than its owner's start timeout is killed, as its owner would have done;
 * 2. orchesjob is asked `status --run-key K --all`; a job started at or after the claim is the one
 *    the start created, and is adopted (`Dispatched`, `recovered: true`).
 * Only when orchesjob knows no such job is the claim released (`ClaimReleased`) or the failure kept.
 * When orchesjob cannot be asked, nothing is decided and the claim waits for the next attempt.
 */

export interface RecoveryContext {
  readonly actor: string;
  readonly clock: () => number;
  /** How orchesjob is asked about jobs, and how orphaned starts are found and killed. */
  readonly client: RecoveryClient;
  /** Used for claims written before claims recorded their owner's start timeout. */
  readonly defaultStartTimeoutMs: number;
  /** Claims of this dispatcher, never judged here. */
  readonly selfId: string;
}

export interface RecoveryResult {
  readonly events: StoredEvent[];
  /** Stale claims left for a later attempt (their start still runs, or orchesjob could not be asked). */
  readonly waiting: number;
  readonly errors: string[];
}

/**
 * Settle the claims whose owner is gone: adopt the job their start created, or release them.
 * Claims of live owners, or of owners on another host, are never touched.
 */
export async function recoverStaleClaims(db: Kysely<Database>, ctx: RecoveryContext): Promise<RecoveryResult> {
  const result = { events: [] as StoredEvent[], waiting: 0, errors: [] as string[] };
  for (const claimed of await findClaimed(db)) {
    if (claimed.claim === null || claimed.claim.dispatcher_id === ctx.selfId) continue;
    const claim = await recordedClaim(db, claimed.reservationId);
    if (claim === null) continue;
    const settlement = await judge(ctx, claimed, claim);
    if (settlement === null) continue;
    if (settlement.action === 'wait') {
      result.waiting++;
      if (settlement.error !== '') result.errors.push(settlement.error);
      continue;
    }
    result.events.push(...(await settle(db, ctx, claimed, settlement)));
  }
  return result;
}

/** What to do with another dispatcher's claim: null to leave it (its owner may be alive). */
async function judge(ctx: RecoveryContext, claimed: Reservation, claim: RecordedClaim): Promise<Settlement | null> {
  const owner = ownerLiveness(claim);
  if (owner !== 'gone') return null; // judged first: /proc is read only for the claims of owners gone
  const running = ctx.client.runningStarts(claim.argv);
  const step = staleClaimStep({
    owner,
    startRunning: running.length > 0,
    claimAgeMs: ctx.clock() - claim.claimedAtMs,
    startTimeoutMs: claim.start_timeout_ms ?? ctx.defaultStartTimeoutMs,
  });
  if (step === 'leave') return null;
  if (step === 'wait') return { action: 'wait', error: '' };
  if (step === 'kill-then-ask') for (const pid of running) ctx.client.killStart(pid); // what its owner would have done
  return settleStaleClaim(claimed.runKey, await ctx.client.jobStartedSince(claimed.runKey, claim.claimedAtMs));
}

/** Adopt or release, re-checked under the lock: the claim may have been settled meanwhile. */
async function settle(
  db: Kysely<Database>,
  ctx: RecoveryContext,
  claimed: Reservation,
  settlement: Exclude<Settlement, { action: 'wait' }>,
): Promise<StoredEvent[]> {
  const owner = `${claimed.claim?.dispatcher_id} (pid ${claimed.claim?.pid})`;
  return write(db, { actor: ctx.actor, now: ctx.clock }, async (w) => {
    const current = await findById(w.tx, claimed.reservationId);
    if (current === null || current.status !== 'DISPATCHING' || current.version !== claimed.version) return [];
    const command =
      settlement.action === 'adopt'
        ? ({ type: 'RecordDispatch', jobId: settlement.jobId, recovered: true } as const)
        : ({ type: 'ReleaseClaim', reason: `owner ${owner} is gone and orchesjob has no job for the claim` } as const);
    return (await w.execute({ state: current }, command)).events;
  });
}
