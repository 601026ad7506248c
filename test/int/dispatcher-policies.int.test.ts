/**
 * The dispatcher's timing and slot policies, in process: a real ledger, a fake clock, a fake
 * orchesjob (test/support/fake-ports.ts). Each test runs minutes or days of schedule in milliseconds;
 * what needs real processes (SIGKILL, process groups, the stand-in's fault modes) stays in test/e2e.
 */
import { renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Harness } from '../support/fake-ports.js';
import { DEFAULTS, ORCHESJOB_BIN, sec, T0, useInProcessDispatcher } from '../support/fake-ports.js';

const newHarness = useInProcessDispatcher();

const keysOf = (h: Harness) => h.client.starts.map((s) => s.argv[3]);

describe('firing', () => {
  it('fires at not_before and never before: the loop sleeps until then, starts once, late_by_ms 0, then DISPATCHED', async () => {
    const h = await newHarness(T0);
    await h.reserve('nightly', { notBefore: sec(T0) + 10, command: ['/jobs/run.sh', 'a b'], options: ['--strict'] });
    await h.start({ startOptions: ['--queue', 'edge'] });
    const [started] = h.linesOf('reserver_started');
    expect(h.out.map((l) => l.event)).toEqual(['reserver_started']);
    expect(h.waker.last).toMatchObject({ at: T0, ms: 10_000 }); // not the 600 s poll interval

    await h.at(T0 + 9_999);
    expect(h.client.starts).toEqual([]);
    await h.wake(); // woken a millisecond early (another process committed): still not due
    expect(h.client.starts).toEqual([]);
    expect(h.waker.last).toMatchObject({ at: T0 + 9_999, ms: 1 });
    expect(await h.find('nightly')).toMatchObject({ status: 'RESERVED' });

    await h.at(T0 + 10_000);
    const argv = [ORCHESJOB_BIN, 'start', '--run-key', 'nightly', '--queue', 'edge', '--strict', '--', '/jobs/run.sh', 'a b'];
    expect(h.client.starts.map((s) => ({ argv: s.argv, at: s.at, timeoutMs: s.timeoutMs }))).toEqual([
      { argv, at: T0 + 10_000, timeoutMs: DEFAULTS.startTimeoutMs },
    ]);
    expect(h.linesOf('orchesjob_start_call')).toEqual([
      expect.objectContaining({ run_key: 'nightly', command: argv, late_by_ms: 0, dispatcher_id: started?.['dispatcher_id'] }),
    ]);
    expect(h.client.calls).toEqual(['print reserver_started', 'print orchesjob_start_call nightly', 'start nightly']); // printed before the spawn

    h.client.nth(0).succeed('job-42');
    await h.idle();
    expect(h.linesOf('dispatch_succeeded')).toEqual([expect.objectContaining({ run_key: 'nightly', job_id: 'job-42' })]);
    expect(h.linesOf('dispatch_succeeded')[0]).not.toHaveProperty('recovered');
    expect(await h.find('nightly')).toMatchObject({ status: 'DISPATCHED', jobId: 'job-42' });
    expect(h.waker.last.ms).toBe(DEFAULTS.pollIntervalMs); // nothing waits any more
    expect(h.client.starts).toHaveLength(1);
    expect(h.err).toEqual([]);
  });

  it('claims what is already due at once, with late_by_ms from not_before (or from creation without one)', async () => {
    const h = await newHarness(T0 - 60_000);
    await h.reserve('missed', { notBefore: sec(T0) - 5 });
    h.clock.set(T0 - 1_234);
    await h.reserve('asap'); // no not_before: due from its creation, to the millisecond
    h.clock.set(T0 + 250);
    await h.start();
    expect(keysOf(h)).toEqual(['missed', 'asap']);
    expect(h.client.starts.map((s) => s.at)).toEqual([T0 + 250, T0 + 250]);
    expect(h.linesOf('orchesjob_start_call').map((l) => [l['run_key'], l['late_by_ms']])).toEqual([
      ['missed', 5_250],
      ['asap', 1_484],
    ]);
  });
});

describe('retries', () => {
  it('retries a failed start at retry_at, not before, until --max-attempts; then DISPATCH_FAILED for good', async () => {
    const h = await newHarness(T0);
    await h.reserve('flaky', { notBefore: sec(T0), maxAttempts: 3, retryDelay: 60 });
    await h.start();
    expect(keysOf(h)).toEqual(['flaky']);

    await h.at(T0 + 2_000);
    h.client.nth(0).fail({ exitCode: 1, error: 'boom 1' });
    await h.idle();
    const retryAt = sec(T0) + 62; // the failure's second + 60
    expect(h.client.lookups).toEqual([{ runKey: 'flaky', sinceMs: T0, at: T0 + 2_000 }]); // asked whether it started anyway
    expect(h.linesOf('dispatch_attempt_failed')).toEqual([
      expect.objectContaining({ run_key: 'flaky', attempt: 1, max_attempts: 3, retry_at: retryAt, exit_code: 1, error: 'boom 1' }),
    ]);
    expect(await h.find('flaky')).toMatchObject({ status: 'RESERVED', attempts: 1, retryAt, lastError: 'boom 1' });
    expect(h.waker.last).toMatchObject({ at: T0 + 2_000, ms: 60_000 });

    await h.at(retryAt * 1000 - 1);
    await h.wake();
    expect(h.client.starts).toHaveLength(1);

    await h.at(retryAt * 1000);
    expect(h.client.starts.map((s) => s.at)).toEqual([T0, retryAt * 1000]);
    expect(h.client.nth(1).argv).toEqual(h.client.nth(0).argv);
    expect(h.linesOf('orchesjob_start_call').map((l) => l['late_by_ms'])).toEqual([0, 0]); // due at retry_at

    h.client.nth(1).fail({ exitCode: 1, error: 'boom 2' });
    await h.idle();
    expect(h.linesOf('dispatch_attempt_failed').map((l) => [l['attempt'], l['retry_at']])).toEqual([
      [1, retryAt],
      [2, retryAt + 60],
    ]);
    await h.at((retryAt + 60) * 1000);
    expect(h.client.starts).toHaveLength(3);

    h.client.nth(2).fail({ exitCode: 7, error: 'boom 3' });
    await h.idle();
    expect(h.linesOf('dispatch_failed')).toEqual([expect.objectContaining({ run_key: 'flaky', exit_code: 7, error: 'boom 3' })]);
    expect(h.linesOf('dispatch_attempt_failed')).toHaveLength(2);
    expect(await h.find('flaky')).toMatchObject({ status: 'DISPATCH_FAILED', attempts: 3, lastError: 'boom 3' });
    await h.at((retryAt + 86_400) * 1000);
    await h.wake();
    expect(h.client.starts).toHaveLength(3);
  });

  it('expires_at wins over a pending retry: expired at expires_at, never started again', async () => {
    const h = await newHarness(T0);
    await h.reserve('short-lived', { notBefore: sec(T0), expiresAt: sec(T0) + 32, maxAttempts: 3, retryDelay: 60 });
    await h.start();
    await h.at(T0 + 2_000);
    h.client.nth(0).fail({ exitCode: 1, error: 'boom' });
    await h.idle();
    expect(h.linesOf('dispatch_attempt_failed')).toEqual([expect.objectContaining({ retry_at: sec(T0) + 62 })]);
    expect(h.waker.last).toMatchObject({ at: T0 + 2_000, ms: 30_000 }); // until expires_at, 30 s after the failure

    await h.at((sec(T0) + 32) * 1000 - 1);
    await h.wake();
    expect(h.linesOf('reservation_expired')).toEqual([]);

    await h.at((sec(T0) + 32) * 1000);
    expect(h.linesOf('reservation_expired')).toEqual([
      expect.objectContaining({ run_key: 'short-lived', reservation_status: 'EXPIRED', expires_at: sec(T0) + 32, last_error: 'expired before dispatch' }),
    ]);
    expect(await h.find('short-lived')).toMatchObject({ status: 'EXPIRED', attempts: 1 });
    expect(h.waker.last.ms).toBe(DEFAULTS.pollIntervalMs);

    await h.at((sec(T0) + 62) * 1000);
    await h.wake();
    await h.at(T0 + 86_400_000);
    expect(h.client.starts).toHaveLength(1);
    expect(h.out.map((l) => l.event)).toEqual([
      'reserver_started',
      'orchesjob_start_call',
      'dispatch_attempt_failed',
      'reservation_expired',
    ]);
  });
});

describe('failed starts', () => {
  it('records a failed start that created its job anyway as dispatched (recovered), not as a failure or a retry', async () => {
    const h = await newHarness(T0);
    await h.reserve('timed-out', { notBefore: sec(T0), maxAttempts: 3, retryDelay: 60 });
    await h.start();
    h.client.jobs.set('timed-out', { kind: 'found', jobId: 'job-5' });
    await h.at(T0 + 30_000);
    h.client.nth(0).fail({ exitCode: null, error: 'orchesjob start did not return within 30 s' });
    await h.idle();
    expect(h.client.lookups).toEqual([{ runKey: 'timed-out', sinceMs: T0, at: T0 + 30_000 }]);
    expect(h.linesOf('dispatch_succeeded')).toEqual([expect.objectContaining({ run_key: 'timed-out', job_id: 'job-5', recovered: true })]);
    expect(h.linesOf('dispatch_attempt_failed')).toEqual([]);
    expect(await h.find('timed-out')).toMatchObject({ status: 'DISPATCHED', jobId: 'job-5', attempts: 0 });
  });

  it('records the failure, with why orchesjob could not be asked, when asking it fails', async () => {
    const h = await newHarness(T0);
    await h.reserve('unasked', { notBefore: sec(T0) });
    await h.start();
    h.client.jobs.set('unasked', new Error('orchesjob executable not found: /opt/orchesjob/bin/orchesjob'));
    h.client.nth(0).fail({ exitCode: null, error: 'killed by SIGKILL' });
    await h.idle();
    const error = 'killed by SIGKILL\n(could not ask orchesjob whether the job started: orchesjob executable not found: /opt/orchesjob/bin/orchesjob)';
    expect(h.linesOf('dispatch_failed')).toEqual([expect.objectContaining({ run_key: 'unasked', exit_code: null, error })]);
    expect(await h.find('unasked')).toMatchObject({ status: 'DISPATCH_FAILED', lastError: error });
  });
});

describe('slots', () => {
  it('never runs more starts than --max-concurrent-starts; each settled start frees its slot for the next in queue order', async () => {
    const h = await newHarness(T0);
    for (const [i, key] of ['a', 'b', 'c', 'd'].entries()) await h.reserve(key, { notBefore: sec(T0) - 10 + i });
    await h.start({ maxConcurrentStarts: 2 });
    expect(keysOf(h)).toEqual(['a', 'b']);
    expect(await h.find('c')).toMatchObject({ status: 'RESERVED' });
    // Work is due but no slot is free: a poll interval, not a busy loop of 1 ms sleeps.
    expect(h.waker.last.ms).toBe(DEFAULTS.pollIntervalMs);
    await h.wake();
    expect(keysOf(h)).toEqual(['a', 'b']);

    await h.at(T0 + 1_000);
    h.client.nth(1).succeed('job-b');
    await h.idle();
    expect(keysOf(h)).toEqual(['a', 'b', 'c']);
    expect(h.client.nth(2).at).toBe(T0 + 1_000);
    // One pass: the freed slot's claim stands in the ledger before the record of the start that freed it.
    const claimOfC = h.linesOf('orchesjob_start_call').find((l) => l['run_key'] === 'c');
    const recordOfB = h.linesOf('dispatch_succeeded').find((l) => l['run_key'] === 'b');
    expect(claimOfC?.['position']).toBe((recordOfB?.['position'] as number) - 1);

    h.client.nth(0).fail({ exitCode: 1, error: 'a failed' }); // a failure frees its slot too
    await h.idle();
    expect(keysOf(h)).toEqual(['a', 'b', 'c', 'd']);
    expect(await h.find('a')).toMatchObject({ status: 'DISPATCH_FAILED' });

    h.client.nth(2).succeed('job-c');
    h.client.nth(3).succeed('job-d');
    await h.idle();
    expect(h.client.maxUnsettled).toBe(2);
    for (const [key, jobId] of [['b', 'job-b'], ['c', 'job-c'], ['d', 'job-d']] as const) {
      expect(await h.find(key)).toMatchObject({ status: 'DISPATCHED', jobId });
    }
    expect(h.client.starts).toHaveLength(4);
  });
  it('records starts that finish together in one pass, then sleeps: no pass follows with nothing to do', async () => {
    const h = await newHarness(T0);
    for (const key of ['a', 'b']) await h.reserve(key, { notBefore: sec(T0) - 10 });
    await h.start();
    expect(keysOf(h)).toEqual(['a', 'b']);
    const asleep = h.waker.sleeps.length - 1; // the sleep in progress
    expect(h.waker.sleeping).toBe(h.waker.sleeps[asleep]);
    const position = await h.position();
    h.client.nth(0).succeed('job-a'); // the two outcomes are queued in one turn: two wakes
    h.client.nth(1).succeed('job-b');
    await h.idle();
    const recorded = h.linesOf('dispatch_succeeded');
    expect(recorded.map((l) => l['position'])).toEqual([position + 1, position + 2]); // one pass, one commit
    // The first wake ended that sleep; the second came before the pass that recorded both, and must not
    // end the next sleep at once (a pass with nothing to do, and its reads).
    expect(h.waker.sleeps.slice(asleep).map((s) => s.endedBy)).toEqual(['wake', null]);
  });

  it('records an expiry when it passes even while every slot is taken (the loop sleeps until it, not a poll interval)', async () => {
    const h = await newHarness(T0);
    await h.reserve('a', { notBefore: sec(T0) - 1 });
    await h.reserve('b', { notBefore: sec(T0) - 1, expiresAt: sec(T0) + 5 });
    await h.start({ maxConcurrentStarts: 1 });
    expect(keysOf(h)).toEqual(['a']);
    expect(h.waker.last.ms).toBe(5_000); // b is due but cannot be claimed; its expiry still wakes the loop
    await h.at(T0 + 5_000);
    expect(await h.find('b')).toMatchObject({ status: 'EXPIRED' });
    const expired = h.linesOf('reservation_expired').find((l) => l['run_key'] === 'b');
    expect(expired?.['ts_epoch']).toBe(sec(T0) + 5);
    h.client.nth(0).succeed('job-a');
    await h.idle();
    expect(keysOf(h)).toEqual(['a']); // b is never started
  });
});

describe('run --policy', () => {
  it('while the policy cannot be read, holds gated reservations and still fires the others on time', async () => {
    const h = await newHarness(T0);
    await h.reserve('gated', { notBefore: sec(T0) - 1, actor: 'gate:airflow' });
    await h.reserve('local', { notBefore: sec(T0) + 1 });
    await h.start({ policyPath: join(tmpdir(), `no-such-policy-${process.pid}.toml`) });
    expect(keysOf(h)).toEqual([]);
    expect(h.err.map((l) => l['error']).join('\n')).toMatch(/gated reservations held/);
    expect(h.waker.last.ms).toBe(1_000); // until the local one is due, not a busy 1 ms nor an error sleep
    await h.at(T0 + 1_000);
    expect(keysOf(h)).toEqual(['local']);
    expect(h.client.nth(0).at).toBe(T0 + 1_000);
    expect(await h.find('gated')).toMatchObject({ status: 'RESERVED' });
  });
});

describe('the database file', () => {
  it('takes no new work while the file is missing, says so and sleeps --error-sleep; resumes when it is back', async () => {
    const h = await newHarness(T0);
    await h.start({ errorSleepMs: 5_000 });
    renameSync(h.ledger.path, `${h.ledger.path}.away`);
    await h.reserve('waiting'); // through the open connection, as a writer that opened it before the move
    await h.wake();
    expect(h.client.starts).toEqual([]);
    expect(h.err).toEqual([
      expect.objectContaining({ event: 'dispatcher_error', error: `database ${h.ledger.path} is missing (moved or deleted); waiting for it to come back` }),
    ]);
    expect(h.waker.last).toMatchObject({ ms: 5_000 });

    renameSync(`${h.ledger.path}.away`, h.ledger.path);
    await h.at(T0 + 5_000);
    expect(h.client.starts.map((s) => [s.argv[3], s.at])).toEqual([['waiting', T0 + 5_000]]);
    expect(h.err).toHaveLength(1);
  });
});
