/**
 * Recovery in process (src/dispatcher/recovery.ts, DESIGN.md "Crash recovery"): what the dispatcher
 * does with another dispatcher's DISPATCHING claim. A claim whose owner is gone is adopted (orchesjob
 * knows a job started since the claim), released and started again (it knows none), or left waiting
 * (orchesjob cannot say, or the owner's start still runs within its start timeout). A claim whose owner
 * may be alive is never touched. orchesjob and the host's processes are the fake client's tables.
 */
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import type { ClaimOwner } from '../../src/events/index.js';
import type { Harness } from '../support/fake-ports.js';
import { ORCHESJOB_BIN, sec, T0, useInProcessDispatcher } from '../support/fake-ports.js';

const newHarness = useInProcessDispatcher();

/** A dispatcher of this host that is gone: pid 0 is no process (a claim adopted from the Python tool). */
const GONE: ClaimOwner = { dispatcher_id: 'dead-dispatcher', host: hostname(), pid: 0 };
/** When the dead dispatcher claimed. */
const CLAIMED_AT = T0 - 20_000;
const oldArgv = (runKey: string) => ['/old/orchesjob', 'start', '--run-key', runKey, '--', '/jobs/run.sh'];
const newArgv = (runKey: string) => [ORCHESJOB_BIN, 'start', '--run-key', runKey, '--', '/jobs/run.sh'];

/** A reservation due 20 s before T0, claimed then by `owner`; the clock is left at T0. */
async function claimedBy(h: Harness, runKey: string, owner: ClaimOwner, startTimeoutMs?: number): Promise<void> {
  h.clock.set(CLAIMED_AT);
  await h.reserve(runKey, { notBefore: sec(CLAIMED_AT) });
  await h.claim(runKey, owner, oldArgv(runKey), startTimeoutMs);
  h.clock.set(T0);
}

/** A pid that was a process of this host and is gone: a child spawned and reaped. */
function reapedPid(): number {
  const child = spawnSync('true');
  if (typeof child.pid !== 'number' || child.pid <= 0) throw new Error('no child was spawned');
  return child.pid;
}

describe('a claim whose owner is gone', () => {
  it('adopts the job orchesjob started since the claim: Dispatched (recovered), never started again', async () => {
    const h = await newHarness();
    await claimedBy(h, 'adopt-me', GONE);
    h.client.jobs.set('adopt-me', { kind: 'found', jobId: 'job-7' });
    await h.start();
    expect(h.client.lookups).toEqual([{ runKey: 'adopt-me', sinceMs: CLAIMED_AT, at: T0 }]);
    expect(h.linesOf('dispatch_succeeded')).toEqual([
      expect.objectContaining({ run_key: 'adopt-me', job_id: 'job-7', recovered: true }),
    ]);
    expect(await h.find('adopt-me')).toMatchObject({ status: 'DISPATCHED', jobId: 'job-7' });
    expect(h.client.calls).toEqual([
      'print reserver_started',
      'runningStarts adopt-me',
      'jobStartedSince adopt-me',
      'print dispatch_succeeded adopt-me',
    ]);
    expect(h.client.starts).toEqual([]);
    expect(h.err).toEqual([]);
  });

  it('releases a claim orchesjob has no job for (owner a reaped child), then claims and starts it itself', async () => {
    const h = await newHarness();
    const owner = { ...GONE, pid: reapedPid() };
    await claimedBy(h, 'release-me', owner);
    await h.start();
    const [started] = h.linesOf('reserver_started');
    expect(h.linesOf('recovered_dispatching')).toEqual([
      expect.objectContaining({ run_key: 'release-me', count: 1, previous_owner: owner }),
    ]);
    expect(h.linesOf('recovered_dispatching')[0]?.['reason']).toContain(`dead-dispatcher (pid ${owner.pid}) is gone`);
    expect(h.linesOf('orchesjob_start_call')).toEqual([
      expect.objectContaining({
        run_key: 'release-me',
        command: newArgv('release-me'),
        dispatcher_id: started?.['dispatcher_id'],
        late_by_ms: T0 - CLAIMED_AT,
      }),
    ]);
    expect(h.client.calls).toEqual([
      'print reserver_started',
      'runningStarts release-me',
      'jobStartedSince release-me',
      'print recovered_dispatching release-me',
      'print orchesjob_start_call release-me',
      'start release-me',
    ]);
    expect(h.client.nth(0).argv).toEqual(newArgv('release-me'));

    h.client.nth(0).succeed('job-8');
    await h.idle();
    expect(await h.find('release-me')).toMatchObject({ status: 'DISPATCHED', jobId: 'job-8' });
    expect(h.client.starts).toHaveLength(1);
  });

  it('decides nothing while orchesjob cannot say: nothing written, a dispatcher_error, asked again a poll interval later', async () => {
    const h = await newHarness();
    await claimedBy(h, 'unsure', GONE);
    const error = 'orchesjob status --run-key unsure failed with exit code 5: lock error';
    h.client.jobs.set('unsure', { kind: 'unknown', error });
    const before = await h.position();
    await h.start({ pollIntervalMs: 60_000 });
    expect(h.err).toEqual([expect.objectContaining({ event: 'dispatcher_error', error: `claim of unsure not recovered yet: ${error}` })]);
    expect(await h.position()).toBe(before);
    expect(await h.find('unsure')).toMatchObject({ status: 'DISPATCHING', claim: expect.objectContaining({ dispatcher_id: 'dead-dispatcher' }) });
    expect(h.out.map((l) => l.event)).toEqual(['reserver_started']);
    expect(h.client.starts).toEqual([]);

    await h.at(T0 + 30_000);
    await h.wake(); // a pass within the poll interval runs no recovery
    expect(h.client.lookups).toHaveLength(1);
    expect(h.waker.last).toMatchObject({ at: T0 + 30_000, ms: 60_000 });

    h.client.jobs.set('unsure', { kind: 'found', jobId: 'job-9' });
    await h.at(T0 + 90_000); // the first pass a poll interval after the last recovery
    expect(h.client.lookups.map((l) => l.at)).toEqual([T0, T0 + 90_000]);
    expect(h.linesOf('dispatch_succeeded')).toEqual([expect.objectContaining({ run_key: 'unsure', job_id: 'job-9', recovered: true })]);
    expect(h.err).toHaveLength(1);
  });

  it('waits while its start still runs within the owner’s start timeout; past it, kills that start, then asks', async () => {
    const h = await newHarness();
    await claimedBy(h, 'slow', GONE, 90_000); // the owner's timeout, not this dispatcher's 30 s
    h.client.running.set('slow', [4242]);
    const before = await h.position();
    await h.start({ pollIntervalMs: 60_000, startTimeoutMs: 30_000 });
    await h.at(T0 + 60_000); // a second recovery: the claim is 80 s old, within 90 s
    expect(h.client.calls).toEqual(['print reserver_started', 'runningStarts slow', 'runningStarts slow']);
    expect(await h.position()).toBe(before);
    expect(await h.find('slow')).toMatchObject({ status: 'DISPATCHING' });
    expect(h.err).toEqual([]);

    await h.at(T0 + 120_000); // 140 s old: its owner would have killed it
    expect(h.client.killed).toEqual([4242]);
    expect(h.client.calls.slice(3, 6)).toEqual(['runningStarts slow', 'killStart 4242', 'jobStartedSince slow']);
    expect(h.linesOf('recovered_dispatching')).toEqual([expect.objectContaining({ run_key: 'slow' })]);
    expect(h.client.starts.map((s) => [s.argv, s.at])).toEqual([[newArgv('slow'), T0 + 120_000]]);
  });
});

describe('a claim whose owner may be alive', () => {
  const owners: [string, ClaimOwner][] = [
    ['alive on this host (this process)', { dispatcher_id: 'live-dispatcher', host: hostname(), pid: process.pid }],
    ['on another host (cannot be judged)', { dispatcher_id: 'remote-dispatcher', host: `not-${hostname()}`, pid: 0 }],
  ];
  for (const [what, owner] of owners) {
    it(`is never touched: ${what}`, async () => {
      const h = await newHarness();
      await claimedBy(h, 'theirs', owner);
      h.client.jobs.set('theirs', { kind: 'none' });
      const before = await h.position();
      await h.start({ pollIntervalMs: 60_000 });
      await h.at(T0 + 60_000);
      await h.at(T0 + 120_000);
      expect(h.waker.sleeps.map((s) => s.endedBy)).toEqual(['timeout', 'timeout', null]); // two more recoveries ran
      expect(h.client.calls).toEqual(['print reserver_started']); // neither its processes nor orchesjob asked
      expect(await h.position()).toBe(before);
      expect(await h.find('theirs')).toMatchObject({ status: 'DISPATCHING', claim: expect.objectContaining(owner) });
      expect(h.err).toEqual([]);
    });
  }
});
