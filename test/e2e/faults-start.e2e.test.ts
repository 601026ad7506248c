/**
 * Fault injection (c) and (d): starts that go wrong inside orchesjob, with the dispatcher killed around
 * them (DESIGN.md, "Crash recovery": a start that failed, timed out or was orphaned may still have
 * created the job; orchesjob is asked before anything is released or recorded as failed).
 *
 * (c) The stand-in dies after creating the job, before printing it: the job is adopted, never run again,
 *     whether the dispatcher that spawned it survives, is SIGKILLed at a random moment around it, or is
 *     SIGKILLed while it asks orchesjob about it.
 * (d) A start hangs (before or after creating its job): it is killed at --start-timeout, then orchesjob is
 *     asked: DISPATCHED with the created job (hang-after-create) or DISPATCH_FAILED with no execution
 *     (hang); never left DISPATCHING, also when the dispatcher that owned the hung start was SIGKILLed
 *     (its orphaned start is killed once it outlives the owner's start timeout).
 *
 * Seeded: `FAULT_SEED=<n>` replays a run (the seed is printed as `[faults] seed`).
 */
import { describe, expect, it } from 'vitest';
import type { DispatcherProcess } from '../support/harness.js';
import {
  executions,
  expectWellFormed,
  ledgerEvents,
  pool,
  reserve,
  sandbox,
  sleep,
  spawnDispatcher,
  standinAlive,
  startDispatcher,
  startInvocations,
  writeFaults,
} from '../support/harness.js';
import type { SignalRecord } from '../support/faults.js';
import {
  auditExactlyOnce,
  dispatcherId,
  faultSeed,
  formatLedger,
  ledgerOf,
  nextLine,
  reservationRows,
  Rng,
  runningStartPids,
  severeErrors,
  slowStatusBin,
  waitSettled,
  waitStandinsGone,
} from '../support/faults.js';

const POLL = ['--poll-interval', '0.2'];

/** Every key has exactly one `start` invocation (a second start would have created a second job). */
function expectOneStartEach(sb: ReturnType<typeof sandbox>, keys: readonly string[]): void {
  const bad = keys
    .map((k) => [k, startInvocations(sb, k).length] as const)
    .filter(([, n]) => n !== 1)
    .map(([k, n]) => `${k}: ${n} starts\n${ledgerOf(sb, k)}`);
  expect(bad, bad.join('\n\n')).toEqual([]);
}

/** The Dispatched event of a key (parsed), or undefined. */
function dispatchedOf(sb: ReturnType<typeof sandbox>, key: string) {
  const e = ledgerEvents(sb.db).find((x) => x.run_key === key && x.type === 'Dispatched');
  return e === undefined ? undefined : { ...e, parsed: JSON.parse(e.data) as { job_id: string; recovered?: boolean } };
}

describe('fault injection (c): orchesjob dies after creating the job, before printing it', () => {
  it('12 such starts, the dispatcher SIGKILLed at random moments around them: each job adopted, none run twice', async () => {
    const seed = faultSeed('die-after-create', 3_000_017);
    const rng = new Rng(seed);
    const sb = sandbox();
    const t0 = Date.now();
    const keys = Array.from({ length: 12 }, (_, i) => `dac-${String(i).padStart(2, '0')}`);
    // Every start of these keys creates a job and dies: a second start would be a second execution.
    writeFaults(sb, { '*': { mode: 'die-after-create' } });
    await pool(keys, 3, (k) => reserve(sb, k));

    const KILLS = 6;
    const signalled: SignalRecord[] = [];
    const killed: DispatcherProcess[] = [];
    let claimsLeft = 0;
    for (let k = 0; k < KILLS; k++) {
      const d = spawnDispatcher(sb, [...POLL, '--max-concurrent-starts', String(rng.pick([1, 2, 3]))]);
      await nextLine(d, (l) => l.event === 'reserver_started', 10_000);
      await nextLine(d, (l) => l.event === 'orchesjob_start_call' && l.dispatcher_id === dispatcherId(d), 600);
      // ~150 ms until the stand-in has created the job and died, then as long again for the status check.
      await sleep(rng.int(0, 400));
      const signalledAtMs = Date.now();
      d.signal('SIGKILL');
      expect(await d.exited, d.dump()).toEqual({ code: null, signal: 'SIGKILL' });
      signalled.push({ dispatcherId: dispatcherId(d), pid: d.pid, signalledAtMs });
      killed.push(d);
      const id = dispatcherId(d);
      claimsLeft += reservationRows(sb).filter((r) => r.reservation_status === 'DISPATCHING' && r.claim_dispatcher_id === id).length;
      if (rng.chance(0.5)) await sleep(rng.int(0, 150));
    }

    const final = await startDispatcher(sb, POLL);
    const settled = await waitSettled(sb, keys, 20_000);
    expect(await final.stop()).toEqual({ code: 0, signal: null });
    signalled.push({ dispatcherId: dispatcherId(final), pid: final.pid, signalledAtMs: Date.now() });
    expectWellFormed(final);
    expect(settled, `not all settled:\n${JSON.stringify(reservationRows(sb), null, 1)}\n${final.dump()}`).toBe(true);
    for (const d of [...killed, final]) expect(severeErrors(d), d.dump()).toEqual([]);
    expect(await waitStandinsGone(sb, 5000)).toEqual([]);

    const report = auditExactlyOnce(sb, keys, { signalled });
    expectOneStartEach(sb, keys);
    // The start never printed its job: every dispatch is an adoption.
    for (const k of keys) expect(dispatchedOf(sb, k)?.parsed.recovered, ledgerOf(sb, k)).toBe(true);
    console.log(
      `[faults] die-after-create seed=${seed}: ${KILLS} SIGKILLs left ${claimsLeft} claims; ledger: ${report.claims} claims, ` +
        `${report.claimReleased} ClaimReleased, ${report.recoveredDispatched} recovered Dispatched; ${report.startInvocations} starts, ` +
        `${report.executions} executions, 0 duplicates; ${Date.now() - t0} ms`,
    );
  }, 60_000);

  it('the dispatcher is SIGKILLed while it asks orchesjob about the dead start: the next one adopts the job', async () => {
    const sb = sandbox();
    const slow = slowStatusBin(sb);
    const key = 'dac-status-kill';
    writeFaults(sb, { [key]: { mode: 'die-after-create' } });
    slow.setDelay(1500); // `orchesjob status` stalls: the first dispatcher is caught inside its check
    const first = spawnDispatcher(sb, POLL, { bin: slow.bin });
    await nextLine(first, (l) => l.event === 'reserver_started', 10_000);
    await reserve(sb, key);
    const deadline = Date.now() + 10_000;
    while (slow.delayed().length === 0 && Date.now() < deadline) await sleep(25);
    const [check] = slow.delayed();
    expect(check?.argv, first.dump()).toEqual(['status', '--run-key', key, '--all']);
    expect(executions(sb)).toHaveLength(1); // the job exists; its start died without printing it

    const signalledAtMs = Date.now();
    first.signal('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(reservationRows(sb).map((r) => r.reservation_status)).toEqual(['DISPATCHING']);

    slow.setDelay(0);
    const second = spawnDispatcher(sb, POLL, { bin: slow.bin });
    const adopted = await second.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === key, 10_000);
    expect(await second.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(second);
    expect(severeErrors(first)).toEqual([]);
    expect(severeErrors(second)).toEqual([]);
    // The orphaned status check ends by itself.
    expect(await waitStandinsGone(sb, 6000, [check?.pid ?? 0])).toEqual([]);

    const [run] = executions(sb);
    expect(adopted).toMatchObject({ job_id: run?.job_id, recovered: true });
    auditExactlyOnce(sb, [key], {
      signalled: [
        { dispatcherId: dispatcherId(first), pid: first.pid, signalledAtMs },
        { dispatcherId: dispatcherId(second), pid: second.pid, signalledAtMs: Date.now() },
      ],
    });
    expectOneStartEach(sb, [key]);
    const stream = ledgerEvents(sb.db).filter((e) => e.run_key === key);
    expect(stream.map((e) => e.type), ledgerOf(sb, key)).toEqual(['Reserved', 'DispatchClaimed', 'Dispatched']);
    expect(stream[2]?.actor, ledgerOf(sb, key)).toBe(`dispatcher:${dispatcherId(second)}`);
  }, 40_000);
});

describe('fault injection (d): a hung start', () => {
  it('is killed at --start-timeout, then checked: adopted (hang-after-create) or failed with no execution (hang)', async () => {
    const seed = faultSeed('hung-start', 4_000_037);
    const rng = new Rng(seed);
    const sb = sandbox();
    const t0 = Date.now();
    const modes = new Map<string, string>();
    for (let i = 0; i < 10; i++) {
      modes.set(`hung-${String(i).padStart(2, '0')}`, i < 3 ? 'hang' : i < 6 ? 'hang-after-create' : 'slow');
    }
    const keys = [...modes.keys()];
    writeFaults(
      sb,
      Object.fromEntries(keys.map((k) => [k, modes.get(k) === 'slow' ? { mode: 'slow', ms: rng.int(0, 150) } : { mode: modes.get(k) }])),
    );
    const TIMEOUT_S = 1.5;
    const d = await startDispatcher(sb, [...POLL, '--start-timeout', String(TIMEOUT_S), '--max-concurrent-starts', '10']);
    await pool(rng.shuffle(keys), 3, (k) => reserve(sb, k));
    const settled = await waitSettled(sb, keys, 20_000);
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(d);
    expect(settled, `not all settled:\n${JSON.stringify(reservationRows(sb), null, 1)}\n${d.dump()}`).toBe(true);
    expect(severeErrors(d)).toEqual([]);
    expect(await waitStandinsGone(sb, 3000)).toEqual([]);

    const failed = new Set(keys.filter((k) => modes.get(k) === 'hang'));
    const report = auditExactlyOnce(sb, keys, { failed });
    expectOneStartEach(sb, keys);
    const events = ledgerEvents(sb.db);
    for (const k of keys) {
      const claim = events.find((e) => e.run_key === k && e.type === 'DispatchClaimed');
      const outcome = events.find((e) => e.run_key === k && (e.type === 'Dispatched' || e.type === 'DispatchFailed'));
      const waited = (outcome?.recorded_at_ms ?? 0) - (claim?.recorded_at_ms ?? 0);
      const data = JSON.parse(outcome?.data ?? '{}') as { recovered?: boolean; error?: string };
      if (modes.get(k) === 'slow') {
        expect(data.recovered, ledgerOf(sb, k)).toBeUndefined();
        continue;
      }
      // Decided only once the start was killed at its timeout.
      expect(waited, ledgerOf(sb, k)).toBeGreaterThanOrEqual(TIMEOUT_S * 1000);
      if (modes.get(k) === 'hang') expect(data.error, ledgerOf(sb, k)).toContain(`did not return within ${TIMEOUT_S} s`);
      else expect(data.recovered, ledgerOf(sb, k)).toBe(true);
    }
    console.log(
      `[faults] hung-start seed=${seed}: 3 hang -> DISPATCH_FAILED, 3 hang-after-create -> adopted, 4 normal; ` +
        `${report.dispatchFailed} DispatchFailed, ${report.recoveredDispatched} recovered Dispatched, ${report.executions} executions; ${Date.now() - t0} ms`,
    );
  }, 40_000);

  it('its dispatcher SIGKILLed meanwhile: the orphan is killed at the owner timeout, then adopted or re-run and failed', async () => {
    const seed = faultSeed('hung-start-sigkill', 5_000_011);
    const rng = new Rng(seed);
    const sb = sandbox();
    const t0 = Date.now();
    const modes = new Map([
      ['orphan-hang-0', 'hang'],
      ['orphan-hang-1', 'hang'],
      ['orphan-hac-0', 'hang-after-create'],
      ['orphan-hac-1', 'hang-after-create'],
    ]);
    const keys = [...modes.keys()];
    writeFaults(sb, Object.fromEntries(keys.map((k) => [k, { mode: modes.get(k) }])));
    const OWNER_TIMEOUT_S = 1.5;
    await pool(keys, 4, (k) => reserve(sb, k)); // reserved first: all four are claimed in one pass
    const first = await startDispatcher(sb, [...POLL, '--start-timeout', String(OWNER_TIMEOUT_S), '--max-concurrent-starts', '4']);
    await first.waitForCount((l) => l.event === 'orchesjob_start_call', keys.length, 10_000);
    // All four starts are running (a kill between claim and spawn is scenario (a)'s business).
    const until = Date.now() + 3000;
    while (startInvocations(sb).length < keys.length && Date.now() < until) await sleep(10);
    await sleep(rng.int(0, 300)); // well before the owner's own timeout: it cannot decide them itself
    const signalledAtMs = Date.now();
    first.signal('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(reservationRows(sb).filter((r) => r.reservation_status === 'DISPATCHING').map((r) => r.run_key).sort(), first.dump()).toEqual(
      [...keys].sort(),
    );
    const orphans = runningStartPids(sb);
    expect(
      orphans.map((o) => o.runKey).sort(),
      `the hung starts outlive their dispatcher (killed at ${signalledAtMs})\n${JSON.stringify(startInvocations(sb))}\n` +
        `${formatLedger(ledgerEvents(sb.db))}\n${first.dump()}`,
    ).toEqual([...keys].sort());

    // The next dispatcher has a longer timeout of its own; the orphans are judged by their owner's.
    const NEXT_TIMEOUT_S = 3;
    const second = await startDispatcher(sb, [...POLL, '--start-timeout', String(NEXT_TIMEOUT_S)]);
    const settled = await waitSettled(sb, keys, 20_000);
    expect(await second.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(second);
    expect(settled, `not all settled:\n${JSON.stringify(reservationRows(sb), null, 1)}\n${second.dump()}`).toBe(true);
    expect(severeErrors(first)).toEqual([]);
    expect(severeErrors(second)).toEqual([]);
    for (const o of orphans) expect(standinAlive(o.pid), `orphaned start of ${o.runKey} (${o.pid})`).toBe(false);
    expect(await waitStandinsGone(sb, 3000)).toEqual([]);

    const failed = new Set(keys.filter((k) => modes.get(k) === 'hang'));
    const report = auditExactlyOnce(sb, keys, {
      failed,
      signalled: [
        { dispatcherId: dispatcherId(first), pid: first.pid, signalledAtMs },
        { dispatcherId: dispatcherId(second), pid: second.pid, signalledAtMs: Date.now() },
      ],
    });
    const events = ledgerEvents(sb.db);
    for (const k of keys) {
      const stream = events.filter((e) => e.run_key === k);
      const claim = stream.find((e) => e.type === 'DispatchClaimed');
      if (modes.get(k) === 'hang-after-create') {
        // Adopted from the orphan's job, once the orphan outlived its owner's timeout (1.5 s), not the new one's (3 s).
        expect(stream.map((e) => e.type), ledgerOf(sb, k)).toEqual(['Reserved', 'DispatchClaimed', 'Dispatched']);
        const adopted = stream[2];
        expect(JSON.parse(adopted?.data ?? '{}'), ledgerOf(sb, k)).toMatchObject({ recovered: true });
        const after = (adopted?.recorded_at_ms ?? 0) - (claim?.recorded_at_ms ?? 0);
        expect(after, ledgerOf(sb, k)).toBeGreaterThanOrEqual(OWNER_TIMEOUT_S * 1000);
        expect(after, ledgerOf(sb, k)).toBeLessThan(NEXT_TIMEOUT_S * 1000);
        expect(startInvocations(sb, k), ledgerOf(sb, k)).toHaveLength(1);
      } else {
        // No job: released once the orphan was killed, started again, timed out again, failed.
        expect(stream.map((e) => e.type), ledgerOf(sb, k)).toEqual([
          'Reserved',
          'DispatchClaimed',
          'ClaimReleased',
          'DispatchClaimed',
          'DispatchFailed',
        ]);
        expect(JSON.parse(stream[4]?.data ?? '{}').error, ledgerOf(sb, k)).toContain(`did not return within ${NEXT_TIMEOUT_S} s`);
        expect(startInvocations(sb, k), ledgerOf(sb, k)).toHaveLength(2);
      }
    }
    console.log(
      `[faults] hung-start-sigkill seed=${seed}: 1 SIGKILL with ${orphans.length} hung starts in flight; ${report.claimReleased} ClaimReleased, ` +
        `${report.recoveredDispatched} recovered Dispatched, ${report.dispatchFailed} DispatchFailed, ${report.executions} executions; ${Date.now() - t0} ms`,
    );
  }, 40_000);
});
