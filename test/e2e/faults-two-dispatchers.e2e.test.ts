/**
 * Fault injection (b): two dispatchers share one SQLite file; again and again one of them is stopped
 * (SIGKILL, SIGTERM, or SIGTERM twice, which exits at once) and restarted while the other keeps
 * working. Every run key must still have exactly one execution in the stand-in orchesjob, its
 * reservation must name that job, nothing may stay DISPATCHING, and a claim may be released or adopted
 * by the other dispatcher only after its owner was signalled (DESIGN.md, "Dispatcher": two `run`
 * processes on one file never start the same reservation twice; "Crash recovery").
 *
 * Seeded: `FAULT_SEED=<n>` replays a run (the seed is printed as `[faults] seed`).
 */
import { describe, expect, it } from 'vitest';
import type { DispatcherProcess } from '../support/harness.js';
import { expectWellFormed, pool, reserve, sandbox, sleep, spawnDispatcher, writeFaults } from '../support/harness.js';
import type { SignalRecord } from '../support/faults.js';
import {
  auditExactlyOnce,
  dispatcherErrors,
  dispatcherId,
  faultSeed,
  ledgerOf,
  nextLine,
  reservationRows,
  Rng,
  runningStartPids,
  severeErrors,
  waitSettled,
  waitStandinsGone,
} from '../support/faults.js';

const KEYS = 40;
const ROUNDS = 16;
const DISPATCHER_ARGS = ['--poll-interval', '0.2'];

type How = 'SIGKILL' | 'SIGTERM' | 'SIGTERM twice';

describe('fault injection: two dispatchers on one file, one restarted while the other works', () => {
  it(`${ROUNDS} restarts (SIGKILL / SIGTERM / SIGTERM twice) over ${KEYS} reservations: every run key runs exactly once`, async () => {
    const seed = faultSeed('two-dispatchers', 2_000_029);
    const rng = new Rng(seed);
    const sb = sandbox();
    const t0 = Date.now();

    const keys = Array.from({ length: KEYS }, (_, i) => `pair-${String(i).padStart(2, '0')}`);
    writeFaults(sb, Object.fromEntries(keys.map((k) => [k, { mode: 'slow', ms: rng.chance(0.2) ? 0 : rng.int(10, 300) }])));
    const nowS = Math.floor(Date.now() / 1000);
    const notBefore = new Map(keys.map((k, i) => [k, i < KEYS / 4 ? null : nowS + rng.int(1, 12)]));

    const launch = () => spawnDispatcher(sb, [...DISPATCHER_ARGS, '--max-concurrent-starts', String(rng.pick([2, 4]))]);
    const slots: DispatcherProcess[] = [launch(), launch()];
    const all: DispatcherProcess[] = [...slots];
    const reserving = pool(keys, 2, (k) => {
      const nb = notBefore.get(k);
      return reserve(sb, k, ['echo', k], nb === null || nb === undefined ? [] : ['--not-before', String(nb)]);
    });
    reserving.catch(() => undefined); // awaited below; no unhandled rejection when the test fails first

    const signalled: SignalRecord[] = [];
    const counts: Record<How, number> = { SIGKILL: 0, SIGTERM: 0, 'SIGTERM twice': 0 };
    const stats = { claimsLeft: 0, orphanStarts: 0, victimsWithClaimsInFlight: 0, sigtermDeaths: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const v = rng.int(0, 1);
      const victim = slots[v] as DispatcherProcess;
      const other = slots[1 - v] as DispatcherProcess;
      const how = rng.weighted<How>([
        [5, 'SIGKILL'],
        [3, 'SIGTERM'],
        [2, 'SIGTERM twice'],
      ]);
      const label = `round ${round + 1}: ${how} of dispatcher ${victim.pid}`;
      await nextLine(victim, (l) => l.event === 'reserver_started', 10_000);
      if (rng.chance(0.6)) {
        await nextLine(victim, (l) => l.event === 'orchesjob_start_call' && l.dispatcher_id === dispatcherId(victim), 400, victim.lines.length);
        await sleep(rng.int(0, 300));
      } else {
        await sleep(rng.int(20, 400));
      }
      const id = dispatcherId(victim);
      const inFlight = reservationRows(sb).filter((r) => r.reservation_status === 'DISPATCHING' && r.claim_dispatcher_id === id).length;
      if (inFlight > 0) stats.victimsWithClaimsInFlight++;
      const signalledAtMs = Date.now();
      if (how === 'SIGKILL') {
        victim.signal('SIGKILL');
        expect(await victim.exited, `${label}\n${victim.dump()}`).toEqual({ code: null, signal: 'SIGKILL' });
      } else if (how === 'SIGTERM') {
        victim.signal('SIGTERM');
        expect(await victim.exited, `${label}\n${victim.dump()}`).toEqual({ code: 0, signal: null });
        expect(victim.lines.at(-1)?.event, label).toBe('reserver_stopped');
      } else {
        victim.signal('SIGTERM');
        await sleep(rng.int(0, 100));
        victim.signal('SIGTERM'); // no-op when it already exited
        const exit = await victim.exited;
        // 143: the second signal cut the stop short. 0: it had finished before the second signal. Killed
        // by SIGTERM: the second signal came after it printed reserver_stopped and removed its handlers.
        const ok =
          exit.code === 143 ||
          exit.code === 0 ||
          (exit.signal === 'SIGTERM' && victim.lines.at(-1)?.event === 'reserver_stopped');
        expect(ok, `${label}: ${JSON.stringify(exit)}\n${victim.dump()}`).toBe(true);
        if (exit.signal === 'SIGTERM') stats.sigtermDeaths++;
      }
      counts[how]++;
      signalled.push({ dispatcherId: dispatcherId(victim), pid: victim.pid, signalledAtMs });

      const left = reservationRows(sb).filter((r) => r.reservation_status === 'DISPATCHING' && r.claim_dispatcher_id === id);
      if (how === 'SIGTERM') {
        // A graceful stop finishes its starts and records them: it leaves no claim behind.
        expect(left.map((r) => `${r.run_key}\n${ledgerOf(sb, r.run_key)}`), `${label}\n${victim.dump()}`).toEqual([]);
      }
      stats.claimsLeft += id === null ? 0 : left.length;
      stats.orphanStarts += runningStartPids(sb).length;
      expect(other.running, `the other dispatcher (${other.pid}) must still be working\n${other.dump()}`).toBe(true);

      if (rng.chance(0.5)) await sleep(rng.int(0, 200));
      const fresh = launch();
      slots[v] = fresh;
      all.push(fresh);
    }
    await reserving;
    const restartPhaseMs = Date.now() - t0;

    const settled = await waitSettled(sb, keys, 30_000);
    const [a, b] = slots as [DispatcherProcess, DispatcherProcess];
    await nextLine(a, (l) => l.event === 'reserver_started', 10_000);
    await nextLine(b, (l) => l.event === 'reserver_started', 10_000);
    const stoppedAtMs = Date.now();
    const [exitA, exitB] = await Promise.all([a.stop(), b.stop()]);
    expect(exitA, a.dump()).toEqual({ code: 0, signal: null });
    expect(exitB, b.dump()).toEqual({ code: 0, signal: null });
    for (const d of [a, b]) signalled.push({ dispatcherId: dispatcherId(d), pid: d.pid, signalledAtMs: stoppedAtMs });
    expectWellFormed(a);
    expectWellFormed(b);
    expect(settled, `not all settled:\n${JSON.stringify(reservationRows(sb), null, 1)}\n${a.dump()}\n${b.dump()}`).toBe(true);

    for (const d of all) expect(severeErrors(d), d.dump()).toEqual([]);
    expect(await waitStandinsGone(sb, 5000)).toEqual([]);
    const report = auditExactlyOnce(sb, keys, { signalled });
    expect(report.executions).toBe(KEYS);

    const errors = all.flatMap(dispatcherErrors);
    console.log(
      `[faults] two-dispatchers seed=${seed}: ${ROUNDS} restarts (${counts.SIGKILL} SIGKILL, ${counts.SIGTERM} SIGTERM, ` +
        `${counts['SIGTERM twice']} SIGTERM twice, of which ${stats.sigtermDeaths} died of the second SIGTERM after reserver_stopped); ${stats.victimsWithClaimsInFlight} victims had claims in flight, ` +
        `${stats.claimsLeft} claims left behind, ${stats.orphanStarts} orphaned starts seen; ledger: ${report.claims} claims, ` +
        `${report.claimReleased} ClaimReleased, ${report.recoveredDispatched} recovered Dispatched, ${report.reclaimedKeys} keys claimed twice+; ` +
        `${report.startInvocations} starts, ${report.executions} executions, 0 duplicates; ` +
        `restart phase ${restartPhaseMs} ms, total ${Date.now() - t0} ms; dispatcher_error lines: ${errors.length}`,
    );
    for (const e of errors.slice(0, 5)) console.log(`[faults]   ${e}`);
  }, 90_000);
});
