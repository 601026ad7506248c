import { describe, expect, it } from 'vitest';
import type { Waker } from '../../src/db/waker.js';
import { escapeLabel, formatNumber, Histogram, LATENESS_BUCKETS, renderMetrics } from '../../src/metrics/exposition.js';
import type { LedgerMetrics } from '../../src/metrics/ledger.js';
import { statusLine, wakeForWatchdog } from '../../src/metrics/monitor.js';
import { watchdogMs } from '../../src/systemd/notify.js';

const LEDGER: LedgerMetrics = {
  reservations: new Map([
    ['RESERVED', 3],
    ['DISPATCHING', 1],
    ['DISPATCHED', 10],
  ]),
  events: new Map([
    ['Reserved', 14],
    ['Odd "type"\\\n', 1],
  ]),
  due: 2,
  oldestDueAgeSeconds: 12.5,
  position: 40,
  paused: false,
};

describe('the exposition format', () => {
  it('writes every series with HELP and TYPE; the dispatcher’s only when given', () => {
    const lateness = new Histogram([0.1, 1]);
    for (const v of [0.05, 0.1, 0.7, 30]) lateness.observe(v);
    expect(renderMetrics(LEDGER, { lateness, lastTickMs: 1_800_000_000_250 }, '1.2.3')).toMatchInlineSnapshot(`
      "# HELP orchesjob_reserver_reservations Reservations in the projection, by status.
      # TYPE orchesjob_reserver_reservations gauge
      orchesjob_reserver_reservations{status="RESERVED"} 3
      orchesjob_reserver_reservations{status="DISPATCHING"} 1
      orchesjob_reserver_reservations{status="DISPATCHED"} 10
      # HELP orchesjob_reserver_due_reservations RESERVED reservations that are due now (not_before, or a retry, passed) and not claimed.
      # TYPE orchesjob_reserver_due_reservations gauge
      orchesjob_reserver_due_reservations 2
      # HELP orchesjob_reserver_oldest_due_age_seconds How long the oldest due reservation has waited since it became due; 0 when none.
      # TYPE orchesjob_reserver_oldest_due_age_seconds gauge
      orchesjob_reserver_oldest_due_age_seconds 12.5
      # HELP orchesjob_reserver_events_total Ledger events by type, counted from the ledger (never reset).
      # TYPE orchesjob_reserver_events_total counter
      orchesjob_reserver_events_total{type="Reserved"} 14
      orchesjob_reserver_events_total{type="Odd \\"type\\"\\\\\\n"} 1
      # HELP orchesjob_reserver_ledger_position The ledger's last position.
      # TYPE orchesjob_reserver_ledger_position gauge
      orchesjob_reserver_ledger_position 40
      # HELP orchesjob_reserver_dispatch_paused 1 while dispatching is paused, else 0.
      # TYPE orchesjob_reserver_dispatch_paused gauge
      orchesjob_reserver_dispatch_paused 0
      # HELP orchesjob_reserver_dispatch_lateness_seconds Start call minus the reservation's due time (not_before, else created_at; a retry's retry_at), for this process's starts.
      # TYPE orchesjob_reserver_dispatch_lateness_seconds histogram
      orchesjob_reserver_dispatch_lateness_seconds_bucket{le="0.1"} 2
      orchesjob_reserver_dispatch_lateness_seconds_bucket{le="1"} 3
      orchesjob_reserver_dispatch_lateness_seconds_bucket{le="+Inf"} 4
      orchesjob_reserver_dispatch_lateness_seconds_sum 30.85
      orchesjob_reserver_dispatch_lateness_seconds_count 4
      # HELP orchesjob_reserver_last_tick_timestamp_seconds When the dispatcher last completed a pass of its loop (epoch seconds).
      # TYPE orchesjob_reserver_last_tick_timestamp_seconds gauge
      orchesjob_reserver_last_tick_timestamp_seconds 1800000000.25
      # HELP orchesjob_reserver_build_info The version of orchesjob-reserver, as a label; always 1.
      # TYPE orchesjob_reserver_build_info gauge
      orchesjob_reserver_build_info{version="1.2.3"} 1
      "
    `);
    const withoutDispatcher = renderMetrics({ ...LEDGER, paused: true }, null, '1.2.3');
    expect(withoutDispatcher).not.toMatch(/lateness|last_tick/);
    expect(withoutDispatcher).toMatch(/^orchesjob_reserver_dispatch_paused 1$/m);
  });

  it('escapes label values and writes special numbers as Prometheus reads them', () => {
    expect(escapeLabel('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    expect([NaN, Infinity, -Infinity, 0, 1e21, 0.000001].map(formatNumber)).toEqual(['NaN', '+Inf', '-Inf', '0', '1e+21', '0.000001']);
  });

  it('counts a lateness on a bucket bound in that bucket, beyond the last only in +Inf', () => {
    const h = new Histogram(LATENESS_BUCKETS);
    h.observe(0.005);
    h.observe(7200);
    const buckets = Object.fromEntries(h.cumulative());
    expect(buckets['0.005']).toBe(1);
    expect(buckets['3600']).toBe(1);
    expect(buckets['+Inf']).toBe(2);
    expect(h.cumulative().map(([le]) => le).at(-1)).toBe('+Inf');
  });
});

describe("systemd's watchdog", () => {
  it('is WATCHDOG_USEC, when WATCHDOG_PID names this process or is unset', () => {
    expect(watchdogMs({ WATCHDOG_USEC: '60000000' }, 42)).toBe(60_000);
    expect(watchdogMs({ WATCHDOG_USEC: '60000000', WATCHDOG_PID: '42' }, 42)).toBe(60_000);
    expect(watchdogMs({ WATCHDOG_USEC: '60000000', WATCHDOG_PID: '41' }, 42)).toBeNull();
    expect(watchdogMs({}, 42)).toBeNull();
    expect(watchdogMs({ WATCHDOG_USEC: '0' }, 42)).toBeNull();
    expect(watchdogMs({ WATCHDOG_USEC: 'soon' }, 42)).toBeNull();
  });

  it('shortens the sleeps of the loop to a third of its interval, and leaves them alone without one', async () => {
    const asked: number[] = [];
    const waker: Waker = { watch: () => undefined, wake: () => undefined, clear: () => undefined, close: () => undefined, sleep: async (ms) => void asked.push(ms) };
    expect(wakeForWatchdog(waker, null)).toBe(waker);
    const capped = wakeForWatchdog(waker, 3_000);
    await capped.sleep(2_000);
    await capped.sleep(600_000);
    expect(asked).toEqual([1_000, 1_000]);
  });
});

describe("systemd's STATUS= line", () => {
  it('says what is due, how many wait and are claimed, and where the ledger is', () => {
    expect(statusLine(LEDGER)).toBe('2 due (oldest waiting 12 s), 3 reserved, 1 dispatching, ledger position 40');
    expect(statusLine({ ...LEDGER, due: 0, paused: true })).toBe('paused; nothing due, 3 reserved, 1 dispatching, ledger position 40');
  });
});
