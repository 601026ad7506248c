/**
 * Fault injection (a): the dispatcher is SIGKILLed at random moments, over and over, while 40
 * reservations come due; then one dispatcher runs until all are dispatched. Every run key must have
 * exactly one execution in the stand-in orchesjob (whose jobs finish at once, so a second start would
 * really create a second job), and its reservation must name that job (DESIGN.md, "Crash recovery").
 *
 * Starts are slowed by 0-300 ms per run key, so kills land before, during and after `orchesjob start`;
 * a SIGKILLed dispatcher leaves its start running (own process group): recovery must wait for it and
 * adopt the job it created, or release the claim when it created none.
 *
 * Seeded: `FAULT_SEED=<n>` replays a run (the seed is printed as `[faults] seed`).
 */
import { describe, expect, it } from 'vitest';
import type { DispatcherProcess } from '../support/harness.js';
import {
  expectWellFormed,
  pool,
  reserve,
  sandbox,
  sleep,
  spawnDispatcher,
  startDispatcher,
  writeFaults,
} from '../support/harness.js';
import type { SignalRecord } from '../support/faults.js';
import {
  auditExactlyOnce,
  dispatcherErrors,
  dispatcherId,
  faultSeed,
  nextLine,
  reservationRows,
  Rng,
  runningStartPids,
  severeErrors,
  waitSettled,
  waitStandinsGone,
} from '../support/faults.js';

const KEYS = 40;
const KILLS = 32; // at least 30
const DISPATCHER_ARGS = ['--poll-interval', '0.2'];

type Trigger = 'spawn' | 'started' | 'start-call' | 'outcome';

describe('fault injection: SIGKILL the dispatcher at random moments', () => {
  it(`${KILLS} SIGKILLs over ${KEYS} reservations: every run key runs exactly once and its reservation names the job`, async () => {
    const seed = faultSeed('sigkill', 1_000_003);
    const rng = new Rng(seed);
    const sb = sandbox();
    const t0 = Date.now();

    const keys = Array.from({ length: KEYS }, (_, i) => `sigkill-${String(i).padStart(2, '0')}`);
    // Slow starts (0-300 ms before the job is created) so that kills land inside `orchesjob start`.
    writeFaults(sb, Object.fromEntries(keys.map((k) => [k, { mode: 'slow', ms: rng.chance(0.2) ? 0 : rng.int(10, 300) }])));
    // A quarter due at once, the rest spread over the next seconds: work keeps arriving while kills land.
    const nowS = Math.floor(Date.now() / 1000);
    const notBefore = new Map(keys.map((k, i) => [k, i < KEYS / 4 ? null : nowS + rng.int(1, 14)]));
    const reserving = pool(keys, 2, (k) => {
      const nb = notBefore.get(k);
      return reserve(sb, k, ['echo', k], nb === null || nb === undefined ? [] : ['--not-before', String(nb)]);
    });
    reserving.catch(() => undefined); // awaited below; no unhandled rejection when the test fails first

    const signalled: SignalRecord[] = [];
    const startupMs: number[] = [];
    const cycleMs: number[] = [];
    const killed: DispatcherProcess[] = [];
    const stats = { leftClaims: 0, killsLeavingClaims: 0, killsWithOrphanStarts: 0, orphanStarts: 0, byTrigger: {} as Record<string, number> };
    for (let k = 0; k < KILLS; k++) {
      const spawnedAt = Date.now();
      const d = spawnDispatcher(sb, [...DISPATCHER_ARGS, '--max-concurrent-starts', String(rng.pick([2, 4, 8]))]);
      const trigger = rng.weighted<Trigger>([
        [1, 'spawn'],
        [2, 'started'],
        [4, 'start-call'],
        [2, 'outcome'],
      ]);
      let delay: number;
      if (trigger === 'spawn') {
        delay = rng.int(0, 300); // start-up: migrations, the first recovery
      } else {
        delay = rng.int(20, 300);
        await nextLine(d, (l) => l.event === 'reserver_started', 10_000);
        if (trigger === 'start-call') {
          delay = rng.int(0, 500); // before, during or after that start (150 ms + its 0-300 ms)
          await nextLine(d, (l) => l.event === 'orchesjob_start_call' && l.dispatcher_id === dispatcherId(d), 400);
        } else if (trigger === 'outcome') {
          delay = rng.int(0, 60);
          const from = d.lines.length;
          await nextLine(d, (l) => l.event === 'dispatch_succeeded' || l.event === 'recovered_dispatching', 400, from);
        }
      }
      await sleep(delay);
      const startedIdx = d.lines.findIndex((l) => l.event === 'reserver_started');
      if (startedIdx >= 0) startupMs.push((d.arrivedAtMs[startedIdx] ?? 0) - spawnedAt);
      cycleMs.push(Date.now() - spawnedAt);
      const signalledAtMs = Date.now();
      d.signal('SIGKILL');
      const exit = await d.exited;
      // It never exits on its own: anything but our SIGKILL is a crash.
      expect(exit, `dispatcher ${d.pid} (kill ${k + 1}, ${trigger} + ${delay} ms)\n${d.dump()}`).toEqual({ code: null, signal: 'SIGKILL' });
      signalled.push({ dispatcherId: dispatcherId(d), pid: d.pid, signalledAtMs });
      killed.push(d);
      stats.byTrigger[trigger] = (stats.byTrigger[trigger] ?? 0) + 1;

      const id = dispatcherId(d);
      const left = id === null ? 0 : reservationRows(sb).filter((r) => r.reservation_status === 'DISPATCHING' && r.claim_dispatcher_id === id).length;
      stats.leftClaims += left;
      if (left > 0) stats.killsLeavingClaims++;
      const orphans = runningStartPids(sb).length;
      stats.orphanStarts += orphans;
      if (orphans > 0) stats.killsWithOrphanStarts++;

      if (!rng.chance(0.5)) await sleep(rng.int(0, 200)); // restart at once, or after a short pause
    }
    await reserving;
    const killPhaseMs = Date.now() - t0;

    // After the last kill: one dispatcher runs until everything is dispatched.
    const final = await startDispatcher(sb, DISPATCHER_ARGS);
    const settled = await waitSettled(sb, keys, 30_000);
    expect(await final.stop()).toEqual({ code: 0, signal: null });
    signalled.push({ dispatcherId: dispatcherId(final), pid: final.pid, signalledAtMs: Date.now() });
    expectWellFormed(final);
    expect(settled, `not all settled:\n${JSON.stringify(reservationRows(sb), null, 1)}\n${final.dump()}`).toBe(true);

    for (const d of [...killed, final]) expect(severeErrors(d), d.dump()).toEqual([]);
    expect(await waitStandinsGone(sb, 5000)).toEqual([]);
    const report = auditExactlyOnce(sb, keys, { signalled });
    expect(report.executions).toBe(KEYS);

    const errors = [...killed, final].flatMap(dispatcherErrors);
    console.log(
      `[faults] sigkill seed=${seed}: ${KILLS} SIGKILLs (${JSON.stringify(stats.byTrigger)}); ` +
        `${stats.killsLeavingClaims} kills left ${stats.leftClaims} claims, ${stats.killsWithOrphanStarts} kills orphaned ${stats.orphanStarts} running starts; ` +
        `ledger: ${report.claims} claims, ${report.claimReleased} ClaimReleased, ${report.recoveredDispatched} recovered Dispatched, ` +
        `${report.claims - report.claimReleased - report.recoveredDispatched} Dispatched by the start's own dispatcher, ` +
        `${report.reclaimedKeys} keys claimed twice+; ${report.startInvocations} starts, ${report.executions} executions, 0 duplicates; ` +
        `kill phase ${killPhaseMs} ms, total ${Date.now() - t0} ms; dispatcher_error lines: ${errors.length}`,
    );
    const avg = (xs: number[]) => Math.round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length));
    console.log(`[faults] sigkill: dispatcher start-up ${avg(startupMs)} ms on average, spawn-to-kill ${avg(cycleMs)} ms`);
    for (const e of errors.slice(0, 5)) console.log(`[faults]   ${e}`);
  }, 90_000);
});
