/**
 * Dispatcher end to end: two `run` processes on one SQLite file never start the same reservation
 * twice, and neither releases the other's live claims (DESIGN.md, "Dispatcher" and "Crash recovery").
 */
import { describe, expect, it } from 'vitest';
import {
  cliOk,
  executions,
  expectWellFormed,
  ledgerEvents,
  pool,
  reserve,
  sandbox,
  startDispatcher,
  startInvocations,
} from '../support/harness.js';

describe('two dispatchers on one file', () => {
  it('dispatch 30 immediate reservations exactly once each', async () => {
    const sb = sandbox();
    const [a, b] = await Promise.all([startDispatcher(sb), startDispatcher(sb)]);
    if (a === undefined || b === undefined) throw new Error('unreachable');
    const keys = Array.from({ length: 30 }, (_, i) => `dual-${String(i).padStart(2, '0')}`);
    await pool(keys, 6, (key) => reserve(sb, key));
    await Promise.all([
      a.waitForCount((l) => l.event === 'dispatch_succeeded', 30, 30_000),
      b.waitForCount((l) => l.event === 'dispatch_succeeded', 30, 30_000),
    ]);
    const [exitA, exitB] = await Promise.all([a.stop(), b.stop()]);
    expect(exitA).toEqual({ code: 0, signal: null });
    expect(exitB).toEqual({ code: 0, signal: null });
    for (const d of [a, b]) {
      expectWellFormed(d);
      expect(d.stderr).toBe('');
      expect(d.events('dispatch_failed')).toEqual([]);
    }

    const runKeys = executions(sb).map((e) => e.run_key).sort();
    expect(runKeys).toEqual(keys);
    expect(startInvocations(sb).map((i) => i.argv[2]).sort()).toEqual(keys);

    const listed = await cliOk(sb, ['list', '--db', sb.db, '--limit', '100']);
    expect(listed.reservations).toHaveLength(30);
    for (const r of listed.reservations as { run_key: string; reservation_status: string; job_id: string }[]) {
      expect(r.reservation_status, r.run_key).toBe('DISPATCHED');
      expect(executions(sb).find((e) => e.run_key === r.run_key)?.job_id, r.run_key).toBe(r.job_id);
    }

    const ledger = ledgerEvents(sb.db);
    expect(ledger.filter((e) => e.type === 'ClaimReleased')).toEqual([]);
    const claims = ledger.filter((e) => e.type === 'DispatchClaimed');
    expect(new Set(claims.map((e) => e.reservation_id)).size).toBe(30);
    expect(claims).toHaveLength(30);
    const idA = a.lines.find((l) => l.event === 'reserver_started')?.dispatcher_id as string | undefined;
    const byA = claims.filter((e) => e.actor === `dispatcher:${idA}`).length;
    console.log(`[concurrency] claims: first dispatcher ${byA}, second ${claims.length - byA}`);
    // Both print the whole ledger written while they ran, in the same order.
    expect(a.lines.filter((l) => l.position !== undefined).map((l) => l.event_id)).toEqual(
      b.lines.filter((l) => l.position !== undefined).map((l) => l.event_id),
    );
  }, 60_000);
});
