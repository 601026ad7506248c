/**
 * deploy/central/schema.sql against a real PostgreSQL (test/support/postgres.ts), fed with the
 * statement deploy/central/rsyslog.conf's template makes of each line, as the ingest role:
 * - ledgers written through the real write path (explicit clocks) on SQLite files, one per host, their
 *   lines shipped twice and out of order, must be stored event for event, once;
 * - the ledgers hold every event type: reschedules (earlier, later, a new expiry, none), requeues (from
 *   DISPATCH_FAILED and EXPIRED), pauses (with a reason, an until, resumed, outlived and ended by a
 *   dispatcher's pass, begun anew after an outlived one), among the rest, and a random walk of them all;
 * - fleet_reservations and fleet_dispatch must be each host's `reservations` projection (and what
 *   `list` prints) and `dispatch_control` row after every command, the other views what the ledger says;
 * - docs/auditing.md's questions must agree with the folds (evolve, evolveControl) on those ledgers,
 *   and every fleet query of docs/fleet.md must give, host by host, what its docs/auditing.md question
 *   gives on that host;
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
import type { ControlCommand, ControlEvent, DispatchControl } from '../../src/events/control.js';
import { effectivePause, evolveControl, isControlEvent, NOT_PAUSED, pauseOutlived, RejectedControlError } from '../../src/events/control.js';
import { EVENT_TYPES, IllegalTransitionError, RejectedCommandError } from '../../src/events/index.js';
import type { EventOf, Reservation, ReservationCommand, ReservationEvent, ReservationState } from '../../src/events/index.js';
import { evolve } from '../../src/events/index.js';
import type { EventRow } from '../../src/events/store.js';
import { rowToEvent } from '../../src/events/store.js';
import { ReserverError } from '../../src/errors.js';
import { stringifySorted } from '../../src/json.js';
import { execute, executeControl, write } from '../../src/ledger.js';
import { reservationJson } from '../../src/output.js';
import type { ReservationRow } from '../../src/projections/reservations.js';
import { rowToReservation } from '../../src/projections/reservations.js';
import type { CompareOptions, FleetReservation } from '../support/fleet.js';
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
  LIST_KEYS,
  PROJECTION_EXTRAS,
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

/** The host's state after one of its commands: what the fleet must fold from the lines up to `position`. */
interface Step {
  readonly position: number;
  /** The `reservations` rows, by reservation id. */
  readonly reservations: ReservationRow[];
  /** The `dispatch_control` row (NOT_PAUSED before the first control event). */
  readonly control: DispatchControl;
}

interface HostLedger {
  readonly host: string;
  readonly folder: string;
  readonly ledger: Ledger;
  /** Snapshots taken after commands (`snapshot`), in order. */
  readonly steps: Step[];
}

async function openHost(host: string): Promise<HostLedger> {
  const folder = mkdtempSync(join(tmpdir(), `ojr-fleet-${host}-`));
  return { host, folder, ledger: await openLedger(join(folder, 'reserver.sqlite3')), steps: [] };
}

/** Record the host's projection and control row as they are now (once per position). */
function snapshot(h: HostLedger): void {
  const raw = h.ledger.raw;
  const position = raw.prepare('SELECT COALESCE(max(position), 0) FROM reservation_events').pluck().get() as number;
  if (position === 0 || h.steps.at(-1)?.position === position) return;
  const reservations = raw.prepare('SELECT * FROM reservations ORDER BY reservation_id').all() as ReservationRow[];
  const row = raw.prepare('SELECT paused, reason, until, since, actor, version FROM dispatch_control').get() as
    | { paused: number; reason: string | null; until: number | null; since: number | null; actor: string | null; version: number }
    | undefined;
  const control = row === undefined ? NOT_PAUSED : { ...row, paused: row.paused === 1 };
  h.steps.push({ position, reservations, control });
}

/** Apply a command; false when the state machine (or a missing run key, or its values) refuses it. */
async function tryAct(h: HostLedger, runKey: string, command: ReservationCommand, actor: string, atMs: number): Promise<boolean> {
  try {
    await execute(h.ledger.db, command.type === 'Reserve' ? null : { runKey }, command, { actor, now: () => atMs });
    return true;
  } catch (error) {
    if (
      error instanceof IllegalTransitionError ||
      error instanceof RejectedCommandError ||
      (error instanceof ReserverError && error.code === 'NOT_FOUND')
    ) {
      return false;
    }
    throw error;
  }
}

/** Apply a control command (`pause`, `resume`); false when it is refused (an `until` that has passed). */
async function tryControl(h: HostLedger, command: ControlCommand, actor: string, atMs: number): Promise<boolean> {
  try {
    await executeControl(h.ledger.db, command, { actor, now: () => atMs });
    return true;
  } catch (error) {
    if (error instanceof RejectedControlError) return false;
    throw error;
  }
}

/**
 * A pass of the dispatcher `actor` at `atMs`, as `run` makes it: in one transaction, it records the end
 * of a pause whose `until` has passed (DispatchResumed, `until_passed`), then claims `runKey`.
 */
async function dispatcherPass(h: HostLedger, runKey: string | null, owner: typeof OWNER_D1, atMs: number): Promise<boolean> {
  try {
    await write(h.ledger.db, { actor: `dispatcher:${owner.dispatcher_id}`, now: () => atMs }, async (w) => {
      if (pauseOutlived(await w.readControl(), w.nowMs)) await w.control({ type: 'Resume', untilPassed: true });
      if (runKey !== null) await w.execute({ runKey }, claim(owner));
    });
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

/** Day 2, 01:00:00Z: the operator controls of the scenario. */
const T = S + 90_000;
/** The clock for the questions that take `:now`, after both ledgers: the last pause of the scenario (`deploy`) is in force. */
const QUERY_NOW = S + 300_000;

/**
 * Every event type, with times that make each docs/auditing.md question answer something; a snapshot
 * after every command.
 */
async function writeScenario(h: HostLedger): Promise<void> {
  const act = async (runKey: string, command: ReservationCommand, actor: string, atMs: number) => {
    expect(await tryAct(h, runKey, command, actor, atMs), `${runKey}: ${command.type}`).toBe(true);
    snapshot(h);
  };
  const control = async (command: ControlCommand, actor: string, atMs: number) => {
    expect(await tryControl(h, command, actor, atMs), `${command.type} at ${atMs}`).toBe(true);
    snapshot(h);
  };
  const pass = async (runKey: string, atMs: number) => {
    expect(await dispatcherPass(h, runKey, OWNER_D1, atMs), `${runKey}: pass`).toBe(true);
    snapshot(h);
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

  // Day 2 from 01:00 (T), in time order: operator controls, through the same write path as
  // `reschedule`, `requeue`, `pause`, `resume` and the dispatcher's passes.
  // moved-later: rescheduled later, with a new expiry; claimed late.
  await act('moved-later', reserveCommand('moved-later', { notBefore: T + 100, expiresAt: T + 200 }), 'cli:reserve', ms(T));
  // moved-earlier: rescheduled earlier and without expiry (--no-expiry); claimed late.
  await act('moved-earlier', reserveCommand('moved-earlier', { notBefore: T + 1000, expiresAt: T + 2000 }), 'cli:reserve', ms(T + 1));
  // requeued-failed: failed, requeued for later; claimed late.
  await act('requeued-failed', reserveCommand('requeued-failed'), 'cli:reserve', ms(T + 2));
  await act('requeued-failed', claim(), BY_D1, ms(T + 2, 100));
  await act('requeued-failed', { type: 'RecordFailure', error: `exit_code=5\nstderr=${AWKWARD}`, exitCode: 5 }, BY_D1, ms(T + 3));
  // requeued-expired: expired, requeued without expiry, then cancelled.
  await act('requeued-expired', reserveCommand('requeued-expired', { expiresAt: T + 30 }), 'cli:reserve', ms(T + 4));
  // rescheduled-cancelled: its not_before only, then cancelled.
  await act('rescheduled-cancelled', reserveCommand('rescheduled-cancelled', { notBefore: T + 700, expiresAt: T + 900 }), 'cli:reserve', ms(T + 5));
  await act('rescheduled-cancelled', { type: 'Reschedule', notBefore: T + 800 }, 'cli:reschedule', ms(T + 6));
  await act('rescheduled-cancelled', { type: 'Cancel' }, 'cli:cancel', ms(T + 7));
  // retry-moved: a failed attempt, then rescheduled twice: its expiry alone (the retry stays), then its
  // time (the retry gives way); claimed late.
  await act('retry-moved', reserveCommand('retry-moved', { maxAttempts: 2 }), 'cli:reserve', ms(T + 8));
  await act('retry-moved', claim(), BY_D1, ms(T + 8, 100));
  await act('retry-moved', { type: 'RecordFailure', error: 'attempt 1 failed', exitCode: 1 }, BY_D1, ms(T + 9));
  await act('moved-later', { type: 'Reschedule', notBefore: T + 300, expiresAt: T + 400 }, 'cli:reschedule', ms(T + 10));
  await act('retry-moved', { type: 'Reschedule', expiresAt: T + 5000 }, 'cli:reschedule', ms(T + 10, 500));
  await act('moved-earlier', { type: 'Reschedule', notBefore: T + 50, expiresAt: null }, 'cli:reschedule', ms(T + 11));
  await act('retry-moved', { type: 'Reschedule', notBefore: T + 290 }, 'cli:reschedule', ms(T + 12));
  await act('requeued-failed', { type: 'Requeue', notBefore: T + 60 }, 'cli:requeue', ms(T + 20));
  await act('requeued-expired', { type: 'Expire' }, BY_D1, ms(T + 30, 3));
  await act('requeued-expired', { type: 'Requeue', notBefore: T + 5000, expiresAt: null }, 'cli:requeue', ms(T + 40));
  await act('moved-earlier', claim(), BY_D1, ms(T + 51, 200));
  await act('moved-earlier', { type: 'RecordDispatch', jobId: 'job-earlier' }, BY_D1, ms(T + 52));
  await act('requeued-failed', claim(), BY_D1, ms(T + 62));
  await act('requeued-failed', { type: 'RecordDispatch', jobId: 'job-requeued' }, BY_D1, ms(T + 63));
  // Paused for maintenance until T+250, extended to T+280 (since stays).
  await control({ type: 'Pause', reason: 'maintenance', until: T + 250 }, 'cli:pause', ms(T + 100));
  await control({ type: 'Pause', reason: `maintenance, extended: ${AWKWARD}`, until: T + 280 }, 'cli:pause', ms(T + 150));
  // The until passed: the next pass records the end and claims, in one transaction.
  await pass('retry-moved', ms(T + 291, 500));
  await act('retry-moved', { type: 'RecordDispatch', jobId: 'job-retry-moved' }, BY_D1, ms(T + 292));
  await pass('moved-later', ms(T + 302, 500));
  await act('moved-later', { type: 'RecordDispatch', jobId: 'job-later' }, BY_D1, ms(T + 303));
  await act('requeued-expired', { type: 'Cancel' }, 'cli:cancel', ms(T + 600));
  // Paused without until; a due reservation is not claimed until the resume, then late by the pause.
  await control({ type: 'Pause', reason: 'disk full', until: null }, 'cli:pause', ms(T + 1000));
  await act('paused-over', reserveCommand('paused-over'), 'cli:reserve', ms(T + 1050));
  expect(await tryAct(h, 'paused-over', claim(), BY_D1, ms(T + 1100))).toBe(false);
  await control({ type: 'Resume' }, 'cli:resume', ms(T + 1200));
  await act('paused-over', claim(), BY_D1, ms(T + 1200, 30));
  await act('paused-over', { type: 'RecordDispatch', jobId: 'job-paused-over' }, BY_D1, ms(T + 1201));
  // Paused without reason until T+2500; paused again after that until passed, before any dispatcher
  // recorded it: a new pause (since T+2600), still in force at QUERY_NOW.
  await control({ type: 'Pause', reason: null, until: T + 2500 }, 'cli:pause', ms(T + 2000));
  await control({ type: 'Pause', reason: 'deploy', until: null }, 'cli:pause', ms(T + 2600));
}

/**
 * Random legal sequences over a few run keys: every transition, in orders no scenario writes by hand;
 * pauses (with and without until), resumes and dispatcher passes among them. A snapshot after each
 * control command and pass, and every 25 steps.
 */
async function writeRandomWalk(h: HostLedger, seed: number, steps: number): Promise<void> {
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const keys = Array.from({ length: 12 }, (_, i) => `walk-${i}`);
  let now = ms(S + 200_000);
  for (let i = 0; i < steps; i++) {
    now += Math.floor(random() * 4000);
    const runKey = pick(keys);
    const seconds = Math.floor(now / 1000);
    if (random() < 0.08) {
      const what = random();
      if (what < 0.4) {
        const until = random() < 0.6 ? seconds + 1 + Math.floor(random() * 30) : null;
        await tryControl(h, { type: 'Pause', reason: pick(['maintenance', null, AWKWARD]), until }, 'cli:pause', now);
      } else if (what < 0.7) {
        await tryControl(h, { type: 'Resume' }, 'cli:resume', now);
      } else {
        await dispatcherPass(h, null, OWNER_D1, now);
      }
      snapshot(h);
      continue;
    }
    const newTimes = () => ({
      ...(random() < 0.6 ? { notBefore: seconds + Math.floor(random() * 8) } : {}),
      ...(random() < 0.5 ? { expiresAt: random() < 0.4 ? null : seconds + 3 + Math.floor(random() * 10) } : {}),
    });
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
      { type: 'Reschedule', ...newTimes() },
      { type: 'Requeue', ...newTimes() },
    ];
    const command = pick(commands);
    if (command.type === 'Claim') {
      // As `run` claims: a pass that first records the end of a pause whose until has passed.
      if (await dispatcherPass(h, runKey, command.owner as typeof OWNER_D1, now)) snapshot(h);
    } else {
      const actor =
        { Reserve: 'cli:reserve', Cancel: 'cli:cancel', Clean: 'cli:clean', Reschedule: 'cli:reschedule', Requeue: 'cli:requeue' }[
          command.type as string
        ] ?? `dispatcher:${D1}`;
      await tryAct(h, runKey, command, actor, now);
    }
    if (i % 25 === 0) snapshot(h);
  }
  snapshot(h);
}

/** A ledger line written by hand: for lines the write path never writes (no event at all, a role's refusal). */
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

/** Every reservation event of a ledger with its stream's state just before it (the fold, `evolve`). */
function statesBefore(rows: readonly EventRow[]): { event: ReservationEvent; before: Reservation | null }[] {
  const states = new Map<string, ReservationState>();
  const out: { event: ReservationEvent; before: Reservation | null }[] = [];
  for (const row of rows) {
    const event = rowToEvent(row);
    if (isControlEvent(event)) continue;
    const before = states.get(event.reservationId) ?? null;
    out.push({ event, before });
    states.set(event.reservationId, evolve(before, event));
  }
  return out;
}

/** Every claim of a ledger, with its reservation's state just before it. */
function claimsWithStateBefore(rows: readonly EventRow[]): { claim: EventOf<'DispatchClaimed'>; before: Reservation }[] {
  return statesBefore(rows).flatMap(({ event, before }) =>
    event.type === 'DispatchClaimed' ? [{ claim: event as EventOf<'DispatchClaimed'>, before: before! }] : [],
  );
}

/**
 * docs/auditing.md's `dispatch-pauses` rows, from the control stream's fold (evolveControl): a pause
 * begins where `since` moves, goes on while it stays, and ends at the next DispatchResumed or a new
 * pause, or at its until when that came first; `now` for the one still going.
 */
function pausesOf(rows: readonly EventRow[], now: number): Record<string, unknown>[] {
  const iso = (s: number | null) => (s === null ? null : new Date(s * 1000).toISOString().replace('T', ' ').replace('.000Z', ''));
  interface Span { since: number; actor: string; reason: string | null; until: number | null; changes: number; endedAt: number | null; endedBy: string | null }
  const spans: Span[] = [];
  let state: DispatchControl = NOT_PAUSED;
  let open: Span | null = null;
  const end = (span: Span, at: number, by: string) => {
    if (span.until !== null && span.until <= at) [span.endedAt, span.endedBy] = [span.until, 'until'];
    else [span.endedAt, span.endedBy] = [at, by];
  };
  for (const row of rows) {
    const event = rowToEvent(row);
    if (!isControlEvent(event)) continue;
    const next = evolveControl(state, event as ControlEvent);
    if (open !== null && (!next.paused || next.since !== open.since)) {
      end(open, event.recordedAt, event.actor);
      open = null;
    }
    if (next.paused && open === null) {
      open = { since: next.since!, actor: next.actor!, reason: next.reason, until: next.until, changes: 0, endedAt: null, endedBy: null };
      spans.push(open);
    } else if (next.paused && open !== null) {
      Object.assign(open, { reason: next.reason, until: next.until, changes: open.changes + 1 });
    }
    state = next;
  }
  if (open !== null && open.until !== null && open.until <= now) end(open, now, '');
  return spans.map((s) => ({
    paused_at: iso(s.since),
    paused_by: s.actor,
    reason: s.reason,
    until: iso(s.until),
    changes: s.changes,
    ended_at: iso(s.endedAt),
    ended_by: s.endedBy,
    paused_s: (s.endedAt ?? now) - s.since,
  }));
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
      // The scenario and the walk both went through every event type of the code base.
      expect([...new Set(rows.map((r) => r.type))].sort(), h.host).toEqual([...EVENT_TYPES].sort());
    }
    expect(pg.rows('SELECT * FROM reservation_events_rejected')).toEqual([]);
    // The walk's pauses ended every way: by resume, and by a dispatcher pass after their until.
    const resumes = rowsOf.get('edge-2')!.filter((r) => r.type === 'DispatchResumed');
    expect(new Set(resumes.map((r) => (r.actor.startsWith('dispatcher:') ? `${r.actor.split(':')[0]}: ${r.data}` : `${r.actor}: ${r.data}`)))).toEqual(
      new Set(['cli:resume: {}', 'dispatcher: {"until_passed":true}']),
    );
  });

  it('fleet_reservations is, host by host, the projection: what `list` prints and the columns beyond it', () => {
    for (const h of hosts) {
      const db = handles.get(h.host)!;
      const projection = db.prepare('SELECT * FROM reservations ORDER BY reservation_id').all() as ReservationRow[];
      expect(projection.length).toBeGreaterThan(5);
      const fleet = fleetReservationsOf(pg, h.host).map(splitFleetReservation);
      expect(fleet.map((f) => f.list)).toEqual(projection.map((row) => reservationJson(rowToReservation(row))));
      expect(fleet.map((f) => f.extras)).toEqual(projectionExtrasOf(db));
    }
  });

  it('fleet_reservations and fleet_dispatch are the projection and the dispatch_control row after every command, shipped a command at a time', () => {
    // One psql session and transaction per host (rolled back: no other test sees it): the lines of each
    // step, then the views of that host as they are.
    for (const h of hosts) {
      const steps = h.steps;
      expect(steps.length, h.host).toBeGreaterThan(20);
      const lines = rowsOf.get(h.host)!.map(eventLine);
      const stepHost = `${h.host}-steps`;
      const columns = [...LIST_KEYS, ...PROJECTION_EXTRAS].join(', ');
      let shipped = 0;
      let script = 'BEGIN;\n';
      for (const step of steps) {
        for (const line of lines.slice(shipped, step.position)) script += `${insertStatement(stepHost, line)};\n`;
        shipped = step.position;
        script +=
          `SELECT jsonb_build_object(` +
          `'dispatch', (SELECT to_jsonb(d) - 'host' FROM fleet_dispatch AS d WHERE d.host = '${stepHost}'), ` +
          `'reservations', (SELECT COALESCE(jsonb_agg(to_jsonb(f) ORDER BY f.reservation_id), '[]') ` +
          `FROM (SELECT ${columns} FROM fleet_reservations WHERE host = '${stepHost}') AS f));\n`;
      }
      script += 'ROLLBACK;\n';
      const out = pg.psql(script).split('\n').filter((l) => l.trim() !== '');
      expect(out).toHaveLength(steps.length);
      const nowMs = Date.now();
      steps.forEach((step, i) => {
        const got = JSON.parse(out[i]!) as { dispatch: Record<string, unknown> | null; reservations: FleetReservation[] };
        const label = `${h.host} after position ${step.position}`;
        const fleet = got.reservations.map(splitFleetReservation);
        expect(fleet.map((f) => f.list), label).toEqual(step.reservations.map((row) => reservationJson(rowToReservation(row))));
        expect(fleet.map((f) => f.extras), label).toEqual(
          step.reservations.map((row) => ({ reservation_id: row.reservation_id, ...Object.fromEntries(PROJECTION_EXTRAS.map((k) => [k, row[k]])) })),
        );
        const control = step.control;
        expect(got.dispatch, label).toEqual({ ...control, in_force: effectivePause(control, nowMs).paused });
      });
    }
    // Both ends of what in_force tells apart were seen: a pause in force, and one outlived but not
    // yet recorded as ended (paused, not in force).
    const all = hosts.flatMap((h) => h.steps.map((s) => s.control));
    expect(all.some((c) => c.paused && c.until === null)).toBe(true);
    expect(all.some((c) => c.paused && c.until !== null && c.until * 1000 <= Date.now())).toBe(true);
    // A pause after an outlived one began anew: since moved on while paused all along.
    expect(hosts[0]!.steps.at(-1)!.control).toEqual({ paused: true, reason: 'deploy', until: null, since: T + 2600, actor: 'cli:pause', version: 7 });
    // The hosts themselves, as they are.
    for (const h of hosts) {
      expect(pg.rows("SELECT paused, reason, until, since, actor, version FROM fleet_dispatch WHERE host = :'host'", { vars: { host: h.host } })).toEqual([
        h.steps.at(-1)!.control,
      ]);
    }
  });

  it('fleet_pending, fleet_failures and fleet_late_starts say what the ledger says', () => {
    for (const h of hosts) {
      const db = handles.get(h.host)!;
      const rows = rowsOf.get(h.host)!;
      const pending = db
        .prepare("SELECT reservation_id, COALESCE(not_before, created_at) AS due_at FROM reservations WHERE reservation_status IN ('RESERVED', 'DISPATCHING') ORDER BY reservation_id")
        .all();
      expect(pg.rows("SELECT reservation_id, due_at FROM fleet_pending WHERE host = :'host' ORDER BY reservation_id", { vars: { host: h.host } })).toEqual(pending);

      const failures = rows
        .filter((r) => ['DispatchFailed', 'DispatchAttemptFailed', 'DispatchRefused'].includes(r.type))
        .map((r) => {
          const data = JSON.parse(r.data) as Record<string, unknown>;
          return { position: r.position, type: r.type, final: r.type !== 'DispatchAttemptFailed', error: data['error'], exit_code: data['exit_code'] ?? null, attempt: data['attempt'] ?? null };
        });
      expect(failures.length).toBeGreaterThan(0);
      expect(pg.rows("SELECT position, type, final, error, exit_code, attempt FROM fleet_failures WHERE host = :'host' ORDER BY position", { vars: { host: h.host } })).toEqual(failures);

      // From the fold: the due time is the state's not_before just before the claim (after a
      // Rescheduled or Requeued, theirs), else the creation.
      const late = claimsWithStateBefore(rows)
        .filter(({ claim: c }) => c.data.late_by_ms > 1000)
        .map(({ claim: c, before }) => ({
          position: c.position,
          late_by_ms: c.data.late_by_ms,
          due_at: before.notBefore ?? before.createdAt,
          late_by_ms_recomputed: c.recordedAtMs - (before.notBefore === null ? before.createdAtMs : before.notBefore * 1000),
        }));
      expect(pg.rows("SELECT position, late_by_ms, due_at, late_by_ms_recomputed FROM fleet_late_starts WHERE host = :'host' ORDER BY position", { vars: { host: h.host } })).toEqual(late);
    }
    expect(pg.rows("SELECT run_key FROM fleet_late_starts WHERE host = 'edge-1' ORDER BY position").map((r) => r['run_key'])).toEqual([
      'fail', 'ok', 'released', 'rerun', 'claimed', 'moved-earlier', 'requeued-failed', 'retry-moved', 'moved-later', 'paused-over',
    ]);
  });

  it("docs/auditing.md's questions agree with the write path on rescheduled, requeued and paused reservations", () => {
    for (const h of hosts) {
      const db = handles.get(h.host)!;
      const rows = rowsOf.get(h.host)!;
      // late-claims: the recomputed lateness is the dispatcher's own unless a retry time was pending
      // at the claim (which the query leaves out, as it says).
      const claims = new Map(claimsWithStateBefore(rows).map((c) => [c.claim.position, c]));
      const lateRows = hostAnswer(db, 'late-claims', { min_late_ms: 0 });
      expect(lateRows.length).toBe(claims.size);
      const byPosition = db.prepare("SELECT position FROM reservation_events WHERE type = 'DispatchClaimed' ORDER BY json_extract(data, '$.late_by_ms') DESC, position").pluck().all() as number[];
      lateRows.forEach((row, i) => {
        const { claim: c, before } = claims.get(byPosition[i]!)!;
        if (before.retryAt === null) expect(row['late_by_ms_recomputed'], `${h.host} claim at ${c.position}`).toBe(row['late_by_ms']);
      });
      // cancellations: the status before is the fold's.
      const cancelled = statesBefore(rows).filter(({ event }) => event.type === 'Cancelled').map(({ before }) => before!.status);
      expect(cancelled.length, h.host).toBeGreaterThan(2);
      expect(hostAnswer(db, 'cancellations').map((r) => r['status_before'])).toEqual(cancelled);
      // rebuild-state: the projection's row, for every live run key.
      for (const row of db.prepare('SELECT * FROM reservations ORDER BY run_key').all() as ReservationRow[]) {
        const [rebuilt] = hostAnswer(db, 'rebuild-state', { run_key: row.run_key });
        const { command_json, ...rest } = rebuilt!;
        const want = Object.fromEntries(Object.keys(rest).map((k) => [k, (row as Record<string, unknown>)[k]]));
        expect({ ...rest, command: JSON.parse(command_json as string) as unknown }, `${h.host} ${row.run_key}`).toEqual({ ...want, command: JSON.parse(row.command_json) as unknown });
      }
      // dispatch-pauses: the pauses of the control stream's fold.
      const now = QUERY_NOW;
      expect(hostAnswer(db, 'dispatch-pauses', { now }), h.host).toEqual(pausesOf(rows, now));
    }
  });

  it('every question of docs/auditing.md has a fleet version in docs/fleet.md that answers it for every host at once', () => {
    expect(Object.keys(FLEET_VERSIONS).sort()).toEqual([...HOST_QUERIES.keys()].sort());
    const byName: Record<string, FleetCase> = {
      'run-key-history': { params: { run_key: 'rerun' } },
      'late-claims': { params: { min_late_ms: 1001 } },
      'dispatch-failures': { params: { from: S, to: S + 400_000 } },
      cancellations: { params: {} },
      'reschedules-and-requeues': { params: {} },
      'dispatch-pauses': { params: { now: QUERY_NOW } },
      // SQLite rounds binary floats, PostgreSQL numerics: a half may round either way.
      'dispatch-latency-per-day': { params: {}, tolerance: { avg_reserve_to_dispatch_s: 0.1, max_reserve_to_dispatch_s: 0.1, avg_due_to_dispatch_ms: 1 } },
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
    // The changed questions were asked of rescheduled and requeued reservations, and of every pause.
    const edge1 = (name: string, params: Record<string, string | number>) =>
      pg.rows(fleetQuery(name), { vars: params }).filter((r) => r['host'] === 'edge-1');
    expect(edge1('fleet-late-claims', byName['late-claims']!.params).map((r) => r['run_key'])).toEqual(
      expect.arrayContaining(['moved-later', 'moved-earlier', 'requeued-failed', 'retry-moved', 'paused-over']),
    );
    expect(edge1('fleet-cancellations', {}).map((r) => [r['run_key'], r['status_before']])).toEqual(
      expect.arrayContaining([['requeued-expired', 'RESERVED'], ['rescheduled-cancelled', 'RESERVED']]),
    );
    expect(edge1('fleet-reschedules-and-requeues', {}).map((r) => [r['run_key'], r['type'], r['from_status']])).toEqual([
      ['rescheduled-cancelled', 'Rescheduled', 'RESERVED'],
      ['moved-later', 'Rescheduled', 'RESERVED'],
      ['retry-moved', 'Rescheduled', 'RESERVED'],
      ['moved-earlier', 'Rescheduled', 'RESERVED'],
      ['retry-moved', 'Rescheduled', 'RESERVED'],
      ['requeued-failed', 'Requeued', 'DISPATCH_FAILED'],
      ['requeued-expired', 'Requeued', 'EXPIRED'],
    ]);
    expect(edge1('fleet-dispatch-pauses', { now: QUERY_NOW }).map((r) => [r['reason'], r['changes'], r['ended_by'], r['paused_s']])).toEqual([
      [`maintenance, extended: ${AWKWARD}`, 1, 'until', 180],
      ['disk full', 0, 'cli:resume', 200],
      [null, 0, 'until', 500],
      ['deploy', 0, null, QUERY_NOW - (T + 2600)],
    ]);
    expect(edge1('fleet-rebuild-state', { run_key: 'retry-moved' })).toEqual([
      expect.objectContaining({ reservation_status: 'DISPATCHED', not_before: T + 290, expires_at: T + 5000, last_error: null }),
    ]);
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
