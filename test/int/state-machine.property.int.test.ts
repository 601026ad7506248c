import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { Ledger } from '../../src/db/open.js';
import { openLedger } from '../../src/db/open.js';
import type { ReservationCommand, ReservationStatus } from '../../src/events/index.js';
import { EVENT_TYPES, fold, IllegalTransitionError, RESERVATION_STATUSES } from '../../src/events/index.js';
import { readStream } from '../../src/events/store.js';
import { ReserverError } from '../../src/errors.js';
import { execute } from '../../src/ledger.js';
import { readLedgerMetrics } from '../../src/metrics/ledger.js';
import { anyExpiring, findExpiring, findReady, nextDueAt } from '../../src/projections/reservations.js';

/**
 * Model-based test of the ledger: random sequences of reserve, claim, dispatch, fail, refuse, expire,
 * cancel, clean and release-claim, against a real SQLite file and a tiny model written independently of
 * `decide`. After every step: projection == fold of the events == model; versions 1..n without gaps;
 * at most one live reservation per run key; DISPATCHED has a job id; a refused command appended nothing;
 * and the dispatcher's reads (ready queue, expiring, next wake) say what the model says.
 */

/** How often each command type was applied (not refused), so the test can tell it is not vacuous. */
const APPLIED: Record<string, number> = {};
const NUM_RUNS = Number(process.env['PROPERTY_RUNS'] ?? 1000);
const KEYS = ['a', 'b'] as const;
const T0 = 1_800_000_000; // epoch seconds

interface ModelReservation {
  id: string;
  status: ReservationStatus;
  jobId: string | null;
  notBefore: number | null;
  expiresAt: number | null;
  createdAt: number;
  updatedAt: number;
  dispatchedAt: number | null;
  lastError: string | null;
  maxAttempts: number;
  retryDelay: number;
  attempts: number;
  retryAt: number | null;
}

interface Model {
  now: number;
  live: Map<string, ModelReservation>;
  cleanedStreams: number;
}

interface Real {
  ledger: Ledger;
  now: number;
}

// Thousands of small databases: on a RAM disk where there is one (each commit fsyncs).
const folder = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ojr-property-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));
let dbCounter = 0;

/** What the model says a transition command does, written from DESIGN.md's table, not from decide(). */
function modelAllows(r: ModelReservation | undefined, cmd: string, now: number): boolean {
  if (r === undefined) return false;
  const due = now >= (r.notBefore ?? r.createdAt) && (r.retryAt === null || now >= r.retryAt);
  const expired = r.expiresAt !== null && now >= r.expiresAt;
  switch (cmd) {
    case 'Claim':
      return r.status === 'RESERVED' && due && !expired;
    case 'Expire':
      return r.status === 'RESERVED' && expired;
    case 'Refuse':
      return r.status === 'RESERVED';
    case 'Cancel':
      return r.status === 'RESERVED' || r.status === 'DISPATCH_FAILED' || r.status === 'EXPIRED';
    case 'RecordDispatch':
    case 'RecordFailure':
    case 'ReleaseClaim':
      return r.status === 'DISPATCHING';
    case 'Clean':
      return ['DISPATCHED', 'CANCELLED', 'EXPIRED', 'DISPATCH_FAILED'].includes(r.status);
    default:
      throw new Error(cmd);
  }
}

/** `last_error` after each transition (the Python tool's texts for expiry and recovery). */
const NEXT_ERROR: Record<string, string | null> = {
  Claim: null,
  Expire: 'expired before dispatch',
  Cancel: null,
  RecordDispatch: null,
  RecordFailure: 'boom',
  Refuse: 'refused by policy: test',
  ReleaseClaim: 'recovered from DISPATCHING',
};

const NEXT_STATUS: Record<string, ReservationStatus | 'GONE'> = {
  Claim: 'DISPATCHING',
  Expire: 'EXPIRED',
  Cancel: 'CANCELLED',
  RecordDispatch: 'DISPATCHED',
  RecordFailure: 'DISPATCH_FAILED',
  Refuse: 'DISPATCH_FAILED',
  ReleaseClaim: 'RESERVED',
  Clean: 'GONE',
};

async function eventCount(ledger: Ledger): Promise<number> {
  const row = await ledger.db
    .selectFrom('reservation_events')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** The invariants, checked against the database itself. */
async function checkInvariants(model: Model, real: Real): Promise<void> {
  const { db } = real.ledger;
  const rows = await db.selectFrom('reservations').selectAll().execute();
  const streamIds = (await db.selectFrom('reservation_events').select('reservation_id').distinct().execute()).map(
    (r) => r.reservation_id,
  );
  const rowById = new Map(rows.map((r) => [r.reservation_id, r]));
  let cleaned = 0;
  for (const id of streamIds) {
    const events = await readStream(db, id);
    expect(events.map((e) => e.version)).toEqual(events.map((_, i) => i + 1));
    const folded = fold(events);
    const row = rowById.get(id);
    if (folded === null) throw new Error(`stream ${id} folds to nothing`);
    if (folded.cleaned) {
      cleaned++;
      expect(row).toBeUndefined();
      continue;
    }
    // Column by column, written out here rather than through the projection's own mapper.
    expect(row).toEqual({
      reservation_id: folded.reservationId,
      run_key: folded.runKey,
      command_json: JSON.stringify(folded.command),
      reservation_status: folded.status,
      job_id: folded.jobId,
      not_before: folded.notBefore,
      expires_at: folded.expiresAt,
      metadata_json: folded.metadata === null ? null : JSON.stringify(folded.metadata),
      orchesjob_start_options_json: JSON.stringify(folded.orchesjobStartOptions),
      created_at: folded.createdAt,
      created_at_ms: folded.createdAtMs,
      updated_at: folded.updatedAt,
      dispatched_at: folded.dispatchedAt,
      last_error: folded.lastError,
      version: folded.version,
      claim_dispatcher_id: folded.claim?.dispatcher_id ?? null,
      claim_host: folded.claim?.host ?? null,
      claim_pid: folded.claim?.pid ?? null,
      claimed_at_ms: folded.claim?.claimedAtMs ?? null,
      attempts: folded.attempts,
      max_attempts: folded.maxAttempts,
      retry_delay: folded.retryDelay,
      retry_at: folded.retryAt,
    });
    // The fold itself, against the state machine's rules for each status.
    if (folded.status === 'DISPATCHED') {
      expect(folded.jobId).not.toBeNull();
      expect(folded.dispatchedAt).not.toBeNull();
    }
    expect(folded.claim !== null).toBe(folded.status === 'DISPATCHING');
    if (folded.status === 'EXPIRED') expect(folded.lastError).toBe('expired before dispatch');
  }
  expect(rows.length).toBe(streamIds.length - cleaned);
  expect(new Set(rows.map((r) => r.run_key)).size).toBe(rows.length);
  expect(cleaned).toBe(model.cleanedStreams);
  // projection == model
  const byKey = new Map(rows.map((r) => [r.run_key, r]));
  expect([...byKey.keys()].sort()).toEqual([...model.live.keys()].sort());
  for (const [key, m] of model.live) {
    const row = byKey.get(key)!;
    // Every field the model holds.
    expect({
      id: row.reservation_id,
      status: row.reservation_status,
      jobId: row.job_id,
      notBefore: row.not_before,
      expiresAt: row.expires_at,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      dispatchedAt: row.dispatched_at,
      lastError: row.last_error,
      maxAttempts: row.max_attempts,
      retryDelay: row.retry_delay,
      attempts: row.attempts,
      retryAt: row.retry_at,
    }).toEqual(m);
  }
  await checkDispatcherQueries(model, real);
}

/** What the dispatcher reads (its ready queue, what expires, when to wake) against the model. */
async function checkDispatcherQueries(model: Model, real: Real): Promise<void> {
  const { db } = real.ledger;
  const waiting = [...model.live.values()].filter((m) => m.status === 'RESERVED');
  const dueAt = (m: ModelReservation) => m.notBefore ?? m.createdAt;
  const ready = waiting
    .filter((m) => model.now >= dueAt(m) && (m.retryAt === null || model.now >= m.retryAt))
    .filter((m) => m.expiresAt === null || model.now < m.expiresAt);
  const readRows = await findReady(db, model.now, 100);
  expect(readRows.map((r) => r.reservationId).sort()).toEqual(ready.map((m) => m.id).sort());
  const order = readRows.map((r) => [r.notBefore ?? r.createdAt, r.createdAt] as const);
  for (let i = 1; i < order.length; i++) expect(order[i]! >= order[i - 1]!).toBe(true);
  const expiring = waiting.filter((m) => m.expiresAt !== null && m.expiresAt <= model.now).map((m) => m.id);
  expect((await findExpiring(db, model.now)).map((r) => r.reservationId).sort()).toEqual(expiring.sort());
  expect(await anyExpiring(db, model.now)).toBe(expiring.length > 0);
  const wakes = waiting.flatMap((m) => [Math.max(dueAt(m), m.retryAt ?? 0), ...(m.expiresAt === null ? [] : [m.expiresAt])]);
  expect(await nextDueAt(db)).toBe(wakes.length === 0 ? null : Math.min(...wakes));
  await checkMetrics(model, real, waiting);
}

/** The metrics' counts (kept by triggers) against the tables and the model; due and oldest due against the model. */
async function checkMetrics(model: Model, real: Real, waiting: ModelReservation[]): Promise<void> {
  const metrics = await readLedgerMetrics(real.ledger.db, model.now * 1000 + 999);
  const statuses = Object.fromEntries(RESERVATION_STATUSES.map((s) => [s, [...model.live.values()].filter((m) => m.status === s).length]));
  expect(Object.fromEntries(metrics.reservations)).toEqual(statuses);
  const byType = real.ledger.raw.prepare('SELECT type, count(*) AS n FROM reservation_events GROUP BY type').all() as { type: string; n: number }[];
  expect(Object.fromEntries(metrics.events)).toEqual({ ...Object.fromEntries(EVENT_TYPES.map((t) => [t, 0])), ...Object.fromEntries(byType.map((r) => [r.type, r.n])) });
  const dueSince = waiting.map((m) => Math.max(m.notBefore ?? m.createdAt, m.retryAt ?? 0)).filter((at) => at <= model.now);
  expect(metrics.due).toBe(dueSince.length);
  expect(metrics.oldestDueAgeSeconds).toBeCloseTo(dueSince.length === 0 ? 0 : model.now + 0.999 - Math.min(...dueSince), 6);
}

class ReserveCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly key: string,
    readonly notBeforeIn: number | null,
    readonly expiresIn: number | null,
    readonly maxAttempts: number,
    readonly retryDelay: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const notBefore = this.notBeforeIn === null ? null : model.now + this.notBeforeIn;
    const expiresAt = this.expiresIn === null ? null : model.now + this.expiresIn;
    const before = await eventCount(real.ledger);
    const result = await execute(
      real.ledger.db,
      null,
      {
        type: 'Reserve',
        runKey: this.key,
        command: ['job', this.key],
        orchesjobStartOptions: [],
        metadata: null,
        notBefore,
        expiresAt,
        maxAttempts: this.maxAttempts,
        retryDelay: this.retryDelay,
      },
      { actor: 'test', now: () => real.now * 1000 },
    );
    const existing = model.live.get(this.key);
    if (existing !== undefined) {
      expect(result.events).toEqual([]);
      expect(result.reservation.reservationId).toBe(existing.id);
      expect(await eventCount(real.ledger)).toBe(before);
    } else {
      expect(result.events.map((e) => e.type)).toEqual(['Reserved']);
      model.live.set(this.key, {
        id: result.reservation.reservationId,
        status: 'RESERVED',
        jobId: null,
        notBefore,
        expiresAt,
        createdAt: model.now,
        updatedAt: model.now,
        dispatchedAt: null,
        lastError: null,
        maxAttempts: this.maxAttempts,
        // A single attempt has no retry, so no delay between attempts is kept.
        retryDelay: this.maxAttempts > 1 ? this.retryDelay : 0,
        attempts: 0,
        retryAt: null,
      });
      expect(await eventCount(real.ledger)).toBe(before + 1);
    }
    await checkInvariants(model, real);
  }
  toString = () =>
    `reserve(${this.key}, nb=${this.notBeforeIn}, exp=${this.expiresIn}, attempts=${this.maxAttempts}, delay=${this.retryDelay})`;
}

class TransitionCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly key: string,
    readonly type: Exclude<ReservationCommand['type'], 'Reserve'>,
    readonly jobId: string,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const nowMs = model.now * 1000;
    const command = this.command();
    const before = await eventCount(real.ledger);
    const m = model.live.get(this.key);
    const allowed = modelAllows(m, this.type, model.now);
    let outcome: 'ok' | 'illegal' | 'not-found';
    try {
      await execute(real.ledger.db, { runKey: this.key }, command, { actor: 'test', now: () => nowMs });
      outcome = 'ok';
    } catch (error) {
      if (error instanceof IllegalTransitionError) outcome = 'illegal';
      else if (error instanceof ReserverError && error.code === 'NOT_FOUND') outcome = 'not-found';
      else throw error;
    }
    expect(outcome).toBe(allowed ? 'ok' : m === undefined ? 'not-found' : 'illegal');
    if (outcome === 'ok') APPLIED[this.type] = (APPLIED[this.type] ?? 0) + 1;
    if (allowed && m !== undefined) {
      const next = NEXT_STATUS[this.type]!;
      m.updatedAt = model.now;
      if (next !== 'GONE') m.lastError = NEXT_ERROR[this.type]!;
      if (next === 'GONE') {
        model.live.delete(this.key);
        model.cleanedStreams++;
      } else if (this.type === 'RecordFailure' && m.attempts + 1 < m.maxAttempts) {
        // Attempts left: back to RESERVED, due again after the delay.
        m.attempts++;
        m.status = 'RESERVED';
        m.retryAt = model.now + m.retryDelay;
        APPLIED['retry'] = (APPLIED['retry'] ?? 0) + 1;
      } else {
        m.status = next;
        if (this.type === 'RecordFailure') m.attempts++;
        if (this.type === 'RecordDispatch') {
          m.jobId = this.jobId;
          m.dispatchedAt = model.now;
        }
      }
      expect(await eventCount(real.ledger)).toBe(before + 1);
    } else {
      expect(await eventCount(real.ledger)).toBe(before);
    }
    await checkInvariants(model, real);
  }
  private command(): ReservationCommand {
    switch (this.type) {
      case 'Claim':
        return { type: 'Claim', owner: { dispatcher_id: 'd1', host: 'h', pid: 1 }, argv: ['orchesjob'] };
      case 'RecordDispatch':
        return { type: 'RecordDispatch', jobId: this.jobId };
      case 'RecordFailure':
        return { type: 'RecordFailure', error: 'boom', exitCode: 7 };
      case 'Refuse':
        return { type: 'Refuse', reason: 'refused by policy: test' };
      case 'Expire':
        return { type: 'Expire' };
      case 'Cancel':
        return { type: 'Cancel' };
      case 'Clean':
        return { type: 'Clean' };
      case 'ReleaseClaim':
        return { type: 'ReleaseClaim', reason: 'test' };
    }
  }
  toString = () => `${this.type}(${this.key})`;
}

class TickCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly seconds: number) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    model.now += this.seconds;
    real.now += this.seconds;
  }
  toString = () => `tick(${this.seconds})`;
}

/** Mostly one key, so that chains of transitions go deep; sometimes another, so that keys interleave. */
const key = fc.oneof({ arbitrary: fc.constant(KEYS[0]), weight: 4 }, { arbitrary: fc.constant(KEYS[1]), weight: 1 });
/** Weighted so that random sequences reach deep states (a dispatch needs reserve, then claim). */
const transitionType = fc.oneof(
  { arbitrary: fc.constant('Claim' as const), weight: 4 },
  { arbitrary: fc.constant('RecordDispatch' as const), weight: 3 },
  { arbitrary: fc.constant('RecordFailure' as const), weight: 2 },
  { arbitrary: fc.constant('Expire' as const), weight: 2 },
  { arbitrary: fc.constant('Cancel' as const), weight: 2 },
  { arbitrary: fc.constant('Clean' as const), weight: 2 },
  { arbitrary: fc.constant('ReleaseClaim' as const), weight: 2 },
  { arbitrary: fc.constant('Refuse' as const), weight: 1 },
);
const allCommands = [
  fc
    .tuple(key, fc.option(fc.integer({ min: -2, max: 3 }), { nil: null }), fc.option(fc.integer({ min: 0, max: 4 }), { nil: null }))
    .chain(([k, nb, exp]) =>
      fc
        .tuple(fc.oneof({ arbitrary: fc.constant(1), weight: 2 }, { arbitrary: fc.integer({ min: 2, max: 3 }), weight: 2 }), fc.integer({ min: 0, max: 2 }))
        .map(([max, delay]) => new ReserveCmd(k, nb, exp, max, delay)),
    ),
  fc.tuple(key, transitionType, fc.uuid()).map(([k, t, job]) => new TransitionCmd(k, t, job)),
  fc.tuple(key, transitionType, fc.uuid()).map(([k, t, job]) => new TransitionCmd(k, t, job)),
  fc.integer({ min: 1, max: 3 }).map((s) => new TickCmd(s)),
];

describe('ledger state machine (model-based)', () => {
  it(`keeps projection, ledger and model in step over ${NUM_RUNS} random sequences, exercising every transition`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(allCommands, { maxCommands: 30, size: 'max' }), async (cmds) => {
        const ledger = await openLedger(join(folder, `p${dbCounter++}.sqlite3`));
        try {
          await fc.asyncModelRun(
            () => ({ model: { now: T0, live: new Map(), cleanedStreams: 0 }, real: { ledger, now: T0 } }),
            cmds,
          );
        } finally {
          await ledger.close();
        }
      }),
      { numRuns: NUM_RUNS },
    );
    console.info('applied transitions:', JSON.stringify(APPLIED));
    // A generator that stopped reaching deep states would make the property above vacuous. Counted in
    // the same test, so that it holds however the test is selected.
    for (const type of ['Claim', 'RecordDispatch', 'RecordFailure', 'Expire', 'Cancel', 'Clean', 'ReleaseClaim', 'Refuse', 'retry']) {
      expect(APPLIED[type] ?? 0, type).toBeGreaterThanOrEqual(Math.ceil(NUM_RUNS / 100));
    }
  }, 600_000);
});
