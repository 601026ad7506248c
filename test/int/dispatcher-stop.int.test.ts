/**
 * Stopping in process: `stop()` (what SIGTERM/SIGINT call) takes no new work, lets the starts in flight
 * finish, records and prints their outcomes, prints `reserver_stopped` last and resolves `run()`.
 */
import { describe, expect, it } from 'vitest';
import { sec, T0, useInProcessDispatcher } from '../support/fake-ports.js';

const newHarness = useInProcessDispatcher();

describe('stop()', () => {
  it('drains: no new claims, the start in flight is recorded and printed, reserver_stopped last, run() resolves', async () => {
    const h = await newHarness(T0);
    await h.reserve('in-flight', { notBefore: sec(T0) });
    await h.reserve('later', { notBefore: sec(T0) + 5 });
    await h.start();
    expect(h.client.starts.map((s) => s.argv[3])).toEqual(['in-flight']);

    await h.at(T0 + 1_000);
    await h.stop();
    expect(h.stopped).toBe(false); // waits for its start
    await h.at(T0 + 10_000); // 'later' is due now
    await h.wake();
    expect(h.client.starts).toHaveLength(1);
    expect(h.linesOf('reserver_stopped')).toEqual([]);

    await h.at(T0 + 12_000);
    h.client.nth(0).succeed('job-1');
    await h.idle();
    expect(h.stopped).toBe(true);
    expect(h.out.map((l) => [l.event, l['run_key']])).toEqual([
      ['reserver_started', undefined],
      ['orchesjob_start_call', 'in-flight'],
      ['dispatch_succeeded', 'in-flight'],
      ['reserver_stopped', undefined],
    ]);
    expect(h.linesOf('reserver_stopped')[0]).toMatchObject({ ts_epoch: sec(T0) + 12 });
    expect(await h.find('in-flight')).toMatchObject({ status: 'DISPATCHED', jobId: 'job-1' });
    expect(await h.find('later')).toMatchObject({ status: 'RESERVED', claim: null });
    expect(h.waker.closed).toBe(true);
    expect(h.err).toEqual([]);
  });

  it('records a start that fails during the drain, and asks orchesjob first, as any failed start', async () => {
    const h = await newHarness(T0);
    await h.reserve('failing', { notBefore: sec(T0), maxAttempts: 2, retryDelay: 10 });
    await h.start();
    await h.stop();
    h.client.nth(0).fail({ exitCode: 1, error: 'boom' });
    await h.idle();
    expect(h.stopped).toBe(true);
    expect(h.client.lookups).toEqual([{ runKey: 'failing', sinceMs: T0, at: T0 }]);
    expect(h.out.map((l) => l.event)).toEqual(['reserver_started', 'orchesjob_start_call', 'dispatch_attempt_failed', 'reserver_stopped']);
    expect(await h.find('failing')).toMatchObject({ status: 'RESERVED', attempts: 1, retryAt: sec(T0) + 10 });
  });

  it('stops at once when nothing is in flight: the sleep ends, reserver_stopped follows', async () => {
    const h = await newHarness(T0);
    await h.start();
    expect(h.waker.sleeping).not.toBeNull();
    await h.stop();
    expect(h.stopped).toBe(true);
    expect(h.out.map((l) => l.event)).toEqual(['reserver_started', 'reserver_stopped']);
    expect(h.waker.closed).toBe(true);
  });
});
