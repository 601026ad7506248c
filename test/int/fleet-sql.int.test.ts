/**
 * deploy/central/schema.sql against a real PostgreSQL (test/support/postgres.ts), fed with the
 * statement deploy/central/rsyslog.conf's template makes of each line, as the ingest role:
 * - ledgers written through the real write path (explicit clocks) on SQLite files, one per host, their
 *   lines shipped twice and out of order, must be stored event for event, once;
 * - fleet_reservations must be each host's `reservations` projection (and what `list` prints), and
 *   the other views what the ledger says;
 * - every fleet query of docs/fleet.md must give, host by host, what its docs/auditing.md question gives
 *   on that host;
 * - the event types being added (Rescheduled, Requeued; the control stream DispatchPaused,
 *   DispatchResumed), hand-written here, must fold as specified;
 * - a line that is no event must be kept aside without failing the statement; events are never
 *   updated or deleted; the roles may do only what they are for; a gap is found and refilled.
 *
 * Skipped without PostgreSQL, except under CI=true, where it fails (.ci/run installs it).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ledger } from '../../src/db/open.js';
import { openLedger } from '../../src/db/open.js';
import { IllegalTransitionError } from '../../src/events/index.js';
import type { ReservationCommand } from '../../src/events/index.js';
import type { EventRow } from '../../src/events/store.js';
import { ReserverError } from '../../src/errors.js';
import { stringifySorted } from '../../src/json.js';
import { execute } from '../../src/ledger.js';
import { reservationJson } from '../../src/output.js';
import { rowToReservation } from '../../src/projections/reservations.js';
import type { CompareOptions } from '../support/fleet.js';
import {
  centralEventsOf,
  eventLine,
  expectedCentralEvents,
  expectFleetAnswer,
  FLEET_QUERIES,
  FLEET_VERSIONS,
  fleetQuery,
  fleetReservationsOf,
  hostAnswer,
  HOST_QUERIES,
  insertStatement,
  ledgerRowsOf,
  projectionExtrasOf,
  SCHEMA_SQL,
  ship,
  splitFleetReservation,
} from '../support/fleet.js';
import type { Credentials, Postgres } from '../support/postgres.js';
import { createLogin, PG_BIN, startPostgres } from '../support/postgres.js';

const title =
  PG_BIN === null
    ? 'fleet SQL: SKIPPED, PostgreSQL is not installed (Debian: apt-get install postgresql)'
    : 'fleet SQL (deploy/central/schema.sql) on a real PostgreSQL';
if (PG_BIN === null && process.env['CI'] === 'true') throw new Error("PostgreSQL is missing: .ci/run installs Debian's postgresql");
if (PG_BIN === null) console.warn(`test/int/fleet-sql.int.test.ts: ${title}`);

/** 2026-05-04T00:00:00Z. */
const S = 1_777_852_800;
const D1 = '01JTFX5Z7Q3M8V2K9N4B6C1D0E';
const D2 = '01JTFX6A0R5S7T9V1W3X5Y7Z9A';
const OWNER_D1 = { dispatcher_id: D1, host: 'edge-1', pid: 4242 };
const OWNER_D2 = { dispatcher_id: D2, host: 'edge-1', pid: 4343 };
/** Text that SQL, JSON and rsyslog each treat specially. */
const AWKWARD = `it's a "quote" \\ back\\slash %msg% é 😀 \u007f \u2028 tab\t <&> '' ;--`;

const ms = (seconds: number, extraMs = 0): number => seconds * 1000 + extraMs;

/** A deterministic pseudo-random sequence (the random walk must be the same on every run). */
function prng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1_664_525) + 1_013_904_223) >>> 0;
    return x / 2 ** 32;
  };
}

interface HostLedger {
  readonly host: string;
  readonly folder: string;
  readonly ledger: Ledger;
}

async function openHost(host: string): Promise<HostLedger> {
  const folder = mkdtempSync(join(tmpdir(), `ojr-fleet-${host}-`));
  return { host, folder, ledger: await openLedger(join(folder, 'reserver.sqlite3')) };
}

/** Apply a command; false when the state machine (or a missing run key) refuses it. */
async function tryAct(h: HostLedger, runKey: string, command: ReservationCommand, actor: string, atMs: number): Promise<boolean> {
  try {
    await execute(h.ledger.db, command.type === 'Reserve' ? null : { runKey }, command, { actor, now: () => atMs });
    return true;
  } catch (error) {
    if (error instanceof IllegalTransitionError || (error instanceof ReserverError && error.code === 'NOT_FOUND')) return false;
    throw error;
  }
}

function reserveCommand(runKey: string, times: { notBefore?: number; expiresAt?: number; maxAttempts?: number } = {}): ReservationCommand {
  return {
    type: 'Reserve',
    runKey,
    command: ['backup.sh', AWKWARD],
    orchesjobStartOptions: ['--strict'],
    metadata: { note: AWKWARD, n: [1, 2.5, 1e20], nested: { ok: true, none: null } },
    notBefore: times.notBefore ?? null,
    expiresAt: times.expiresAt ?? null,
    ...(times.maxAttempts === undefined ? {} : { maxAttempts: times.maxAttempts, retryDelay: 30 }),
  };
}

const claim = (owner = OWNER_D1): ReservationCommand => ({
  type: 'Claim',
  owner,
  argv: ['orchesjob', 'start', '--run-key', 'k', '--', 'backup.sh'],
  startTimeoutMs: 60_000,
});

/** Every existing event type, with times that make each docs/auditing.md question answer something. */
async function writeScenario(h: HostLedger): Promise<void> {
  const act = async (runKey: string, command: ReservationCommand, actor: string, atMs: number) => {
    expect(await tryAct(h, runKey, command, actor, atMs), `${runKey}: ${command.type}`).toBe(true);
  };
  const BY_D1 = `dispatcher:${D1}`;
  await act('ok', reserveCommand('ok', { notBefore: S + 60 }), 'cli:reserve', ms(S));
  await act('fail', reserveCommand('fail'), 'cli:reserve', ms(S + 10));
  await act('fail', claim(), BY_D1, ms(S + 12, 500));
  await act('fail', { type: 'RecordFailure', error: `orchesjob start failed\nexit_code=5\nstderr=${AWKWARD}`, exitCode: 5 }, BY_D1, ms(S + 13));
  await act('ok', claim(), BY_D1, ms(S + 61, 250));
  await act('ok', { type: 'RecordDispatch', jobId: 'job-ok' }, BY_D1, ms(S + 62));
  await act('retry', reserveCommand('retry', { maxAttempts: 3 }), 'cli:reserve', ms(S + 70));
  await act('retry', claim(), BY_D1, ms(S + 70, 40));
  await act('retry', { type: 'RecordFailure', error: 'attempt 1 failed', exitCode: 1 }, BY_D1, ms(S + 71));
  await act('recovered', reserveCommand('recovered'), 'cli:reserve', ms(S + 80));
  await act('recovered', claim(OWNER_D2), `dispatcher:${D2}`, ms(S + 80, 500));
  await act('recovered', { type: 'RecordDispatch', jobId: 'job-rec', recovered: true }, BY_D1, ms(S + 95));
  await act('released', reserveCommand('released', { notBefore: S + 120 }), 'cli:reserve', ms(S + 90));
  await act('released', claim(OWNER_D2), `dispatcher:${D2}`, ms(S + 122, 100));
  await act('released', { type: 'ReleaseClaim', reason: `owner ${D2} (pid 4343) is gone` }, BY_D1, ms(S + 150));
  await act('expire', reserveCommand('expire', { notBefore: S + 300, expiresAt: S + 200 }), 'cli:reserve', ms(S + 100));
  await act('expire', { type: 'Expire' }, BY_D1, ms(S + 200, 5));
  await act('refused', reserveCommand('refused'), 'gate:airflow', ms(S + 210));
  await act('refused', { type: 'Refuse', reason: 'refused by policy: command not allowed for key airflow' }, BY_D1, ms(S + 211));
  await act('refused', { type: 'Cancel' }, 'cli:cancel', ms(S + 212));
  await act('rerun', reserveCommand('rerun'), 'cli:reserve', ms(S + 220));
  await act('rerun', { type: 'Cancel' }, 'cli:cancel', ms(S + 221));
  await act('rerun', { type: 'Clean' }, 'cli:clean', ms(S + 222));
  await act('rerun', reserveCommand('rerun', { notBefore: S + 86_400 + 360 }), 'cli:reserve', ms(S + 86_400 + 300));
  await act('rerun', claim(), BY_D1, ms(S + 86_400 + 362, 7));
  await act('rerun', { type: 'RecordDispatch', jobId: 'job-rerun' }, BY_D1, ms(S + 86_400 + 363));
  await act('held', reserveCommand('held', { notBefore: S + 4000, expiresAt: S + 7200 }), 'cli:reserve', ms(S + 400));
  await act('claimed', reserveCommand('claimed'), 'cli:reserve', ms(S + 500));
  await act('claimed', claim(), BY_D1, ms(S + 503, 1));
}

/** Random legal sequences over a few run keys: every transition, in orders no scenario writes by hand. */
async function writeRandomWalk(h: HostLedger, seed: number, steps: number): Promise<void> {
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const keys = Array.from({ length: 12 }, (_, i) => `walk-${i}`);
  let now = ms(S + 200_000);
  for (let i = 0; i < steps; i++) {
    now += Math.floor(random() * 4000);
    const runKey = pick(keys);
    const seconds = Math.floor(now / 1000);
    const commands: ReservationCommand[] = [
      reserveCommand(runKey, {
        ...(random() < 0.5 ? { notBefore: seconds + Math.floor(random() * 6) } : {}),
        ...(random() < 0.3 ? { expiresAt: seconds + 3 + Math.floor(random() * 10) } : {}),
        ...(random() < 0.4 ? { maxAttempts: 2 } : {}),
      }),
      claim(pick([OWNER_D1, OWNER_D2])),
      claim(),
      { type: 'RecordDispatch', jobId: `job-${i}`, ...(random() < 0.2 ? { recovered: true } : {}) },
      { type: 'RecordFailure', error: `failure ${i}: ${AWKWARD}`, exitCode: pick([1, 5, null]) },
      { type: 'Refuse', reason: `refused by policy: step ${i}` },
      { type: 'Expire' },
      { type: 'Cancel' },
      { type: 'Clean' },
      { type: 'ReleaseClaim', reason: `step ${i}` },
    ];
    const command = pick(commands);
    const actor = command.type === 'Reserve' ? 'cli:reserve' : command.type === 'Cancel' ? 'cli:cancel' : command.type === 'Clean' ? 'cli:clean' : `dispatcher:${D1}`;
    await tryAct(h, runKey, command, actor, now);
  }
}

/** A ledger line written by hand, for event types this code base does not write yet. */
function handLine(e: { position: number; reservation_id: string; version: number; run_key: string; type: string; data: unknown; at: number; actor?: string }): string {
  return stringifySorted({
    actor: e.actor ?? 'cli:operator',
    data: e.data,
    event_id: `01HAND${String(e.position).padStart(20, '0')}`,
    position: e.position,
    recorded_at: Math.floor(e.at),
    recorded_at_iso: new Date(Math.floor(e.at) * 1000).toISOString().replace('.000Z', '+00:00'),
    recorded_at_ms: Math.round(e.at * 1000),
    reservation_id: e.reservation_id,
    run_key: e.run_key,
    type: e.type,
    version: e.version,
  });
}

/** How one question of docs/auditing.md is asked of the hosts and of the fleet. */
interface FleetCase extends CompareOptions {
  /** The same parameters for both: better-sqlite3's named parameters, psql's variables. */
  readonly params: Record<string, string | number>;
}

describe.skipIf(PG_BIN === null)(title, () => {
  let pg: Postgres;
  let ingest: Credentials;
  let reader: Credentials;
  const hosts: HostLedger[] = [];
  const handles = new Map<string, Database.Database>();
  const rowsOf = new Map<string, EventRow[]>();

  beforeAll(async () => {
    pg = await startPostgres();
    pg.psql(SCHEMA_SQL);
    // Applying it again (an upgrade) changes nothing that is there.
    pg.psql(SCHEMA_SQL);
    ingest = createLogin(pg, 'rsyslog', 'fleet_ingest');
    reader = createLogin(pg, 'operator', 'fleet_reader');
    const edge1 = await openHost('edge-1');
    const edge2 = await openHost('edge-2');
    hosts.push(edge1, edge2);
    await writeScenario(edge1);
    await writeRandomWalk(edge2, 7, 700);
    for (const h of hosts) {
      const db = new Database(h.ledger.path, { readonly: true, fileMustExist: true });
      handles.set(h.host, db);
      const rows = ledgerRowsOf(db);
      rowsOf.set(h.host, rows);
      const lines = rows.map(eventLine);
      // At least once, and not in order: every line twice, the second time from the end.
      ship(pg, h.host, lines, { as: ingest });
      ship(pg, h.host, [...lines].reverse(), { as: ingest });
    }
  }, 120_000);

  afterAll(async () => {
    for (const db of handles.values()) db.close();
    for (const h of hosts) {
      await h.ledger.close();
      rmSync(h.folder, { recursive: true, force: true });
    }
    pg?.stop();
  });

  it('stores every line once, event for event what each host has, however often and in whatever order it arrived', () => {
    for (const h of hosts) {
      const rows = rowsOf.get(h.host)!;
      expect(rows.length).toBeGreaterThan(20);
      expect(centralEventsOf(pg, h.host)).toEqual(expectedCentralEvents(rows));
    }
    expect(pg.rows('SELECT * FROM reservation_events_rejected')).toEqual([]);
    // The walk went through every event type of the code base.
    const types = new Set(rowsOf.get('edge-2')!.map((r) => r.type));
    expect([...types].sort()).toEqual(
      ['Cancelled', 'ClaimReleased', 'Cleaned', 'DispatchAttemptFailed', 'DispatchClaimed', 'DispatchFailed', 'DispatchRefused', 'Dispatched', 'Expired', 'Reserved'].sort(),
    );
  });

  it('fleet_reservations is, host by host, the projection: what `list` prints and the columns beyond it', () => {
    for (const h of hosts) {
      const db = handles.get(h.host)!;
      const projection = db.prepare('SELECT * FROM reservations ORDER BY reservation_id').all() as Parameters<typeof rowToReservation>[0][];
      expect(projection.length).toBeGreaterThan(5);
      const fleet = fleetReservationsOf(pg, h.host).map(splitFleetReservation);
      expect(fleet.map((f) => f.list)).toEqual(projection.map((row) => reservationJson(rowToReservation(row))));
      expect(fleet.map((f) => f.extras)).toEqual(projectionExtrasOf(db));
    }
  });

  it('fleet_pending, fleet_failures and fleet_late_starts say what the ledger says', () => {
    for (const h of hosts) {
      const db = handles.get(h.host)!;
      const rows = rowsOf.get(h.host)!;
      const pending = db.prepare("SELECT reservation_id FROM reservations WHERE reservation_status IN ('RESERVED', 'DISPATCHING') ORDER BY reservation_id").pluck().all();
      expect(pg.rows("SELECT reservation_id FROM fleet_pending WHERE host = :'host' ORDER BY reservation_id", { vars: { host: h.host } }).map((r) => r['reservation_id'])).toEqual(pending);

      const failures = rows
        .filter((r) => ['DispatchFailed', 'DispatchAttemptFailed', 'DispatchRefused'].includes(r.type))
        .map((r) => {
          const data = JSON.parse(r.data) as Record<string, unknown>;
          return { position: r.position, type: r.type, final: r.type !== 'DispatchAttemptFailed', error: data['error'], exit_code: data['exit_code'] ?? null, attempt: data['attempt'] ?? null };
        });
      expect(failures.length).toBeGreaterThan(0);
      expect(pg.rows("SELECT position, type, final, error, exit_code, attempt FROM fleet_failures WHERE host = :'host' ORDER BY position", { vars: { host: h.host } })).toEqual(failures);

      const first = new Map(rows.filter((r) => r.version === 1).map((r) => [r.reservation_id, r]));
      const late = rows
        .filter((r) => r.type === 'DispatchClaimed' && (JSON.parse(r.data) as { late_by_ms: number }).late_by_ms > 1000)
        .map((r) => {
          const reserved = first.get(r.reservation_id)!;
          const notBefore = (JSON.parse(reserved.data) as { not_before: number | null }).not_before;
          return {
            position: r.position,
            late_by_ms: (JSON.parse(r.data) as { late_by_ms: number }).late_by_ms,
            due_at: notBefore ?? reserved.recorded_at,
            late_by_ms_recomputed: r.recorded_at_ms - (notBefore === null ? reserved.recorded_at_ms : notBefore * 1000),
          };
        });
      expect(pg.rows("SELECT position, late_by_ms, due_at, late_by_ms_recomputed FROM fleet_late_starts WHERE host = :'host' ORDER BY position", { vars: { host: h.host } })).toEqual(late);
    }
    expect(pg.rows("SELECT run_key FROM fleet_late_starts WHERE host = 'edge-1' ORDER BY position").map((r) => r['run_key'])).toEqual(['fail', 'ok', 'released', 'rerun', 'claimed']);
  });

  it('every question of docs/auditing.md has a fleet version in docs/fleet.md that answers it for every host at once', () => {
    expect(Object.keys(FLEET_VERSIONS).sort()).toEqual([...HOST_QUERIES.keys()].sort());
    const byName: Record<string, FleetCase> = {
      'run-key-history': { params: { run_key: 'rerun' } },
      'late-claims': { params: { min_late_ms: 1001 } },
      'dispatch-failures': { params: { from: S, to: S + 400_000 } },
      cancellations: { params: {} },
      'dispatch-latency-per-day': { params: {} },
      waiting: { params: { now: S + 1000 }, unordered: true },
      'recovered-dispatches': { params: {} },
      'released-claims': { params: {} },
      'rebuild-state': { params: { run_key: 'held' }, keepHostRow: (r) => r['reservation_status'] !== 'CLEANED' },
    };
    const answered: string[] = [];
    for (const [hostQuery, fleetName] of Object.entries(FLEET_VERSIONS)) {
      const c = byName[hostQuery]!;
      const answers = new Map(hosts.map((h) => [h.host, hostAnswer(handles.get(h.host)!, hostQuery, c.params)]));
      const fleetRows = pg.rows(fleetQuery(fleetName), { vars: c.params, as: reader });
      expectFleetAnswer(fleetName, fleetRows, answers, c);
      if (fleetRows.length > 0) answered.push(hostQuery);
    }
    // Not vacuous: the scenario gives every question an answer.
    expect(answered.sort()).toEqual(Object.keys(FLEET_VERSIONS).sort());
    // The state of every run key of either host, whatever its last event.
    const runKeys = new Set([...rowsOf.values()].flatMap((rows) => rows.map((r) => r.run_key)));
    for (const runKey of runKeys) {
      const answers = new Map(hosts.map((h) => [h.host, hostAnswer(handles.get(h.host)!, 'rebuild-state', { run_key: runKey })]));
      expectFleetAnswer(`fleet-rebuild-state ${runKey}`, pg.rows(fleetQuery('fleet-rebuild-state'), { vars: { run_key: runKey } }), answers, byName['rebuild-state']!);
    }
    // The run key of the cleaned-and-reserved-again reservation: the fleet sees only the live one.
    expect(pg.rows(fleetQuery('fleet-rebuild-state'), { vars: { run_key: 'rerun' } })).toEqual([
      expect.objectContaining({ host: 'edge-1', reservation_status: 'DISPATCHED', job_id: 'job-rerun' }),
    ]);
  });

  it('folds Rescheduled, Requeued and the dispatch control stream as specified (written by hand until the code base writes them)', () => {
    const host = 'edge-next';
    const T = S + 10_000;
    let position = 0;
    const versions = new Map<string, number>();
    const ev = (reservation_id: string, run_key: string, type: string, data: unknown, at: number) => {
      const version = (versions.get(reservation_id) ?? 0) + 1;
      versions.set(reservation_id, version);
      return handLine({ position: ++position, reservation_id, version, run_key, type, data, at });
    };
    const reserved = (notBefore: number | null, expiresAt: number | null) => ({ command: ['x'], orchesjob_start_options: [], metadata: null, not_before: notBefore, expires_at: expiresAt });
    const times = (nb: number | null, ea: number | null, prev: [number | null, number | null], extra: Record<string, unknown> = {}) => ({ not_before: nb, expires_at: ea, previous_not_before: prev[0], previous_expires_at: prev[1], ...extra });
    const claimData = (lateByMs: number) => ({ ...OWNER_D1, argv: ['orchesjob'], late_by_ms: lateByMs, start_timeout_ms: 60_000 });
    const pause = (reason: string | null, until: number | null) => ({ reason, until });
    const control = (type: string, data: unknown, at: number) => ev('@dispatch', '', type, data, at);
    const lines = [
      // rescheduled: RESERVED stays RESERVED with the new times.
      ev('R1', 'rescheduled', 'Reserved', reserved(T + 100, T + 200), T),
      control('DispatchPaused', pause('maintenance', T + 600), T + 1),
      ev('R1', 'rescheduled', 'Rescheduled', times(T + 150, null, [T + 100, T + 200]), T + 2),
      // after a released claim: Rescheduled keeps last_error.
      ev('R2', 'released-then-rescheduled', 'Reserved', reserved(null, null), T + 3),
      ev('R2', 'released-then-rescheduled', 'DispatchClaimed', claimData(0), T + 4),
      ev('R2', 'released-then-rescheduled', 'ClaimReleased', { reason: 'gone', previous_owner: OWNER_D1 }, T + 5),
      control('DispatchPaused', pause('longer maintenance', T + 900), T + 6),
      ev('R2', 'released-then-rescheduled', 'Rescheduled', times(T + 500, T + 800, [null, null]), T + 7),
      // failed, requeued, then dispatched.
      ev('R3', 'requeued', 'Reserved', reserved(T + 8, null), T + 8),
      ev('R3', 'requeued', 'DispatchClaimed', claimData(10), T + 8.01),
      ev('R3', 'requeued', 'DispatchFailed', { error: 'exit_code=5', exit_code: 5 }, T + 9),
      ev('R3', 'requeued', 'Requeued', times(T + 20, T + 60, [T + 8, null], { previous_status: 'DISPATCH_FAILED' }), T + 10),
      // expired, requeued, rescheduled: waits again.
      ev('R4', 'expired-requeued', 'Reserved', reserved(null, T + 12), T + 11),
      ev('R4', 'expired-requeued', 'Expired', { expires_at: T + 12 }, T + 12),
      ev('R4', 'expired-requeued', 'Requeued', times(T + 3000, null, [null, T + 12], { previous_status: 'EXPIRED' }), T + 13),
      ev('R4', 'expired-requeued', 'Rescheduled', times(T + 4000, T + 5000, [T + 3000, null]), T + 14),
      control('DispatchResumed', { until_passed: false }, T + 15),
      ev('R3', 'requeued', 'DispatchClaimed', claimData(1500), T + 21.5),
      ev('R3', 'requeued', 'Dispatched', { job_id: 'job-3' }, T + 22),
      // rescheduled later, then claimed late: lateness from the new not_before.
      ev('R5', 'late-after-reschedule', 'Reserved', reserved(T + 30, null), T + 23),
      ev('R5', 'late-after-reschedule', 'Rescheduled', times(T + 40, null, [T + 30, null]), T + 24),
      ev('R5', 'late-after-reschedule', 'DispatchClaimed', claimData(2500), T + 42.5),
      control('DispatchPaused', pause(null, null), T + 50),
    ];
    const dispatchAfter = (n: number) => {
      ship(pg, host, lines.slice(0, n), { as: ingest });
      return pg.rows("SELECT host, paused, reason, until, since FROM fleet_dispatch WHERE host = :'host'", { vars: { host } })[0];
    };
    // The control stream, step by step: a pause, a second pause (reason and until change, since does
    // not), a resume, a pause without reason or until.
    expect(dispatchAfter(1)).toEqual({ host, paused: false, reason: null, until: null, since: null });
    expect(dispatchAfter(2)).toEqual({ host, paused: true, reason: 'maintenance', until: T + 600, since: T + 1 });
    expect(dispatchAfter(7)).toEqual({ host, paused: true, reason: 'longer maintenance', until: T + 900, since: T + 1 });
    expect(dispatchAfter(17)).toEqual({ host, paused: false, reason: null, until: null, since: null });
    expect(dispatchAfter(lines.length)).toEqual({ host, paused: true, reason: null, until: null, since: T + 50 });
    // Hosts without control events are listed, not paused.
    expect(pg.rows("SELECT host, paused FROM fleet_dispatch WHERE host IN ('edge-1', 'edge-2') ORDER BY host")).toEqual([
      { host: 'edge-1', paused: false },
      { host: 'edge-2', paused: false },
    ]);

    const state = pg.rows(
      `SELECT run_key, reservation_status, job_id, not_before, expires_at, created_at, updated_at, dispatched_at, last_error, version
         FROM fleet_reservations WHERE host = :'host' ORDER BY reservation_id`,
      { vars: { host } },
    );
    expect(state).toEqual([
      { run_key: 'rescheduled', reservation_status: 'RESERVED', job_id: null, not_before: T + 150, expires_at: null, created_at: T, updated_at: T + 2, dispatched_at: null, last_error: null, version: 2 },
      { run_key: 'released-then-rescheduled', reservation_status: 'RESERVED', job_id: null, not_before: T + 500, expires_at: T + 800, created_at: T + 3, updated_at: T + 7, dispatched_at: null, last_error: 'recovered from DISPATCHING', version: 4 },
      { run_key: 'requeued', reservation_status: 'DISPATCHED', job_id: 'job-3', not_before: T + 20, expires_at: T + 60, created_at: T + 8, updated_at: T + 22, dispatched_at: T + 22, last_error: null, version: 6 },
      { run_key: 'expired-requeued', reservation_status: 'RESERVED', job_id: null, not_before: T + 4000, expires_at: T + 5000, created_at: T + 11, updated_at: T + 14, dispatched_at: null, last_error: null, version: 4 },
      { run_key: 'late-after-reschedule', reservation_status: 'DISPATCHING', job_id: null, not_before: T + 40, expires_at: null, created_at: T + 23, updated_at: T + 42, dispatched_at: null, last_error: null, version: 3 },
    ]);
    // Requeued from DISPATCH_FAILED, before its second claim (the same lines up to the Requeued, as
    // another host): RESERVED, no error, no job, the new times.
    ship(pg, 'edge-next-early', lines.slice(0, 12), { as: ingest });
    expect(
      pg.rows("SELECT reservation_status, job_id, last_error, not_before, expires_at, updated_at FROM fleet_reservations WHERE host = 'edge-next-early' AND run_key = 'requeued'"),
    ).toEqual([{ reservation_status: 'RESERVED', job_id: null, last_error: null, not_before: T + 20, expires_at: T + 60, updated_at: T + 10 }]);
    // The control stream is no reservation: nothing of it in fleet_reservations.
    expect(pg.rows("SELECT count(*) AS n FROM fleet_reservations WHERE reservation_id = '@dispatch' OR run_key = ''")).toEqual([{ n: 0 }]);
    expect(pg.rows("SELECT run_key, due_at FROM fleet_pending WHERE host = 'edge-next' ORDER BY due_at")).toEqual([
      { run_key: 'late-after-reschedule', due_at: T + 40 },
      { run_key: 'rescheduled', due_at: T + 150 },
      { run_key: 'released-then-rescheduled', due_at: T + 500 },
      { run_key: 'expired-requeued', due_at: T + 4000 },
    ]);
    expect(pg.rows("SELECT run_key, due_at, late_by_ms, late_by_ms_recomputed FROM fleet_late_starts WHERE host = 'edge-next' ORDER BY position")).toEqual([
      { run_key: 'requeued', due_at: T + 20, late_by_ms: 1500, late_by_ms_recomputed: 1500 },
      { run_key: 'late-after-reschedule', due_at: T + 40, late_by_ms: 2500, late_by_ms_recomputed: 2500 },
    ]);
    expect(pg.rows("SELECT events, last_position, missing FROM fleet_hosts WHERE host = 'edge-next'")).toEqual([{ events: lines.length, last_position: lines.length, missing: 0 }]);
  });

  it('keeps a line that is no event line aside, stores what PostgreSQL text cannot hold as U+FFFD, and never fails the statement', () => {
    const host = "odd'host";
    const good = (position: number, metadata: unknown) =>
      handLine({ position, reservation_id: `ODD${position}`, version: 1, run_key: `odd-${position}`, type: 'Reserved', data: { command: ['x'], orchesjob_start_options: [], metadata, not_before: null, expires_at: null }, at: S });
    const nul = good(1, { text: 'a\u0000b', escaped: 'c\\u0000d', lone: '\ud800', pair: '😀' });
    const cut = good(2, { blob: 'x'.repeat(100) }).slice(0, 80);
    const lines = [nul, cut, '', 'not json at all', '[1, 2]', '{"position": "seven"}', good(3, null).replace('"version":1', '"version":0')];
    for (const line of lines) {
      const r = pg.psqlRaw(`${insertStatement(host, line)};\n`, { as: ingest });
      expect({ status: r.status, stderr: r.stderr }, line).toEqual({ status: 0, stderr: '' });
    }
    // The same again: stored once, kept aside once.
    ship(pg, host, lines, { as: ingest });
    expect(pg.rows("SELECT position, data->'metadata' AS metadata FROM reservation_events WHERE host = :'host'", { vars: { host } })).toEqual([
      { position: 1, metadata: { text: 'a\ufffdb', escaped: 'c\\u0000d', lone: '\ufffd', pair: '😀' } },
    ]);
    const rejected = pg.rows<{ line: string; reason: string }>("SELECT line, reason FROM reservation_events_rejected WHERE host = :'host' ORDER BY line", { vars: { host } });
    expect(rejected.map((r) => r.line).sort()).toEqual(lines.slice(1).sort());
    expect(rejected.every((r) => r.reason.length > 0)).toBe(true);
  });

  it('keeps aside, saying why, the lines of a second ledger shipped under a host name already taken', () => {
    const taken = 'edge-1';
    const before = centralEventsOf(pg, taken);
    const other = rowsOf.get('edge-2')!.slice(0, 5).map(eventLine);
    ship(pg, taken, other, { as: ingest });
    expect(centralEventsOf(pg, taken)).toEqual(before);
    const rejected = pg.rows<{ reason: string }>("SELECT reason FROM reservation_events_rejected WHERE host = :'host' ORDER BY reason", { vars: { host: taken } });
    expect(rejected.map((r) => r.reason)).toEqual(
      before.slice(0, 5).map((e) => `position ${e.position} of host ${taken} holds another event (${e.event_id}): two ledgers ship under one host name`).sort(),
    );
  });

  it('never updates or deletes an event, and gives each role only what it is for', () => {
    const refused = (script: string, as?: Credentials) => {
      const r = pg.psqlRaw(script, as === undefined ? {} : { as });
      expect(r.status, script).not.toBe(0);
      return r.stderr;
    };
    expect(refused("UPDATE reservation_events SET actor = 'x' WHERE position = 1;")).toContain('reservation_events is append-only: events are never updated');
    expect(refused('DELETE FROM reservation_events WHERE position = 1;')).toContain('reservation_events is append-only: events are never deleted');
    expect(refused('TRUNCATE reservation_events;')).toContain('reservation_events is append-only: events are never truncated');
    // The ingest reads only what tells a repeat from another ledger's event: no data, no views.
    expect(refused('SELECT data FROM reservation_events;', ingest)).toContain('permission denied');
    expect(refused('SELECT line FROM reservation_events_rejected;', ingest)).toContain('permission denied');
    expect(refused("UPDATE reservation_events SET actor = 'x';", ingest)).toContain('permission denied');
    expect(refused('SELECT count(*) FROM fleet_reservations;', ingest)).toContain('permission denied');
    expect(refused(`${insertStatement('edge-x', handLine({ position: 1, reservation_id: 'X', version: 1, run_key: 'x', type: 'Cancelled', data: {}, at: S }))};`, reader)).toContain('permission denied');
    expect(pg.rows('SELECT count(*) AS n FROM fleet_reservations', { as: reader })[0]?.['n']).toBeGreaterThan(0);
  });

  it('shows a gap in fleet_hosts and fleet_gaps, and docs/fleet.md\'s refill fills it from the host\'s lines', () => {
    const host = 'edge-gappy';
    const rows = rowsOf.get('edge-1')!;
    const lines = rows.map(eventLine);
    const missing = new Set([1, 2, 7, 8, 9, rows.length - 1]);
    ship(pg, host, lines.filter((_, i) => !missing.has(i + 1)), { as: ingest });
    expect(pg.rows("SELECT events, last_position, missing FROM fleet_hosts WHERE host = :'host'", { vars: { host } })).toEqual([
      { events: rows.length - missing.size, last_position: rows.length, missing: missing.size },
    ]);
    expect(pg.rows("SELECT first_missing, last_missing, missing FROM fleet_gaps WHERE host = :'host' ORDER BY first_missing", { vars: { host } })).toEqual([
      { first_missing: 1, last_missing: 2, missing: 2 },
      { first_missing: 7, last_missing: 9, missing: 3 },
      { first_missing: rows.length - 1, last_missing: rows.length - 1, missing: 1 },
    ]);
    // What `orchesjob-reserver events --since 6 --limit 3` prints, and more than is missing: the refill
    // stores only what is not there.
    const folder = mkdtempSync(join(tmpdir(), 'ojr-fleet-refill-'));
    try {
      writeFileSync(join(folder, 'refill.jsonl'), `${lines.join('\n')}\n`);
      pg.psql(fleetQuery('fleet-refill'), { as: ingest, vars: { host }, cwd: folder });
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
    expect(pg.rows("SELECT count(*) AS n FROM fleet_gaps WHERE host = :'host'", { vars: { host } })).toEqual([{ n: 0 }]);
    expect(centralEventsOf(pg, host)).toEqual(expectedCentralEvents(rows));
  });

  it('applied again (an upgrade), schema.sql keeps every event and says nothing', () => {
    const before = pg.rows('SELECT host, position, event_id FROM reservation_events ORDER BY host, position');
    const r = pg.psqlRaw(SCHEMA_SQL);
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(pg.rows('SELECT host, position, event_id FROM reservation_events ORDER BY host, position')).toEqual(before);
    expect(before.length).toBeGreaterThan(100);
  });

  it('runs every query of docs/fleet.md', () => {
    const vars = { run_key: 'ok', min_late_ms: 1000, from: S, to: S + 86_400, now: 'NULL', host: 'edge-1' };
    for (const [name, query] of FLEET_QUERIES) {
      if (name === 'fleet-refill') continue; // a psql script, run above
      expect(() => pg.rows(query, { vars, as: reader }), name).not.toThrow();
    }
  });
});
