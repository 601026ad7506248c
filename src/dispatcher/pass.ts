import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { ReserverError } from '../errors.js';
import type { DispatchControl } from '../events/control.js';
import { effectivePause, pauseOutlived } from '../events/control.js';
import type { ClaimOwner, Reservation } from '../events/index.js';
import { IllegalTransitionError } from '../events/index.js';
import type { WriteTx } from '../ledger.js';
import { write } from '../ledger.js';
import { dispatchVerdict, PolicyReader } from '../gate/dispatch.js';
import type { DispatchClient } from '../orchesjob/client.js';
import { readControl } from '../projections/control.js';
import { anyExpiring, findExpiring, findReady } from '../projections/reservations.js';
import type { PendingRecord } from './starts.js';

/** What a pass writes with: who this dispatcher is and how its starts are made. */
export interface PassContext {
  readonly db: Kysely<Database>;
  readonly actor: string;
  readonly clock: () => number;
  readonly owner: ClaimOwner & { readonly process_start?: string | null };
  readonly client: DispatchClient;
  /** Global `orchesjob start` options, before each reservation's own. */
  readonly startOptions: readonly string[];
  readonly startTimeoutMs: number;
  /** `run --policy`: reservations made through the gate are checked against this policy file when due. */
  readonly policyPath?: string | undefined;
}

/** A claim made by a pass, and the argv its start runs. */
export interface Claimed {
  readonly reservation: Reservation;
  readonly argv: string[];
}

export interface PassResult {
  readonly claimed: Claimed[];
  /** Outcomes whose reservation was no longer DISPATCHING (cleaned or settled meanwhile): not written. */
  readonly unrecorded: PendingRecord[];
  /** `run --policy`: why gated reservations were left RESERVED (the policy cannot be read now), or null. */
  readonly held: string | null;
  /** The pause in force (`pause`): nothing was claimed; null while dispatching is not paused. */
  readonly paused: Paused | null;
}

/** A pause in force, as the loop's sleep needs it: when it ends by itself (epoch seconds), or null. */
export interface Paused {
  readonly untilSec: number | null;
}

/**
 * A pass's one write transaction (group commit: one sync for all of it): expire what is due, claim up
 * to `slots` in queue order, and record the finished starts of `batch`. Each claim is a conditional
 * transition (only from RESERVED, only once due), so two dispatchers never hold one. With nothing to
 * record it reads first: the write lock is taken only when there is work. When not `claiming`
 * (stopping, or the database file is not where it was opened) it only records. While dispatching is
 * paused (the control stream, read in the same transaction as the claims) it expires and records but
 * claims nothing; a pause whose `until` passed is ended here (`DispatchResumed`, `until_passed`).
 */
export async function writePass(
  ctx: PassContext,
  work: { readonly claiming: boolean; readonly slots: number; readonly batch: readonly PendingRecord[] },
): Promise<PassResult> {
  const { claiming, slots, batch } = work;
  if (batch.length === 0) {
    // Nothing to record: read first (the control row, then what is due), lock only for work.
    if (!claiming) return { claimed: [], unrecorded: [], held: null, paused: null };
    const before = await readControl(ctx.db);
    if (!(await anythingDue(ctx, slots, before))) return { claimed: [], unrecorded: [], held: null, paused: pausedAt(before, ctx.clock()) };
  }
  return write(ctx.db, { actor: ctx.actor, now: ctx.clock }, async (w) => {
    let ready: { claimed: Claimed[]; held: string | null } = { claimed: [], held: null };
    const control = await w.readControl();
    const paused = pausedAt(control, w.nowMs);
    if (claiming) {
      const nowSec = Math.floor(w.nowMs / 1000);
      for (const state of (await anyExpiring(w.tx, nowSec)) ? await findExpiring(w.tx, nowSec) : []) {
        await w.execute({ state }, { type: 'Expire' });
      }
      if (pauseOutlived(control, w.nowMs)) await w.control({ type: 'Resume', untilPassed: true });
      // Claims first: a freed slot's next claim stands in the ledger before the record of the start
      // that freed it, as when they were separate transactions.
      if (slots > 0 && paused === null) ready = await claimReady(ctx, w, slots);
    }
    return { ...ready, unrecorded: await recordOutcomes(w, batch), paused };
  });
}

/** Whether a pass would expire, end a pause or claim anything now (read without the write lock). */
async function anythingDue({ db, clock }: PassContext, slots: number, control: DispatchControl): Promise<boolean> {
  const nowMs = clock();
  const nowSec = Math.floor(nowMs / 1000);
  if ((await anyExpiring(db, nowSec)) || pauseOutlived(control, nowMs)) return true;
  return pausedAt(control, nowMs) === null && slots > 0 && (await findReady(db, nowSec, 1)).length > 0;
}

/** The pause in force at `nowMs`, or null. */
function pausedAt(control: DispatchControl, nowMs: number): Paused | null {
  const inForce = effectivePause(control, nowMs);
  return inForce.paused ? { untilSec: inForce.until } : null;
}

/**
 * Claim up to `limit` ready reservations in the pass's transaction. Under `run --policy`, one its
 * gate key may no longer make is refused instead (`DispatchRefused`: DISPATCH_FAILED, never claimed,
 * never started); while the policy cannot be read, gated ones are held (left RESERVED, and passed over
 * so that they do not keep the others waiting) and `held` says why.
 */
async function claimReady(ctx: PassContext, w: WriteTx, limit: number): Promise<{ claimed: Claimed[]; held: string | null }> {
  const claimed: Claimed[] = [];
  const reader = ctx.policyPath === undefined ? null : new PolicyReader(ctx.policyPath);
  const passedOver = new Set<string>();
  let held: string | null = null;
  for (let more = true; more && claimed.length < limit; ) {
    const want = limit - claimed.length + passedOver.size;
    const ready = await findReady(w.tx, Math.floor(w.nowMs / 1000), want);
    more = ready.length === want; // each round settles or passes over one at least: the loop ends
    for (const r of ready.filter((x) => !passedOver.has(x.reservationId)).slice(0, limit - claimed.length)) {
      const verdict = reader === null ? ({ kind: 'start' } as const) : await dispatchVerdict(w.tx, reader, r);
      if (verdict.kind === 'refuse') {
        await w.execute({ state: r }, { type: 'Refuse', reason: verdict.reason });
        continue;
      }
      if (verdict.kind === 'hold') held = verdict.why;
      const claim = verdict.kind === 'start' ? await claimOne(ctx, w, r) : null;
      if (claim === null) passedOver.add(r.reservationId);
      else claimed.push(claim);
    }
  }
  return { claimed, held };
}

/** Claim `ready`, or null when it is due by the second but not yet by the millisecond (a later wake takes it). */
async function claimOne(ctx: PassContext, w: WriteTx, ready: Reservation): Promise<Claimed | null> {
  const argv = ctx.client.startArgv(ctx.startOptions, ready);
  try {
    const command = { type: 'Claim', owner: ctx.owner, argv, startTimeoutMs: ctx.startTimeoutMs } as const;
    return { reservation: (await w.execute({ state: ready }, command)).reservation, argv };
  } catch (error) {
    if (!(error instanceof IllegalTransitionError)) throw error;
    return null;
  }
}

/** Record each outcome; returns those whose reservation is no longer DISPATCHING. */
async function recordOutcomes(w: WriteTx, batch: readonly PendingRecord[]): Promise<PendingRecord[]> {
  const unrecorded: PendingRecord[] = [];
  for (const item of batch) {
    const { outcome } = item;
    const command = outcome.ok
      ? ({ type: 'RecordDispatch', jobId: outcome.jobId, recovered: outcome.recovered === true } as const)
      : ({ type: 'RecordFailure', error: outcome.error, exitCode: outcome.exitCode } as const);
    try {
      // decide() throws before anything is appended, so the other outcomes of the batch still commit.
      await w.execute({ reservationId: item.reservation.reservationId }, command);
    } catch (error) {
      const gone = error instanceof ReserverError && error.code === 'NOT_FOUND'; // cleaned while its start ran
      if (!(error instanceof IllegalTransitionError) && !gone) throw error;
      unrecorded.push(item);
    }
  }
  return unrecorded;
}

/** Why an outcome was not written (`dispatcher_error`): nothing is dropped without a word. */
export function notRecorded({ reservation: r, outcome }: PendingRecord): string {
  const what = outcome.ok ? `job_id=${outcome.jobId}` : outcome.error;
  return `reservation ${r.reservationId} (${r.runKey}) left DISPATCHING while its start ran; outcome not recorded: ${what}`;
}
