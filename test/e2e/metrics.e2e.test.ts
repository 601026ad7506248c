/**
 * End to end: the Prometheus metrics (issue 17). `metrics` prints them once; `run --metrics-file`
 * writes them for node_exporter's textfile collector, and a real node_exporter (Debian's
 * prometheus-node-exporter, started here on 127.0.0.1 and a free port, every collector off but the
 * textfile one) serves them: the test reads its /metrics after reserve, dispatch, a failure, a queue
 * held by a slow start, and an expiry, and `promtool check metrics` has nothing to say about them.
 *
 * Skipped without promtool or node_exporter; under CI=true, failed (.ci/run installs both).
 */
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, RESERVATION_STATUSES } from '../../src/events/index.js';
import { ROOT, reserve, runCli, sandbox, startDispatcher, writeFaults } from '../support/harness.js';
import { checkMetrics, NODE_EXPORTER, PROMTOOL, requireUnderCi, samples, startNodeExporter } from '../support/prometheus.js';
import { waitUntil } from '../support/rsyslog.js';

requireUnderCi({ promtool: PROMTOOL, 'prometheus-node-exporter': NODE_EXPORTER }, 'prometheus and prometheus-node-exporter');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const P = 'orchesjob_reserver_';
const nowSec = () => Math.floor(Date.now() / 1000);

// Every status and every event type the ledger knows is written, 0 included (new types appear by themselves).
const STATUSES = RESERVATION_STATUSES;
const TYPES = EVENT_TYPES;

/** The expected sample of every status and event type: 0 unless given. */
function counts(statuses: Record<string, number>, types: Record<string, number>): Record<string, number> {
  return {
    ...Object.fromEntries(STATUSES.map((s) => [`${P}reservations{status="${s}"}`, statuses[s] ?? 0])),
    ...Object.fromEntries(TYPES.map((t) => [`${P}events_total{type="${t}"}`, types[t] ?? 0])),
  };
}

describe.skipIf(PROMTOOL === null)('metrics', () => {
  it('prints every series once, 0 included, on an empty ledger; promtool finds nothing to complain about', async () => {
    sandbox();
    const r = await runCli(['metrics']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(samples(r.stdout)).toEqual({
      ...counts({}, {}),
      [`${P}due_reservations`]: 0,
      [`${P}oldest_due_age_seconds`]: 0,
      [`${P}ledger_position`]: 0,
      [`${P}dispatch_paused`]: 0,
      [`${P}build_info{version="${VERSION}"}`]: 1,
    });
    expect(r.stdout).toMatch(/^# TYPE orchesjob_reserver_events_total counter$/m);
    expect(checkMetrics(r.stdout)).toEqual({ status: 0, output: '' });
  });

  it('counts reservations and events, and the due ones with the age of the oldest', async () => {
    const sb = sandbox();
    await reserve(sb, 'late', ['true'], ['--not-before', String(nowSec() - 100)]);
    await reserve(sb, 'now', ['true']);
    await reserve(sb, 'later', ['true'], ['--not-before', String(nowSec() + 3600)]);
    await reserve(sb, 'cancelled', ['true'], ['--not-before', String(nowSec() + 3600)]);
    expect((await runCli(['cancel', '--run-key', 'cancelled'])).code).toBe(0);
    const r = await runCli(['metrics', '--db', sb.db]);
    expect(r.code, r.stderr).toBe(0);
    const got = samples(r.stdout);
    expect(got).toMatchObject({
      ...counts({ RESERVED: 3, CANCELLED: 1 }, { Reserved: 4, Cancelled: 1 }),
      [`${P}due_reservations`]: 2,
      [`${P}ledger_position`]: 5,
    });
    expect(got[`${P}oldest_due_age_seconds`]).toBeGreaterThanOrEqual(100);
    expect(got[`${P}oldest_due_age_seconds`]).toBeLessThan(160);
    expect(checkMetrics(r.stdout)).toEqual({ status: 0, output: '' });
  });
});

describe.skipIf(PROMTOOL === null || NODE_EXPORTER === null)('run --metrics-file, served by node_exporter', () => {
  it('has every series with the right values after reserve, dispatch, failure, a held queue and expiry', async () => {
    const sb = sandbox();
    const textfiles = join(sb.dir, 'textfile');
    mkdirSync(textfiles);
    const file = join(textfiles, 'orchesjob_reserver.prom');
    const exporter = await startNodeExporter(textfiles);
    writeFaults(sb, { fail: { mode: 'exit', code: 7, stderr: 'boom' }, slow: { mode: 'slow', ms: 6000 } });
    const d = await startDispatcher(sb, ['--metrics-file', file, '--poll-interval', '0.5', '--max-concurrent-starts', '1']);
    try {
      const scraped = async () => samples(await exporter.scrape());
      await waitFor(scraped, (s) => s[`${P}ledger_position`] === 0, 'the first file');

      await reserve(sb, 'ok', ['true']);
      await reserve(sb, 'fail', ['true']);
      await reserve(sb, 'exp', ['true'], ['--not-before', String(nowSec() + 3600), '--expires-at', String(nowSec() + 3)]);
      await reserve(sb, 'future', ['true'], ['--not-before', String(nowSec() + 3600)]);
      await d.waitForLine((l) => l.event === 'dispatch_failed' && l['run_key'] === 'fail', 10_000);
      // One start slot, held by a slow start: a reservation due meanwhile waits, and the metrics say so.
      await reserve(sb, 'slow', ['true']);
      await d.waitForLine((l) => l.event === 'orchesjob_start_call' && l['run_key'] === 'slow', 10_000);
      await reserve(sb, 'queued', ['true']);
      const held = await waitFor(scraped, (s) => s[`${P}due_reservations`] === 1, 'the queued reservation counted as due');
      expect(held).toMatchObject({ [`${P}reservations{status="DISPATCHING"}`]: 1, [`${P}reservations{status="RESERVED"}`]: 3 });
      expect(held[`${P}oldest_due_age_seconds`]).toBeGreaterThanOrEqual(0);
      await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l['run_key'] === 'queued', 20_000);
      await d.waitForLine((l) => l.event === 'reservation_expired' && l['run_key'] === 'exp', 10_000);

      const last = await waitFor(scraped, (s) => s[`${P}ledger_position`] === 15, 'the last event in the file');
      expect(last).toMatchObject({
        ...counts(
          { RESERVED: 1, DISPATCHED: 3, DISPATCH_FAILED: 1, EXPIRED: 1 },
          { Reserved: 6, DispatchClaimed: 4, Dispatched: 3, DispatchFailed: 1, Expired: 1 },
        ),
        [`${P}due_reservations`]: 0,
        [`${P}oldest_due_age_seconds`]: 0,
        [`${P}dispatch_paused`]: 0,
        [`${P}dispatch_lateness_seconds_count`]: 4,
        [`${P}dispatch_lateness_seconds_bucket{le="+Inf"}`]: 4,
        [`${P}build_info{version="${VERSION}"}`]: 1,
        'node_textfile_scrape_error': 0,
      });
      // 'queued' waited for the slow start (6 s) after it became due.
      expect(last[`${P}dispatch_lateness_seconds_sum`]).toBeGreaterThan(3);
      expect(Math.abs((last[`${P}last_tick_timestamp_seconds`] as number) - Date.now() / 1000)).toBeLessThan(5);
      const text = await exporter.scrape();
      expect(checkMetrics(text)).toEqual({ status: 0, output: '' });
      // Written by rename: no temporary file is left, and node_exporter's user can read it.
      expect(readdirSync(textfiles)).toEqual(['orchesjob_reserver.prom']);
      expect(statSync(file).mode & 0o777).toBe(0o644);
    } finally {
      await d.stop();
      await exporter.stop();
    }
    expect(d.stderr).toBe('');
  }, 60_000);

  it('reports a metrics file it cannot write once, and dispatches as usual', async () => {
    const sb = sandbox();
    const d = await startDispatcher(sb, ['--metrics-file', join(sb.dir, 'no-such-folder', 'm.prom'), '--poll-interval', '0.2']);
    try {
      await reserve(sb, 'ok', ['true']);
      await d.waitForLine((l) => l.event === 'dispatch_succeeded', 10_000);
      await waitUntil(() => d.stderr.includes('dispatcher_error'), 10_000, () => d.stderr);
      await new Promise((resolve) => setTimeout(resolve, 1_500)); // a few more writes fail
    } finally {
      await d.stop();
    }
    const errors = d.stderr.split('\n').filter((l) => l !== '');
    expect(errors).toHaveLength(1);
    expect(JSON.parse(errors[0] as string)).toMatchObject({ event: 'dispatcher_error', error: expect.stringMatching(/^metrics file .*m\.prom not written: ENOENT/) });
  });
});

/** Poll `read` until `ok` holds (node_exporter reads the file at each scrape; the dispatcher rewrites it at most once a second). */
async function waitFor<T>(read: () => Promise<T>, ok: (value: T) => boolean, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
