import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ledger } from '../../src/db/open.js';
import { openLedger } from '../../src/db/open.js';
import type { ControlCommand } from '../../src/events/control.js';
import type { ReservationCommand } from '../../src/events/index.js';
import { EVENT_TYPES, IllegalTransitionError } from '../../src/events/index.js';
import { execute, executeControl, write } from '../../src/ledger.js';

/**
 * docs/auditing.md cannot rot: every query in it runs here, read-only, against a ledger written
 * through the real write path with explicit clocks, and must return the rows the scenario implies.
 */

const DOC = readFileSync(new URL('../../docs/auditing.md', import.meta.url), 'utf8');

/** 2026-05-04T00:00:00Z, and the next day. */
const S = 1_777_852_800;
const DAY2 = S + 86_400;
const D1 = '01JTFX5Z7Q3M8V2K9N4B6C1D0E';
const D2 = '01JTFX6A0R5S7T9V1W3X5Y7Z9A';
const BY_D1 = `dispatcher:${D1}`;
const OWNER_D1 = { dispatcher_id: D1, host: 'edge-1', pid: 4242 };
const OWNER_D2 = { dispatcher_id: D2, host: 'edge-1', pid: 4343 };
const RELEASE_REASON = `owner ${D2} (pid 4343) is gone and orchesjob has no job for the claim`;
const FAIL_ERROR = 'orchesjob command failed: orchesjob start --run-key nightly-fail -- backup.sh\nexit_code=5\nstderr=lock error';
const TIMEOUT_ERROR = 'orchesjob start did not return within 60 s; its process group was killed\nstderr=';

/** `seconds` after the epoch plus `ms`, as a clock. */
const ms = (seconds: number, extraMs = 0): number => seconds * 1000 + extraMs;
const argvOf = (runKey: string): string[] => ['orchesjob', 'start', '--run-key', runKey, '--', 'backup.sh'];

/** Extract every `<!-- query: NAME -->` + ```sql block of the document. */
function queriesOf(markdown: string): Map<string, string> {
  const queries = new Map<string, string>();
  for (const m of markdown.matchAll(/<!-- query: ([a-z0-9-]+) -->\s*```sql\n([\s\S]*?)```/g)) {
    const [, name, sqlText] = m as unknown as [string, string, string];
    if (queries.has(name)) throw new Error(`query ${name} appears twice in docs/auditing.md`);
    queries.set(name, sqlText);
  }
  return queries;
}

const QUERIES = queriesOf(DOC);

let folder: string;
let ledger: Ledger;
let reader: Database.Database;
const ids = new Map<string, string>();

async function reserveAt(runKey: string, atMs: number, times: { notBefore?: number; expiresAt?: number } = {}): Promise<string> {
  const { events, reservation } = await execute(
    ledger.db,
    null,
    {
      type: 'Reserve',
      runKey,
      command: ['backup.sh'],
      orchesjobStartOptions: [],
      metadata: null,
      notBefore: times.notBefore ?? null,
      expiresAt: times.expiresAt ?? null,
    },
    { actor: 'cli:reserve', now: () => atMs },
  );
  const created = events.length > 0;
  expect(created).toBe(true);
  return reservation.reservationId;
}

async function act(runKey: string, atMs: number, actor: string, command: ReservationCommand): Promise<void> {
  await execute(ledger.db, { runKey }, command, { actor, now: () => atMs });
}

const claim = (runKey: string, atMs: number, owner = OWNER_D1): Promise<void> =>
  act(runKey, atMs, `dispatcher:${owner.dispatcher_id}`, {
    type: 'Claim',
    owner,
    argv: argvOf(runKey),
    startTimeoutMs: 60_000,
  });

async function control(atMs: number, actor: string, command: ControlCommand): Promise<void> {
  const { events } = await executeControl(ledger.db, command, { actor, now: () => atMs });
  expect(events).toHaveLength(1);
}

function eventCount(): number {
  return ledger.raw.prepare('SELECT count(*) FROM reservation_events').pluck().get() as number;
}

/** Day 2's times: 00:10 is DAY2 + 600 ... */
const at = (hh: number, mm: number, ss = 0): number => DAY2 + hh * 3600 + mm * 60 + ss;

/** The scenario, in the order a real edge host would have written it (positions 1..40). */
async function writeScenario(): Promise<void> {
  ids.set('nightly-ok', await reserveAt('nightly-ok', ms(S), { notBefore: S + 60 })); // 1
  ids.set('nightly-fail', await reserveAt('nightly-fail', ms(S + 10))); // 2
  await claim('nightly-fail', ms(S + 12, 500)); // 3: 2.5 s after creation
  await act('nightly-fail', ms(S + 13), BY_D1, { type: 'RecordFailure', error: FAIL_ERROR, exitCode: 5 }); // 4
  ids.set('nightly-expire', await reserveAt('nightly-expire', ms(S + 20), { notBefore: S + 100, expiresAt: S + 200 })); // 5
  ids.set('nightly-rerun#1', await reserveAt('nightly-rerun', ms(S + 30))); // 6
  await act('nightly-rerun', ms(S + 40), 'cli:cancel', { type: 'Cancel' }); // 7
  await act('nightly-rerun', ms(S + 50), 'cli:clean', { type: 'Clean' }); // 8
  await claim('nightly-ok', ms(S + 60, 250)); // 9: 250 ms late
  await act('nightly-ok', ms(S + 61), BY_D1, { type: 'RecordDispatch', jobId: 'job-ok' }); // 10
  ids.set('nightly-recovered', await reserveAt('nightly-recovered', ms(S + 70))); // 11
  await claim('nightly-recovered', ms(S + 70, 500), OWNER_D2); // 12: D2 then dies
  ids.set('nightly-released', await reserveAt('nightly-released', ms(S + 80), { notBefore: S + 120 })); // 13
  await act('nightly-recovered', ms(S + 95), BY_D1, { type: 'RecordDispatch', jobId: 'job-rec', recovered: true }); // 14
  await claim('nightly-released', ms(S + 120), OWNER_D2); // 15: on time, D2 then dies
  await act('nightly-released', ms(S + 150), BY_D1, { type: 'ReleaseClaim', reason: RELEASE_REASON }); // 16
  await act('nightly-expire', ms(S + 200, 5), BY_D1, { type: 'Expire' }); // 17
  await act('nightly-fail', ms(S + 250), 'cli:cancel', { type: 'Cancel' }); // 18
  ids.set('weekly-report', await reserveAt('weekly-report', ms(S + 400), { notBefore: S + 4000, expiresAt: S + 7200 })); // 19
  ids.set('hourly-timeout', await reserveAt('hourly-timeout', ms(S + 500))); // 20
  await claim('hourly-timeout', ms(S + 500, 100)); // 21
  await act('hourly-timeout', ms(S + 560), BY_D1, { type: 'RecordFailure', error: TIMEOUT_ERROR, exitCode: null }); // 22
  ids.set('adhoc-once', await reserveAt('adhoc-once', ms(S + 600))); // 23
  await act('adhoc-once', ms(S + 610), 'cli:cancel', { type: 'Cancel' }); // 24
  await act('adhoc-once', ms(S + 620), 'cli:clean', { type: 'Clean' }); // 25
  ids.set('nightly-rerun#2', await reserveAt('nightly-rerun', ms(DAY2 + 300), { notBefore: DAY2 + 360 })); // 26
  await claim('nightly-rerun', ms(DAY2 + 360, 10)); // 27
  await act('nightly-rerun', ms(DAY2 + 361), BY_D1, { type: 'RecordDispatch', jobId: 'job-rerun' }); // 28
  // Day 2, operator controls: the timed-out job is put back in the queue for 01:00; storage
  // maintenance pauses dispatching from 00:30 (extended once) to 01:50, so the export is moved out
  // of the window and then cancelled, and the requeued job runs late when the pause ends.
  await act('hourly-timeout', ms(at(0, 10)), 'cli:requeue', { type: 'Requeue', notBefore: at(1, 0) }); // 29
  ids.set('daily-export', await reserveAt('daily-export', ms(at(0, 15)), { notBefore: at(1, 0), expiresAt: at(1, 30) })); // 30
  await control(ms(at(0, 30)), 'cli:pause', { type: 'Pause', reason: 'storage maintenance', until: at(1, 30) }); // 31
  await act('daily-export', ms(at(0, 40)), 'cli:reschedule', { type: 'Reschedule', notBefore: at(2, 0), expiresAt: at(2, 30) }); // 32
  const before = eventCount();
  await expect(claim('hourly-timeout', ms(at(1, 0)))).rejects.toThrow(IllegalTransitionError); // held by the pause
  expect(eventCount()).toBe(before);
  await control(ms(at(1, 10)), 'cli:pause', { type: 'Pause', reason: 'storage maintenance, extended', until: at(1, 50) }); // 33
  await act('daily-export', ms(at(1, 20)), 'cli:cancel', { type: 'Cancel' }); // 34
  // 35, 36: a pass of the dispatcher records the end of the pause and claims, in one transaction.
  await write(ledger.db, { actor: BY_D1, now: () => ms(at(1, 50), 20) }, async (w) => {
    await w.control({ type: 'Resume', untilPassed: true });
    await w.execute({ runKey: 'hourly-timeout' }, { type: 'Claim', owner: OWNER_D1, argv: argvOf('hourly-timeout'), startTimeoutMs: 60_000 });
  });
  await act('hourly-timeout', ms(at(1, 50, 1)), BY_D1, { type: 'RecordDispatch', jobId: 'job-hourly' }); // 37
  await control(ms(at(3, 0)), 'cli:pause', { type: 'Pause', reason: 'disk full', until: null }); // 38
  await control(ms(at(3, 20)), 'cli:resume', { type: 'Resume' }); // 39
  await control(ms(at(4, 0)), 'cli:pause', { type: 'Pause', reason: 'deploy', until: at(5, 0) }); // 40: still paused at 04:30
}

function id(key: string): string {
  const value = ids.get(key);
  if (value === undefined) throw new Error(`no reservation ${key}`);
  return value;
}

/** Run the documented query NAME with its named parameters (bound as `{ name: value }`). */
function run(name: string, params: Record<string, unknown> = {}): Record<string, unknown>[] {
  const text = QUERIES.get(name);
  if (text === undefined) throw new Error(`docs/auditing.md has no query ${name}`);
  return reader.prepare(text).all(params) as Record<string, unknown>[];
}

beforeAll(async () => {
  folder = mkdtempSync(join(tmpdir(), 'ojr-auditing-'));
  ledger = await openLedger(join(folder, 'reserver.sqlite3'));
  await writeScenario();
  // The operator's view: a separate, read-only connection.
  reader = new Database(ledger.path, { readonly: true, fileMustExist: true });
});

afterAll(async () => {
  reader?.close();
  await ledger?.close();
  if (folder) rmSync(folder, { recursive: true, force: true });
});

describe('docs/auditing.md', () => {
  const EXPECTED = [
    'run-key-history',
    'late-claims',
    'dispatch-failures',
    'cancellations',
    'reschedules-and-requeues',
    'dispatch-pauses',
    'dispatch-latency-per-day',
    'waiting',
    'recovered-dispatches',
    'released-claims',
    'rebuild-state',
  ];

  it('has every expected query, each marked once and in its own sql block', () => {
    expect(QUERIES.size).toBeGreaterThanOrEqual(6);
    expect([...QUERIES.keys()].sort()).toEqual([...EXPECTED].sort());
    expect(DOC.match(/<!-- query: /g)?.length).toBe(QUERIES.size);
  });

  it('names every column of the three tables and every event type', () => {
    for (const table of ['reservation_events', 'reservations', 'dispatch_control']) {
      const columns = reader.prepare(`SELECT name FROM pragma_table_info('${table}')`).pluck().all() as string[];
      expect(columns.length).toBeGreaterThan(5);
      for (const column of columns) expect(DOC, `${table}.${column}`).toContain(`\`${column}\``);
    }
    for (const type of EVENT_TYPES) expect(DOC).toContain(`\`${type}\``);
  });

  it('is right that the ledger refuses UPDATE and DELETE', () => {
    expect(() => ledger.raw.prepare("UPDATE reservation_events SET actor = 'x' WHERE position = 1").run()).toThrow(
      /append-only/,
    );
    expect(() => ledger.raw.prepare('DELETE FROM reservation_events WHERE position = 1').run()).toThrow(/append-only/);
  });

  it('run-key-history: every transition of a run key, across clean and re-reserve', () => {
    const rows = run('run-key-history', { run_key: 'nightly-rerun' });
    expect(rows.map(({ data: _data, ...rest }) => rest)).toEqual([
      { position: 6, at: '2026-05-04 00:00:30', reservation_id: id('nightly-rerun#1'), version: 1, type: 'Reserved', actor: 'cli:reserve' },
      { position: 7, at: '2026-05-04 00:00:40', reservation_id: id('nightly-rerun#1'), version: 2, type: 'Cancelled', actor: 'cli:cancel' },
      { position: 8, at: '2026-05-04 00:00:50', reservation_id: id('nightly-rerun#1'), version: 3, type: 'Cleaned', actor: 'cli:clean' },
      { position: 26, at: '2026-05-05 00:05:00', reservation_id: id('nightly-rerun#2'), version: 1, type: 'Reserved', actor: 'cli:reserve' },
      { position: 27, at: '2026-05-05 00:06:00', reservation_id: id('nightly-rerun#2'), version: 2, type: 'DispatchClaimed', actor: BY_D1 },
      { position: 28, at: '2026-05-05 00:06:01', reservation_id: id('nightly-rerun#2'), version: 3, type: 'Dispatched', actor: BY_D1 },
    ]);
    expect(JSON.parse(rows[5]?.['data'] as string)).toEqual({ job_id: 'job-rerun' });
    expect(JSON.parse(rows[3]?.['data'] as string)).toMatchObject({ not_before: DAY2 + 360, expires_at: null });
  });

  it('late-claims: reservations claimed late, and by how much', () => {
    expect(run('late-claims', { min_late_ms: 100 })).toEqual([
      // Requeued for 01:00 and held by the pause: measured from the requeue's not_before, not the reserve's.
      { claimed_at: '2026-05-05 01:50:00', run_key: 'hourly-timeout', dispatcher_id: D1, due_at: '2026-05-05 01:00:00', late_by_ms: 3_000_020, late_by_ms_recomputed: 3_000_020 },
      { claimed_at: '2026-05-04 00:00:12', run_key: 'nightly-fail', dispatcher_id: D1, due_at: '2026-05-04 00:00:10', late_by_ms: 2500, late_by_ms_recomputed: 2500 },
      { claimed_at: '2026-05-04 00:01:10', run_key: 'nightly-recovered', dispatcher_id: D2, due_at: '2026-05-04 00:01:10', late_by_ms: 500, late_by_ms_recomputed: 500 },
      { claimed_at: '2026-05-04 00:01:00', run_key: 'nightly-ok', dispatcher_id: D1, due_at: '2026-05-04 00:01:00', late_by_ms: 250, late_by_ms_recomputed: 250 },
      { claimed_at: '2026-05-04 00:08:20', run_key: 'hourly-timeout', dispatcher_id: D1, due_at: '2026-05-04 00:08:20', late_by_ms: 100, late_by_ms_recomputed: 100 },
    ]);
    // Unset (NULL in the sqlite3 shell): the default threshold of one second.
    expect(run('late-claims', { min_late_ms: null }).map((r) => r['run_key'])).toEqual(['hourly-timeout', 'nightly-fail']);
  });

  it('dispatch-failures: failures in a time window, with their errors and exit codes', () => {
    expect(run('dispatch-failures', { from: S, to: S + 100 })).toEqual([
      { failed_at: '2026-05-04 00:00:13', run_key: 'nightly-fail', reservation_id: id('nightly-fail'), exit_code: 5, error: FAIL_ERROR, actor: BY_D1 },
    ]);
    expect(run('dispatch-failures', { from: S, to: DAY2 })).toEqual([
      expect.objectContaining({ run_key: 'nightly-fail', exit_code: 5 }),
      { failed_at: '2026-05-04 00:09:20', run_key: 'hourly-timeout', reservation_id: id('hourly-timeout'), exit_code: null, error: TIMEOUT_ERROR, actor: BY_D1 },
    ]);
    expect(run('dispatch-failures', { from: S + 561, to: DAY2 + 86_400 })).toEqual([]);
  });

  it('cancellations: who cancelled what, when, and from which status', () => {
    expect(run('cancellations')).toEqual([
      { cancelled_at: '2026-05-04 00:00:40', run_key: 'nightly-rerun', reservation_id: id('nightly-rerun#1'), cancelled_by: 'cli:cancel', status_before: 'RESERVED', command: '["backup.sh"]' },
      { cancelled_at: '2026-05-04 00:04:10', run_key: 'nightly-fail', reservation_id: id('nightly-fail'), cancelled_by: 'cli:cancel', status_before: 'DISPATCH_FAILED', command: '["backup.sh"]' },
      { cancelled_at: '2026-05-04 00:10:10', run_key: 'adhoc-once', reservation_id: id('adhoc-once'), cancelled_by: 'cli:cancel', status_before: 'RESERVED', command: '["backup.sh"]' },
      // The event before this cancel is a Rescheduled.
      { cancelled_at: '2026-05-05 01:20:00', run_key: 'daily-export', reservation_id: id('daily-export'), cancelled_by: 'cli:cancel', status_before: 'RESERVED', command: '["backup.sh"]' },
    ]);
  });

  it('reschedules-and-requeues: who gave new times or requeued, and the times before and after', () => {
    expect(run('reschedules-and-requeues')).toEqual([
      {
        at: '2026-05-05 00:10:00', run_key: 'hourly-timeout', reservation_id: id('hourly-timeout'), type: 'Requeued', actor: 'cli:requeue',
        from_status: 'DISPATCH_FAILED', previous_not_before: null, not_before: '2026-05-05 01:00:00', previous_expires_at: null, expires_at: null,
      },
      {
        at: '2026-05-05 00:40:00', run_key: 'daily-export', reservation_id: id('daily-export'), type: 'Rescheduled', actor: 'cli:reschedule',
        from_status: 'RESERVED', previous_not_before: '2026-05-05 01:00:00', not_before: '2026-05-05 02:00:00',
        previous_expires_at: '2026-05-05 01:30:00', expires_at: '2026-05-05 02:30:00',
      },
    ]);
    // "Why a requeued reservation had failed is in the event just before it."
    const before = reader
      .prepare("SELECT p.type, json_extract(p.data, '$.error') AS error FROM reservation_events AS e JOIN reservation_events AS p ON p.reservation_id = e.reservation_id AND p.version = e.version - 1 WHERE e.type = 'Requeued'")
      .all();
    expect(before).toEqual([{ type: 'DispatchFailed', error: TIMEOUT_ERROR }]);
  });

  it('dispatch-pauses: each pause, who began it and why, how and when it ended', () => {
    const storage = {
      paused_at: '2026-05-05 00:30:00', paused_by: 'cli:pause', reason: 'storage maintenance, extended', until: '2026-05-05 01:50:00',
      changes: 1, ended_at: '2026-05-05 01:50:00', ended_by: 'until', paused_s: 4800,
    };
    const disk = {
      paused_at: '2026-05-05 03:00:00', paused_by: 'cli:pause', reason: 'disk full', until: null,
      changes: 0, ended_at: '2026-05-05 03:20:00', ended_by: 'cli:resume', paused_s: 1200,
    };
    const deploy = { paused_at: '2026-05-05 04:00:00', paused_by: 'cli:pause', reason: 'deploy', until: '2026-05-05 05:00:00', changes: 0 };
    expect(run('dispatch-pauses', { now: at(4, 30) })).toEqual([storage, disk, { ...deploy, ended_at: null, ended_by: null, paused_s: 1800 }]);
    // Its until has passed by 05:30, recorded or not.
    expect(run('dispatch-pauses', { now: at(5, 30) })).toEqual([storage, disk, { ...deploy, ended_at: '2026-05-05 05:00:00', ended_by: 'until', paused_s: 3600 }]);
    // Before the deploy pause's until: the pause in force is dispatch_control's row.
    const control = reader.prepare('SELECT * FROM dispatch_control').all();
    expect(control).toEqual([{ stream_id: '@dispatch', paused: 1, reason: 'deploy', until: at(5, 0), since: at(4, 0), actor: 'cli:pause', version: 6 }]);
    // Unset :now means the wall clock, long after 2026-05-05 05:00 or before it: the same three pauses.
    expect(run('dispatch-pauses', { now: null }).map((r) => r['reason'])).toEqual(['storage maintenance, extended', 'disk full', 'deploy']);
  });

  it('run-key-history of the empty run key is the control stream', () => {
    const rows = run('run-key-history', { run_key: '' });
    expect(rows.map(({ position, reservation_id, version, type, actor }) => ({ position, reservation_id, version, type, actor }))).toEqual([
      { position: 31, reservation_id: '@dispatch', version: 1, type: 'DispatchPaused', actor: 'cli:pause' },
      { position: 33, reservation_id: '@dispatch', version: 2, type: 'DispatchPaused', actor: 'cli:pause' },
      { position: 35, reservation_id: '@dispatch', version: 3, type: 'DispatchResumed', actor: BY_D1 },
      { position: 38, reservation_id: '@dispatch', version: 4, type: 'DispatchPaused', actor: 'cli:pause' },
      { position: 39, reservation_id: '@dispatch', version: 5, type: 'DispatchResumed', actor: 'cli:resume' },
      { position: 40, reservation_id: '@dispatch', version: 6, type: 'DispatchPaused', actor: 'cli:pause' },
    ]);
    expect(rows.map((r) => JSON.parse(r['data'] as string))).toEqual([
      { reason: 'storage maintenance', until: at(1, 30) },
      { reason: 'storage maintenance, extended', until: at(1, 50) },
      { until_passed: true },
      { reason: 'disk full', until: null },
      {},
      { reason: 'deploy', until: at(5, 0) },
    ]);
  });

  it('dispatch-latency-per-day: time from reserve (and from due) to dispatch', () => {
    expect(run('dispatch-latency-per-day')).toEqual([
      { day: '2026-05-04', dispatches: 2, avg_reserve_to_dispatch_s: 43, max_reserve_to_dispatch_s: 61, avg_due_to_dispatch_ms: 13000, max_due_to_dispatch_ms: 25000 },
      // nightly-rerun (61 s, 1000 ms) and hourly-timeout: reserved the day before (92501 s), requeued for
      // 01:00 and dispatched at 01:50:01, after the pause (3001000 ms from the requeue's not_before).
      { day: '2026-05-05', dispatches: 2, avg_reserve_to_dispatch_s: 46281, max_reserve_to_dispatch_s: 92501, avg_due_to_dispatch_ms: 1501000, max_due_to_dispatch_ms: 3001000 },
    ]);
  });

  it('waiting: RESERVED reservations, how long until due or how overdue', () => {
    expect(run('waiting', { now: S + 1000 })).toEqual([
      { run_key: 'nightly-released', reservation_id: id('nightly-released'), due_at: '2026-05-04 00:02:00', state: 'overdue', due_in_s: -880, expires_at: null, expires_in_s: null, last_error: 'recovered from DISPATCHING' },
      { run_key: 'weekly-report', reservation_id: id('weekly-report'), due_at: '2026-05-04 01:06:40', state: 'waiting', due_in_s: 3000, expires_at: '2026-05-04 02:00:00', expires_in_s: 6200, last_error: null },
    ]);
    // Unset :now means the wall clock: the scenario lies in 2026, so both are overdue or waiting by
    // amounts that depend on today; the rows are still the same two.
    expect(run('waiting', { now: null }).map((r) => r['run_key'])).toEqual(['nightly-released', 'weekly-report']);
  });

  it('recovered-dispatches: jobs adopted after their claimer died', () => {
    expect(run('recovered-dispatches')).toEqual([
      { adopted_at: '2026-05-04 00:01:35', run_key: 'nightly-recovered', job_id: 'job-rec', adopted_by: BY_D1, claimed_at: '2026-05-04 00:01:10', claimed_by: D2, claim_host: 'edge-1', claim_pid: 4343 },
    ]);
  });

  it('released-claims: claims handed back to the queue, and why', () => {
    expect(run('released-claims')).toEqual([
      { released_at: '2026-05-04 00:02:30', run_key: 'nightly-released', released_by: BY_D1, reason: RELEASE_REASON, previous_dispatcher_id: D2, previous_host: 'edge-1', previous_pid: 4343 },
    ]);
  });

  it('rebuild-state: the ledger alone gives back every projection row', () => {
    const columns = [
      'reservation_id', 'run_key', 'reservation_status', 'job_id', 'command_json', 'not_before', 'expires_at',
      'created_at', 'updated_at', 'dispatched_at', 'last_error', 'version', 'claim_dispatcher_id',
    ];
    const projection = reader.prepare(`SELECT ${columns.join(', ')} FROM reservations ORDER BY run_key`).all() as Record<string, unknown>[];
    expect(projection.map((r) => r['run_key'])).toEqual([
      'daily-export', 'hourly-timeout', 'nightly-expire', 'nightly-fail', 'nightly-ok', 'nightly-recovered', 'nightly-released', 'nightly-rerun', 'weekly-report',
    ]);
    for (const row of projection) {
      expect(run('rebuild-state', { run_key: row['run_key'] })).toEqual([row]);
    }
    expect(run('rebuild-state', { run_key: 'nightly-expire' })[0]).toMatchObject({
      reservation_status: 'EXPIRED',
      last_error: 'expired before dispatch',
      updated_at: S + 200,
    });
    // Requeued (new not_before, last_error cleared), then dispatched.
    expect(run('rebuild-state', { run_key: 'hourly-timeout' })[0]).toMatchObject({
      reservation_status: 'DISPATCHED',
      not_before: at(1, 0),
      expires_at: null,
      last_error: null,
      job_id: 'job-hourly',
      version: 6,
    });
    // Rescheduled (the times), then cancelled (the status).
    expect(run('rebuild-state', { run_key: 'daily-export' })[0]).toMatchObject({
      reservation_status: 'CANCELLED',
      not_before: at(2, 0),
      expires_at: at(2, 30),
      version: 3,
    });
    expect(run('rebuild-state', { run_key: 'nightly-rerun' })[0]).toMatchObject({
      reservation_id: id('nightly-rerun#2'),
      reservation_status: 'DISPATCHED',
      job_id: 'job-rerun',
      version: 3,
    });
    // A cleaned run key: gone from the projection, still in the ledger.
    expect(run('rebuild-state', { run_key: 'adhoc-once' })).toEqual([
      {
        reservation_id: id('adhoc-once'), run_key: 'adhoc-once', reservation_status: 'CLEANED', job_id: null,
        command_json: '["backup.sh"]', not_before: null, expires_at: null, created_at: S + 600, updated_at: S + 620,
        dispatched_at: null, last_error: null, version: 3, claim_dispatcher_id: null,
      },
    ]);
    expect(run('rebuild-state', { run_key: 'never-reserved' })).toEqual([]);
  });
});
