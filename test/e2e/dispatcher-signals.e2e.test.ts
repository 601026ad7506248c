/**
 * Dispatcher end to end: SIGTERM finishes the start in flight and exits 0; a second SIGTERM exits at
 * once, leaving the claim DISPATCHING, and the next dispatcher recovers it (DESIGN.md, "Crash recovery").
 */
import { describe, expect, it } from 'vitest';
import {
  executions,
  expectWellFormed,
  ledgerEvents,
  reserve,
  sandbox,
  sleep,
  startDispatcher,
  startInvocations,
  status,
  waitPidGone,
  writeFaults,
} from '../support/harness.js';

describe('dispatcher signals', () => {
  it('SIGTERM during a slow start: waits for it, records it, prints reserver_stopped, exits 0', async () => {
    const sb = sandbox();
    writeFaults(sb, { 'slow-1': { mode: 'slow', ms: 1500 } });
    const d = await startDispatcher(sb);
    await reserve(sb, 'slow-1');
    await d.waitForLine((l) => l.event === 'orchesjob_start_call' && l.run_key === 'slow-1');
    const signalledAt = Date.now();
    d.signal('SIGTERM');
    const exit = await d.exited;
    const waitedMs = (d.exitedAtMs ?? 0) - signalledAt;
    console.log(`[signals] SIGTERM during a 1500 ms start: exited ${waitedMs} ms later`);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(waitedMs).toBeGreaterThanOrEqual(1000);
    expect(d.stderr).toBe('');
    expectWellFormed(d);
    expect(d.lines.slice(-3).map((l) => l.event)).toEqual(['orchesjob_start_call', 'dispatch_succeeded', 'reserver_stopped']);

    const [execution] = executions(sb);
    expect(executions(sb)).toHaveLength(1);
    expect(d.events('dispatch_succeeded')[0]?.job_id).toBe(execution?.job_id);
    expect(await status(sb, 'slow-1')).toMatchObject({ reservation_status: 'DISPATCHED', job_id: execution?.job_id });
    const [start] = startInvocations(sb, 'slow-1');
    expect(await waitPidGone(start?.pid ?? 0, 1000)).toBe(true);
  });

  it('a second SIGTERM exits at once; the next dispatcher waits for the orphaned start and adopts its job, never running it twice', async () => {
    const sb = sandbox();
    writeFaults(sb, { 'slow-2': { mode: 'slow', ms: 1500 } });
    const first = await startDispatcher(sb);
    const r = await reserve(sb, 'slow-2');
    await first.waitForLine((l) => l.event === 'orchesjob_start_call' && l.run_key === 'slow-2');
    first.signal('SIGTERM');
    await sleep(150);
    const secondAt = Date.now();
    first.signal('SIGTERM');
    const exit = await first.exited;
    const exitMs = (first.exitedAtMs ?? 0) - secondAt;
    console.log(`[signals] second SIGTERM: exited ${exitMs} ms later with ${JSON.stringify(exit)}`);
    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(exitMs).toBeLessThan(1000);
    expectWellFormed(first);
    expect(first.events('dispatch_succeeded')).toEqual([]);
    expect(await status(sb, 'slow-2')).toMatchObject({ reservation_status: 'DISPATCHING', job_id: null });

    // The orphaned start is still running (its own process group); the old dispatcher is gone.
    const [orphan] = startInvocations(sb, 'slow-2');
    expect(orphan).toBeDefined();

    // The next dispatcher sees the owner gone but its start still running: it must neither release
    // the claim (a second start would run the job twice) nor record a failure. It waits, then adopts
    // the job the orphaned start created.
    const second = await startDispatcher(sb);
    expect(second.lines[0]?.event).toBe('reserver_started');
    const succeeded = await second.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'slow-2', 8000);
    expect(succeeded).toMatchObject({ reservation_id: r.reservation.reservation_id, recovered: true });
    expect(await waitPidGone(orphan?.pid ?? 0, 5000)).toBe(true);
    expect(await second.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(second);

    const runs = executions(sb).filter((e) => e.run_key === 'slow-2');
    expect(runs).toHaveLength(1);
    expect(startInvocations(sb, 'slow-2')).toHaveLength(1);
    expect(succeeded.job_id).toBe(runs[0]?.job_id);
    expect(await status(sb, 'slow-2')).toMatchObject({ reservation_status: 'DISPATCHED', job_id: runs[0]?.job_id });
    expect(ledgerEvents(sb.db).map((e) => e.type)).toEqual(['Reserved', 'DispatchClaimed', 'Dispatched']);
  });
});
