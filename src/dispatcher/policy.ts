import type { JobLookup, StartOutcome } from '../orchesjob/client.js';
import type { Liveness } from './owner.js';

/**
 * The dispatcher's decisions, as functions of plain values: no clock, no database, no process. The
 * loop (dispatcher.ts) gathers the facts and acts on the answers.
 */

/** How many claims a pass may make: none when it may not claim, else the slots no start holds. */
export function freeSlots(maxConcurrentStarts: number, startsRunning: number, claiming: boolean): number {
  return claiming ? Math.max(0, maxConcurrentStarts - startsRunning) : 0;
}

/** Recovery runs at start, then at most once per poll interval (a dispatcher may die while this one runs). */
export function recoveryDue(nowMs: number, lastRecoveryMs: number, pollIntervalMs: number): boolean {
  return nowMs - lastRecoveryMs >= pollIntervalMs;
}

/**
 * How long the loop sleeps after a pass: until the next `not_before` (`nextDueSec`) or `expires_at`
 * (`nextExpirySec`), epoch seconds, null when none waits; at most the poll interval, at least 1 ms.
 * `claiming`: the loop may expire and claim (it is not stopping, the database file is in place);
 * `slotFree`: a start slot is free. With no slot free a due reservation does not end the sleep (a
 * finishing start wakes the loop), but an expiry still does, also one that passed during the pass: the
 * orchestrator's cutoff is recorded when it passes, however long the starts in flight take.
 */
export function sleepMs(facts: {
  readonly nowMs: number;
  readonly nextDueSec: number | null;
  readonly nextExpirySec: number | null;
  readonly pollIntervalMs: number;
  readonly claiming: boolean;
  readonly slotFree: boolean;
  /** A pause in force: nothing is due until it ends (`untilSec`, or a `resume`, which wakes the loop). */
  readonly paused?: { readonly untilSec: number | null } | null;
}): number {
  const { nowMs, pollIntervalMs, claiming, paused } = facts;
  const untilMs = (sec: number | null) => (sec === null ? Number.POSITIVE_INFINITY : sec * 1000 - nowMs);
  const nextStart = paused == null ? untilMs(facts.nextDueSec) : untilMs(paused.untilSec);
  const due = claiming && facts.slotFree ? nextStart : Number.POSITIVE_INFINITY;
  const expiry = untilMs(facts.nextExpirySec);
  // A loop that may not expire (stopping) must not spin on an expiry that has passed.
  return Math.max(1, Math.min(pollIntervalMs, due, claiming || expiry > 0 ? expiry : Number.POSITIVE_INFINITY));
}

/**
 * What to do first with another dispatcher's claim (DESIGN.md, "Crash recovery"): leave it while its
 * owner may be alive; wait while its start still runs within the owner's start timeout; past it, kill
 * the start (what its owner would have done) and then ask orchesjob; with no start running, ask.
 */
export type StaleClaimStep = 'leave' | 'wait' | 'kill-then-ask' | 'ask';

export function staleClaimStep(facts: {
  readonly owner: Liveness;
  readonly startRunning: boolean;
  readonly claimAgeMs: number;
  readonly startTimeoutMs: number;
}): StaleClaimStep {
  if (facts.owner !== 'gone') return 'leave';
  if (!facts.startRunning) return 'ask';
  return facts.claimAgeMs < facts.startTimeoutMs ? 'wait' : 'kill-then-ask';
}

/** What orchesjob's answer makes of a stale claim: adopt the job its start created, release it, or wait. */
export type Settlement =
  | { readonly action: 'adopt'; readonly jobId: string }
  | { readonly action: 'release' }
  | { readonly action: 'wait'; readonly error: string };

export function settleStaleClaim(runKey: string, lookup: JobLookup): Settlement {
  if (lookup.kind === 'found') return { action: 'adopt', jobId: lookup.jobId };
  if (lookup.kind === 'none') return { action: 'release' };
  return { action: 'wait', error: `claim of ${runKey} not recovered yet: ${lookup.error}` };
}

/**
 * The outcome recorded for a start that failed, once orchesjob was asked whether it created the job
 * anyway (killed after creating it, timed out, died before printing): a job started since the claim
 * is ours; otherwise the failure, with the reason orchesjob could not be asked when it could not.
 */
export function outcomeOfFailedStart(
  failed: Extract<StartOutcome, { ok: false }>,
  lookup: JobLookup | { readonly kind: 'error'; readonly error: string },
): StartOutcome {
  if (lookup.kind === 'found') return { ok: true, jobId: lookup.jobId, recovered: true };
  if (lookup.kind === 'none') return failed;
  return { ...failed, error: `${failed.error}\n(could not ask orchesjob whether the job started: ${lookup.error})` };
}
