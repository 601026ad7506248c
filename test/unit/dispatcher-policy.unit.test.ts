/**
 * The dispatcher's decisions (src/dispatcher/policy.ts) as functions of plain values: given the facts,
 * then the decision. Expected values are written out, never computed the way the code computes them.
 */
import { describe, expect, it } from 'vitest';
import type { StartOutcome } from '../../src/orchesjob/client.js';
import {
  freeSlots,
  outcomeOfFailedStart,
  recoveryDue,
  settleStaleClaim,
  sleepMs,
  staleClaimStep,
} from '../../src/dispatcher/policy.js';

const NOW = 1_777_860_000_000; // a whole second
const POLL = 60_000;

describe('sleepMs: how long the loop sleeps after a pass', () => {
  /** `slotFree` false: every slot is taken; `claiming` false: the loop is stopping (or its file is gone). */
  const sleep = (nextDueSec: number | null, slotFree = true, nowMs = NOW, nextExpirySec: number | null = null, claiming = true) =>
    sleepMs({ nowMs, nextDueSec, nextExpirySec, pollIntervalMs: POLL, claiming, slotFree });

  it('while paused, sleeps past an overdue reservation until the pause ends, its poll interval or an expiry', () => {
    const paused = (untilSec: number | null, nextDueSec: number | null, nextExpirySec: number | null = null) =>
      sleepMs({ nowMs: NOW, nextDueSec, nextExpirySec, pollIntervalMs: POLL, claiming: true, slotFree: true, paused: { untilSec } });
    expect(paused(null, NOW / 1000 - 30)).toBe(60_000); // a resume wakes it, not the overdue one
    expect(paused(NOW / 1000 + 5, NOW / 1000 - 30)).toBe(5_000); // --until
    expect(paused(NOW / 1000 + 5, NOW / 1000 - 30, NOW / 1000 + 2)).toBe(2_000); // expiry still applies
    expect(paused(NOW / 1000 - 1, null)).toBe(1); // an until that passed: the next pass records the resume
  });

  it('sleeps a poll interval when nothing waits', () => {
    expect(sleep(null)).toBe(60_000);
    expect(sleep(null, false)).toBe(60_000);
  });

  it('sleeps until the next due time when it comes before the poll interval, to the millisecond', () => {
    expect(sleep(NOW / 1000 + 10)).toBe(10_000);
    expect(sleep(NOW / 1000 + 10, true, NOW + 250)).toBe(9_750);
    expect(sleep(NOW / 1000 + 60)).toBe(60_000);
  });

  it('sleeps at most a poll interval when the next due time is later', () => {
    expect(sleep(NOW / 1000 + 3_600)).toBe(60_000);
  });

  it('sleeps 1 ms, never 0 or less, when work is due now or overdue and may be claimed', () => {
    expect(sleep(NOW / 1000)).toBe(1);
    expect(sleep(NOW / 1000 - 30)).toBe(1);
    expect(sleep(NOW / 1000 + 1, true, NOW + 999)).toBe(1);
  });

  it('sleeps a poll interval, not 1 ms, when due work cannot be claimed (every slot taken, or stopping)', () => {
    expect(sleep(NOW / 1000, false)).toBe(60_000);
    expect(sleep(NOW / 1000 - 30, false)).toBe(60_000);
    expect(sleep(NOW / 1000 - 30, true, NOW, null, false)).toBe(60_000);
  });

  it('when it cannot claim, a future expiry still ends the sleep, a due time does not', () => {
    expect(sleep(NOW / 1000 + 5, false)).toBe(60_000);
    expect(sleep(NOW / 1000 - 30, false, NOW, NOW / 1000 + 5)).toBe(5_000);
    expect(sleep(null, false, NOW, NOW / 1000 + 5)).toBe(5_000);
    // One that passed during the pass (after its expiry check): the next pass, at once, expires it.
    expect(sleep(null, false, NOW, NOW / 1000 - 5)).toBe(1);
  });

  it('stopping, it does not spin on an expiry that has passed (nothing expires while stopping)', () => {
    expect(sleep(null, true, NOW, NOW / 1000 - 5, false)).toBe(60_000);
    expect(sleep(null, false, NOW, NOW / 1000 + 5, false)).toBe(5_000);
  });

  it('sleeps until the earlier of the next due time and the next expiry', () => {
    expect(sleep(NOW / 1000 + 10, true, NOW, NOW / 1000 + 4)).toBe(4_000);
    expect(sleep(NOW / 1000 + 4, true, NOW, NOW / 1000 + 10)).toBe(4_000);
    expect(sleep(null, true, NOW, NOW / 1000 - 1)).toBe(1);
  });
});

describe('freeSlots: how many claims a pass may make', () => {
  it('is the slots no start holds', () => {
    expect(freeSlots(4, 0, true)).toBe(4);
    expect(freeSlots(4, 3, true)).toBe(1);
    expect(freeSlots(4, 4, true)).toBe(0);
  });

  it('is never negative (more running than allowed)', () => {
    expect(freeSlots(2, 5, true)).toBe(0);
  });

  it('is none when the pass may not claim (stopping, or the database file is not where it was)', () => {
    expect(freeSlots(4, 0, false)).toBe(0);
  });
});

describe('recoveryDue: recovery at most once per poll interval', () => {
  it('is due once a poll interval has passed since the last, not before', () => {
    expect(recoveryDue(NOW + 59_999, NOW, POLL)).toBe(false);
    expect(recoveryDue(NOW + 60_000, NOW, POLL)).toBe(true);
    expect(recoveryDue(NOW, 0, POLL)).toBe(true);
  });
});

describe('staleClaimStep: what to do first with another dispatcher’s claim', () => {
  const step = (over: Partial<Parameters<typeof staleClaimStep>[0]>) =>
    staleClaimStep({ owner: 'gone', startRunning: false, claimAgeMs: 10_000, startTimeoutMs: 30_000, ...over });

  it('leaves the claim of an owner that is alive or cannot be judged, whatever else holds', () => {
    for (const owner of ['alive', 'unknown'] as const) {
      expect(step({ owner })).toBe('leave');
      expect(step({ owner, startRunning: true, claimAgeMs: 999_999 })).toBe('leave');
    }
  });

  it('asks orchesjob when the owner is gone and no start of the claim runs', () => {
    expect(step({})).toBe('ask');
    expect(step({ claimAgeMs: 999_999 })).toBe('ask');
  });

  it('waits while the start runs within the start timeout; from the timeout on, kills it and then asks', () => {
    expect(step({ startRunning: true, claimAgeMs: 29_999 })).toBe('wait');
    expect(step({ startRunning: true, claimAgeMs: 30_000 })).toBe('kill-then-ask');
    expect(step({ startRunning: true, claimAgeMs: 45_000 })).toBe('kill-then-ask');
  });
});

describe('settleStaleClaim: what orchesjob’s answer makes of a stale claim', () => {
  it('adopts a job started since the claim', () => {
    expect(settleStaleClaim('k', { kind: 'found', jobId: 'job-1' })).toEqual({ action: 'adopt', jobId: 'job-1' });
  });

  it('releases the claim when orchesjob has no such job', () => {
    expect(settleStaleClaim('k', { kind: 'none' })).toEqual({ action: 'release' });
  });

  it('waits, saying why, when orchesjob could not say', () => {
    expect(settleStaleClaim('nightly', { kind: 'unknown', error: 'exit code 5: lock error' })).toEqual({
      action: 'wait',
      error: 'claim of nightly not recovered yet: exit code 5: lock error',
    });
  });
});

describe('outcomeOfFailedStart: what is recorded for a start that failed', () => {
  const failed: Extract<StartOutcome, { ok: false }> = { ok: false, exitCode: null, error: 'orchesjob start did not return within 30 s' };

  it('is the job, recovered, when orchesjob started one since the claim anyway', () => {
    expect(outcomeOfFailedStart(failed, { kind: 'found', jobId: 'job-2' })).toEqual({ ok: true, jobId: 'job-2', recovered: true });
  });

  it('is the failure as it was when orchesjob has no such job', () => {
    expect(outcomeOfFailedStart(failed, { kind: 'none' })).toEqual(failed);
  });

  it('is the failure, with why orchesjob could not be asked, when it could not (unknown, or an error)', () => {
    const withReason = (reason: string) => ({
      ok: false,
      exitCode: null,
      error: `orchesjob start did not return within 30 s\n(could not ask orchesjob whether the job started: ${reason})`,
    });
    expect(outcomeOfFailedStart(failed, { kind: 'unknown', error: 'exit code 5' })).toEqual(withReason('exit code 5'));
    expect(outcomeOfFailedStart(failed, { kind: 'error', error: 'orchesjob executable not found: oj' })).toEqual(
      withReason('orchesjob executable not found: oj'),
    );
  });

  it('keeps the exit code of the failure', () => {
    const exited = { ok: false, exitCode: 4, error: 'invalid state' } as const;
    expect(outcomeOfFailedStart(exited, { kind: 'unknown', error: 'x' })).toMatchObject({ ok: false, exitCode: 4 });
  });
});
