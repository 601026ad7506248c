/**
 * Dispatcher end to end: a start that created the job but then failed or timed out (DESIGN.md, "Crash
 * recovery": "The same check decides a start that failed or timed out before `DispatchFailed` is
 * written": ask `orchesjob status --run-key K` and adopt a job started at or after the claim).
 * The job exists in orchesjob, so the reservation must end DISPATCHED with that job id, and the job
 * must not run a second time.
 */
import { describe, expect, it } from 'vitest';
import {
  executions,
  expectWellFormed,
  reserve,
  sandbox,
  startDispatcher,
  status,
  writeFaults,
} from '../support/harness.js';

describe('dispatcher: a start that created the job, then failed', () => {
  it.each([
    ['hang-after-create', 'timed out after creating the job'],
    ['die-after-create', 'was killed after creating the job'],
  ])('%s: the job orchesjob created is adopted (%s)', async (mode) => {
    const sb = sandbox();
    const key = `adopt-${mode}`;
    writeFaults(sb, { [key]: { mode } });
    const d = await startDispatcher(sb, ['--start-timeout', '1']);
    await reserve(sb, key);
    const outcome = await d.waitForLine(
      (l) => (l.event === 'dispatch_succeeded' || l.event === 'dispatch_failed') && l.run_key === key,
      8000,
    );
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(d);

    const runs = executions(sb).filter((e) => e.run_key === key);
    expect(runs, 'orchesjob created exactly one job').toHaveLength(1);
    expect(outcome, JSON.stringify(outcome)).toMatchObject({ event: 'dispatch_succeeded', job_id: runs[0]?.job_id });
    expect(await status(sb, key)).toMatchObject({ reservation_status: 'DISPATCHED', job_id: runs[0]?.job_id });
  });
});
