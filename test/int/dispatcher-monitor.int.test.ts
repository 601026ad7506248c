/**
 * What `run` watches its loop with, in process: the observer's calls come where the dispatcher's
 * ports say (src/dispatcher/ports.ts: `ready` after recovery, `starting` for each start call, `looped`
 * after each turn), and the `Monitor` (src/metrics/monitor.ts) that `run --metrics-file` and systemd's
 * notifications use writes the file at most once a second, feeds the watchdog from the loop, reports a
 * file it cannot write once, and tells systemd READY=1, STATUS=, WATCHDOG=1 and STOPPING=1.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DispatcherObserver } from '../../src/dispatcher/ports.js';
import type { ClaimOwner } from '../../src/events/index.js';
import { Monitor } from '../../src/metrics/monitor.js';
import type { Notifier } from '../../src/systemd/notify.js';
import type { Harness } from '../support/fake-ports.js';
import { sec, T0, useInProcessDispatcher } from '../support/fake-ports.js';

const newHarness = useInProcessDispatcher();

const folders: string[] = [];
afterEach(() => {
  for (const f of folders.splice(0)) rmSync(f, { recursive: true, force: true });
});
function tempFolder(): string {
  const folder = mkdtempSync(join(tmpdir(), 'ojr-monitor-'));
  folders.push(folder);
  return folder;
}

const GONE: ClaimOwner = { dispatcher_id: 'dead-dispatcher', host: hostname(), pid: 0 };
const sleepReal = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A notifier that records what it would send. */
class RecordingNotifier implements Notifier {
  readonly sent: string[][] = [];
  constructor(readonly watchdogMs: number | null) {}
  send(assignments: readonly string[]): void {
    this.sent.push([...assignments]);
  }
}

/** The samples of an exposition, by series (name and labels), without HELP and TYPE. */
function samples(text: string): Record<string, number> {
  const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  return Object.fromEntries(lines.map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
}

function monitorFor(h: Harness, options: { metricsFile?: string | null; notifier?: Notifier | null; errors?: string[] } = {}): Monitor {
  return new Monitor({
    db: h.ledger.db,
    clock: h.clock.now,
    metricsFile: options.metricsFile ?? null,
    notifier: options.notifier ?? null,
    version: '9.9.9-test',
    reportError: (message) => options.errors?.push(message),
  });
}

describe("the dispatcher's observer", () => {
  it('is ready once recovery is done, told of each start call with its time, and of each turn of the loop', async () => {
    const h = await newHarness();
    h.clock.set(T0 - 20_000);
    await h.reserve('stale', { notBefore: sec(T0 - 20_000) });
    await h.claim('stale', GONE, ['/old/orchesjob', 'start', '--run-key', 'stale', '--', 'x']);
    h.clock.set(T0);
    const turns: boolean[] = [];
    const observer: DispatcherObserver = {
      ready: () => h.client.calls.push('observer ready'),
      starting: (r, atMs) => h.client.calls.push(`observer starting ${r.runKey} ${r.status} at ${atMs - T0}`),
      looped: (atMs, ok) => {
        turns.push(ok);
        h.client.calls.push(`observer looped ${atMs - T0}`);
      },
    };
    await h.start({ observer });
    // Recovery asked orchesjob and released the claim before `ready`; then the first pass claimed and started it.
    const calls = h.client.calls.filter((c) => c !== 'print reserver_started' && !c.startsWith('runningStarts'));
    expect(calls.slice(0, 6)).toEqual([
      'jobStartedSince stale',
      'print recovered_dispatching stale',
      'observer ready',
      'print orchesjob_start_call stale',
      'observer starting stale DISPATCHING at 0',
      'start stale',
    ]);
    expect(h.client.calls).toContain('observer looped 0');
    expect(turns.every((ok) => ok)).toBe(true);
  });

  it('hears of a turn whose pass failed as not ok, and the loop goes on', async () => {
    const h = await newHarness();
    const turns: boolean[] = [];
    await h.start({ observer: { looped: (_at, ok) => void turns.push(ok) } });
    renameSync(h.ledger.path, `${h.ledger.path}.away`); // a database moved away: the pass fails
    await h.wake();
    renameSync(`${h.ledger.path}.away`, h.ledger.path);
    await h.at(T0 + 5_000); // --error-sleep
    expect(turns).toEqual([true, false, true]);
    expect(h.err.map((l) => l.event)).toEqual(['dispatcher_error']);
  });
});

describe('Monitor (run --metrics-file, systemd)', () => {
  it('writes the metrics after a turn: the ledger, the lateness of this process’s starts, its last pass', async () => {
    const h = await newHarness();
    const file = join(tempFolder(), 'orchesjob_reserver.prom');
    const monitor = monitorFor(h, { metricsFile: file });
    await h.reserve('late', { notBefore: sec(T0) - 5 });
    await h.reserve('future', { notBefore: sec(T0) + 3600 });
    await h.start({ observer: monitor });
    await h.at(T0 + 1_500);
    h.client.nth(0).succeed('job-1'); // the loop turns to record it, at T0 + 1.5 s, and writes the file
    await h.idle();
    await monitor.close();
    const got = samples(readFileSync(file, 'utf8'));
    expect(got).toMatchObject({
      'orchesjob_reserver_reservations{status="DISPATCHED"}': 1,
      'orchesjob_reserver_reservations{status="RESERVED"}': 1,
      'orchesjob_reserver_reservations{status="DISPATCHING"}': 0,
      'orchesjob_reserver_events_total{type="Reserved"}': 2,
      'orchesjob_reserver_events_total{type="DispatchClaimed"}': 1,
      'orchesjob_reserver_events_total{type="Dispatched"}': 1,
      'orchesjob_reserver_events_total{type="DispatchFailed"}': 0,
      orchesjob_reserver_due_reservations: 0,
      orchesjob_reserver_oldest_due_age_seconds: 0,
      orchesjob_reserver_ledger_position: 4,
      orchesjob_reserver_dispatch_paused: 0,
      'orchesjob_reserver_dispatch_lateness_seconds_bucket{le="2.5"}': 0,
      'orchesjob_reserver_dispatch_lateness_seconds_bucket{le="5"}': 1,
      'orchesjob_reserver_dispatch_lateness_seconds_bucket{le="+Inf"}': 1,
      orchesjob_reserver_dispatch_lateness_seconds_sum: 5,
      orchesjob_reserver_dispatch_lateness_seconds_count: 1,
      'orchesjob_reserver_build_info{version="9.9.9-test"}': 1,
    });
    // The last pass: that turn (the fake clock), in seconds.
    expect(got['orchesjob_reserver_last_tick_timestamp_seconds']).toBe((T0 + 1_500) / 1000);
  });

  it('writes at most once a second: a turn within the second asks for a write at its end', async () => {
    const h = await newHarness();
    const file = join(tempFolder(), 'm.prom');
    const monitor = monitorFor(h, { metricsFile: file });
    const inode = () => statSync(file).ino; // every write renames a new file over it
    await monitor.looped(T0, true);
    const first = inode();
    h.clock.set(T0 + 200);
    await monitor.looped(T0 + 200, true);
    expect(inode()).toBe(first);
    await h.reserve('new');
    h.clock.set(T0 + 1_000);
    // The write asked for comes 800 ms after the turn (real time: a timer); wait for it, however loaded the machine.
    const asked = Date.now();
    while (inode() === first && Date.now() - asked < 10_000) await sleepReal(50);
    expect(Date.now() - asked).toBeGreaterThanOrEqual(700);
    const second = inode();
    expect(second).not.toBe(first);
    expect(samples(readFileSync(file, 'utf8'))['orchesjob_reserver_events_total{type="Reserved"}']).toBe(1);
    h.clock.set(T0 + 2_500);
    await monitor.looped(T0 + 2_500, true);
    expect(inode()).not.toBe(second);
    await monitor.close();
    expect(readdirNames(file)).toEqual(['m.prom']); // no temporary file left
  });

  it('reports a file it cannot write once, writes it once it can, and reports again when it fails again', async () => {
    const h = await newHarness();
    const folder = join(tempFolder(), 'node-exporter');
    const file = join(folder, 'orchesjob_reserver.prom');
    const errors: string[] = [];
    const monitor = monitorFor(h, { metricsFile: file, errors });
    await monitor.looped(T0, true);
    await monitor.looped(T0 + 2_000, true);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^metrics file .*orchesjob_reserver\.prom not written: ENOENT/);
    mkdirSync(folder);
    await monitor.looped(T0 + 4_000, true);
    expect(existsSync(file)).toBe(true);
    rmSync(folder, { recursive: true });
    await monitor.looped(T0 + 6_000, true);
    expect(errors).toHaveLength(2);
    await monitor.close();
  });

  it('tells systemd READY=1, a STATUS= when it changes, WATCHDOG=1 from the turns (throttled), and STOPPING=1', async () => {
    const h = await newHarness();
    const notifier = new RecordingNotifier(2_000);
    const monitor = monitorFor(h, { notifier });
    await h.reserve('due', { notBefore: sec(T0) - 12 });
    monitor.ready();
    await monitor.looped(T0, true);
    await monitor.looped(T0 + 100, false); // a failed pass feeds the watchdog too, but not within 500 ms
    await monitor.looped(T0 + 600, true);
    h.clock.set(T0 + 1_500);
    await monitor.looped(T0 + 1_500, true);
    monitor.stopping();
    await monitor.close();
    expect(notifier.sent).toEqual([
      ['READY=1', 'STATUS=dispatching (recovery done)'],
      ['WATCHDOG=1'],
      ['STATUS=1 due (oldest waiting 12 s), 1 reserved, 0 dispatching, ledger position 1'],
      ['WATCHDOG=1'],
      ['WATCHDOG=1'],
      ['STATUS=1 due (oldest waiting 13 s), 1 reserved, 0 dispatching, ledger position 1'],
      ['STOPPING=1', 'STATUS=stopping: recording the starts in flight'],
    ]);
  });
});

function readdirNames(file: string): string[] {
  return readdirSync(join(file, '..')).sort();
}
