/**
 * The pure state machine: decide / evolve / fold, given/when/then.
 *
 * Expectations are written out from DESIGN.md ("State machine" and "How each event changes the
 * projection row"), never derived from ALLOWED_FROM, so that a wrong table in src/ fails here.
 */
import { describe, expect, it } from 'vitest';
import {
  decide,
  evolve,
  fold,
  IllegalTransitionError,
  InvalidLedgerError,
  MAX_ERROR_CHARS,
  RejectedCommandError,
  statusOf,
} from '../../src/events/index.js';
import type {
  ControlEventType,
  DispatchGate,
  EventType,
  NewEvent,
  Reservation,
  ReservationCommand,
  ReservationEvent,
  ReservationState,
  ReservationStatus,
} from '../../src/events/index.js';
import { stamp } from '../../src/events/store.js';

// ---------------------------------------------------------------------------------------------
// Fixtures: a clock, ids, and streams built through decide + stamp + evolve.

/** The spec example's `created_at` (2026-05-03T17:40:00Z; the spec's `_iso` beside it is wrong). */
const T0 = 1_777_830_000;
const RID = '01JTESTRESERVATION0000000001';
const RUN_KEY = 'daily-import-2026-05-04';
const OWNER = { dispatcher_id: 'disp-1', host: 'edge-7', pid: 4242 } as const;
const ARGV = ['orchesjob', 'start', '--run-key', RUN_KEY, '--strict', '--', '/jobs/import.sh'] as const;

const reserveCmd = (over: Partial<Extract<ReservationCommand, { type: 'Reserve' }>> = {}): ReservationCommand => ({
  type: 'Reserve',
  runKey: RUN_KEY,
  command: ['/jobs/import.sh', '--date', '2026-05-04'],
  orchesjobStartOptions: ['--strict'],
  metadata: { dag_id: 'daily_import' },
  notBefore: T0 + 60,
  expiresAt: T0 + 3600,
  ...over,
});
const claimCmd: ReservationCommand = { type: 'Claim', owner: OWNER, argv: ARGV };
const dispatchCmd: ReservationCommand = { type: 'RecordDispatch', jobId: 'job-123' };
const failCmd: ReservationCommand = { type: 'RecordFailure', error: 'exit 3: boom', exitCode: 3 };
const expireCmd: ReservationCommand = { type: 'Expire' };
const cancelCmd: ReservationCommand = { type: 'Cancel' };
const cleanCmd: ReservationCommand = { type: 'Clean' };
const releaseCmd: ReservationCommand = { type: 'ReleaseClaim', reason: 'owner gone' };
const REFUSAL = 'refused by policy: command "/jobs/import.sh" is not allowed for this key (key k)';
const refuseCmd: ReservationCommand = { type: 'Refuse', reason: REFUSAL };
const rescheduleCmd = (times: { notBefore?: number; expiresAt?: number | null }): ReservationCommand => ({ type: 'Reschedule', ...times });
const requeueCmd = (times: { notBefore?: number; expiresAt?: number | null } = {}): ReservationCommand => ({ type: 'Requeue', ...times });

/** One step of a history: a command decided at a clock reading (epoch ms). */
type Step = readonly [ReservationCommand, number];

let idCounter = 0;
const newId = () => `EVT${String(++idCounter).padStart(6, '0')}`;

/** Decide, stamp and evolve each step in turn, as the write path does; returns the stream. */
function history(...steps: Step[]): ReservationEvent[] {
  const events: ReservationEvent[] = [];
  let state: ReservationState = null;
  for (const [command, nowMs] of steps) {
    const decided = decide(state, command, nowMs);
    const stamped = stamp(
      decided,
      { reservationId: RID, runKey: RUN_KEY, version: state?.version ?? 0 },
      { nowMs, actor: 'test', newId },
    );
    for (const e of stamped) state = evolve(state, e);
    events.push(...stamped);
  }
  return events;
}

/** Clock readings used by the histories (ms). */
const AT = {
  reserve: T0 * 1000,
  claim: (T0 + 61) * 1000 + 250, // due (not_before = T0+60), not expired (T0+3600)
  dispatch: (T0 + 62) * 1000,
  fail: (T0 + 63) * 1000,
  release: (T0 + 64) * 1000,
  expire: (T0 + 3600) * 1000, // exactly expires_at
  cancel: (T0 + 10) * 1000,
  clean: (T0 + 7200) * 1000,
} as const;

type Status = ReservationStatus | 'NONE' | 'CLEANED';

/** A realistic stream ending in each status. */
const STREAMS: Record<Status, () => ReservationEvent[]> = {
  NONE: () => [],
  RESERVED: () => history([reserveCmd(), AT.reserve]),
  DISPATCHING: () => history([reserveCmd(), AT.reserve], [claimCmd, AT.claim]),
  DISPATCHED: () =>
    history([reserveCmd(), AT.reserve], [claimCmd, AT.claim], [dispatchCmd, AT.dispatch]),
  DISPATCH_FAILED: () => history([reserveCmd(), AT.reserve], [claimCmd, AT.claim], [failCmd, AT.fail]),
  EXPIRED: () => history([reserveCmd(), AT.reserve], [expireCmd, AT.expire]),
  CANCELLED: () => history([reserveCmd(), AT.reserve], [cancelCmd, AT.cancel]),
  CLEANED: () => history([reserveCmd(), AT.reserve], [cancelCmd, AT.cancel], [cleanCmd, AT.clean]),
};
const ALL_STATUSES = Object.keys(STREAMS) as Status[];

type ErrorClass = new (...args: never[]) => Error;

/** given(events).when(command, nowMs[, dispatch]).then(expected event types | error class) */
function given(events: readonly ReservationEvent[]) {
  const state = fold(events);
  return {
    state,
    when(command: ReservationCommand, nowMs: number, dispatch?: DispatchGate) {
      return {
        then(expected: readonly EventType[] | ErrorClass): NewEvent[] {
          if (typeof expected === 'function') {
            expect(() => decide(state, command, nowMs, dispatch)).toThrow(expected);
            return [];
          }
          const out = decide(state, command, nowMs, dispatch);
          expect(out.map((e) => e.type)).toEqual(expected);
          return out;
        },
      };
    },
  };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

/** A command of each type, timed so that only the status can make it illegal. */
const COMMANDS: Record<ReservationCommand['type'], Step> = {
  Reserve: [reserveCmd(), AT.reserve],
  Claim: [claimCmd, AT.claim],
  RecordDispatch: [dispatchCmd, AT.dispatch],
  RecordFailure: [failCmd, AT.fail],
  Refuse: [refuseCmd, AT.claim],
  Expire: [expireCmd, AT.expire + 1000],
  Cancel: [cancelCmd, AT.cancel],
  Clean: [cleanCmd, AT.clean],
  ReleaseClaim: [releaseCmd, AT.release],
  Reschedule: [rescheduleCmd({ notBefore: T0 + 120 }), AT.cancel],
  // A new expires_at: the fixtures' (T0 + 3600) has passed at AT.clean, which a requeue refuses.
  Requeue: [requeueCmd({ notBefore: T0 + 7300, expiresAt: T0 + 10_800 }), AT.clean],
};

/** The event types of a reservation's stream: all but the dispatch control stream's. */
type StreamEventType = Exclude<EventType, ControlEventType>;

/**
 * DESIGN.md's state machine, written out literally: command -> (event, statuses it may come from).
 * NONE is an empty stream; CLEANED a cleaned one (the run key is free again).
 */
const DESIGN_TABLE: Record<ReservationCommand['type'], { event: StreamEventType; from: readonly Status[] }> = {
  Reserve: { event: 'Reserved', from: ['NONE', 'CLEANED'] },
  Claim: { event: 'DispatchClaimed', from: ['RESERVED'] },
  Expire: { event: 'Expired', from: ['RESERVED'] },
  Cancel: { event: 'Cancelled', from: ['RESERVED', 'DISPATCH_FAILED', 'EXPIRED'] },
  RecordDispatch: { event: 'Dispatched', from: ['DISPATCHING'] },
  RecordFailure: { event: 'DispatchFailed', from: ['DISPATCHING'] },
  Refuse: { event: 'DispatchRefused', from: ['RESERVED'] },
  ReleaseClaim: { event: 'ClaimReleased', from: ['DISPATCHING'] },
  Clean: { event: 'Cleaned', from: ['DISPATCHED', 'CANCELLED', 'EXPIRED', 'DISPATCH_FAILED'] },
  Reschedule: { event: 'Rescheduled', from: ['RESERVED'] },
  Requeue: { event: 'Requeued', from: ['DISPATCH_FAILED', 'EXPIRED'] },
};

/** The status each reservation event leads to, from the same table (control events lead to none). */
const DESIGN_TO: Record<StreamEventType, ReservationStatus | 'CLEANED'> = {
  Reserved: 'RESERVED',
  DispatchClaimed: 'DISPATCHING',
  Expired: 'EXPIRED',
  Cancelled: 'CANCELLED',
  Dispatched: 'DISPATCHED',
  DispatchFailed: 'DISPATCH_FAILED',
  ClaimReleased: 'RESERVED',
  Cleaned: 'CLEANED',
  DispatchAttemptFailed: 'RESERVED',
  DispatchRefused: 'DISPATCH_FAILED',
  Rescheduled: 'RESERVED',
  Requeued: 'RESERVED',
};

const statusAfter = (s: ReservationState): Status =>
  s === null ? 'NONE' : s.cleaned ? 'CLEANED' : s.status;

// ---------------------------------------------------------------------------------------------

describe('the fixture streams', () => {
  it.each(ALL_STATUSES)('%s stream folds to that status with versions 1..n', (status) => {
    const events = STREAMS[status]();
    expect(statusAfter(fold(events))).toBe(status);
    expect(events.map((e) => e.version)).toEqual(events.map((_, i) => i + 1));
  });
});

describe('decide: every (status, command) pair against DESIGN.md', () => {
  for (const status of ALL_STATUSES) {
    for (const [name, [command, nowMs]] of Object.entries(COMMANDS) as [ReservationCommand['type'], Step][]) {
      const row = DESIGN_TABLE[name];
      const legal = row.from.includes(status);
      if (name === 'Reserve' && !legal) {
        it(`given ${status}, when Reserve, then [] (idempotent: the live reservation stands)`, () => {
          given(STREAMS[status]()).when(command, nowMs).then([]);
        });
      } else if (legal) {
        it(`given ${status}, when ${name}, then [${row.event}] leading to ${DESIGN_TO[row.event]}`, () => {
          const events = STREAMS[status]();
          const decided = given(events).when(command, nowMs).then([row.event]);
          const state = fold(events);
          const stamped = stamp(
            decided,
            { reservationId: RID, runKey: RUN_KEY, version: status === 'CLEANED' ? 0 : (state?.version ?? 0) },
            { nowMs: AT.clean + 5000, actor: 'test', newId },
          );
          // A Reserved after Cleaned starts a new stream (state null); anything else continues this one.
          const base = name === 'Reserve' ? null : state;
          expect(statusAfter(fold(stamped, base))).toBe(DESIGN_TO[row.event]);
        });
      } else {
        it(`given ${status}, when ${name}, then IllegalTransitionError`, () => {
          given(STREAMS[status]()).when(command, nowMs).then(IllegalTransitionError);
        });
      }
    }
  }

  it('an illegal transition says which command and status', () => {
    const state = fold(STREAMS.DISPATCHED());
    let caught: unknown;
    try {
      decide(state, cancelCmd, AT.cancel);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(IllegalTransitionError);
    expect((caught as IllegalTransitionError).command).toBe('Cancel');
    expect((caught as IllegalTransitionError).from).toBe('DISPATCHED');
    expect((caught as Error).message).toMatchInlineSnapshot(`"cannot Cancel a reservation in status DISPATCHED"`);
  });

  it('a cleaned stream reports status NONE to every command but Reserve', () => {
    expect(() => decide(fold(STREAMS.CLEANED()), cancelCmd, AT.cancel)).toThrowErrorMatchingInlineSnapshot(
      `[IllegalTransitionError: cannot Cancel a reservation in status NONE]`,
    );
  });
});

describe('decide: the data of each event', () => {
  it('Reserve on an empty stream carries the request unchanged', () => {
    const [event] = given([]).when(reserveCmd(), AT.reserve).then(['Reserved']);
    expect(event).toEqual({
      type: 'Reserved',
      data: {
        command: ['/jobs/import.sh', '--date', '2026-05-04'],
        orchesjob_start_options: ['--strict'],
        metadata: { dag_id: 'daily_import' },
        not_before: T0 + 60,
        expires_at: T0 + 3600,
      },
    });
  });

  it('Reserve on a cleaned run key creates a new reservation with the new request', () => {
    const cmd = reserveCmd({ command: ['other'], notBefore: null, expiresAt: null, metadata: null, orchesjobStartOptions: [] });
    const [event] = given(STREAMS.CLEANED()).when(cmd, AT.clean + 5000).then(['Reserved']);
    expect(event?.data).toEqual({
      command: ['other'],
      orchesjob_start_options: [],
      metadata: null,
      not_before: null,
      expires_at: null,
    });
  });

  it.each(['RESERVED', 'DISPATCHING', 'DISPATCHED', 'DISPATCH_FAILED', 'EXPIRED', 'CANCELLED'] as const)(
    'Reserve on a live %s reservation returns [] whatever the new request',
    (status) => {
      const cmd = reserveCmd({ command: ['different'], notBefore: 1, expiresAt: 2 });
      expect(decide(fold(STREAMS[status]()), cmd, AT.clean + 5000)).toEqual([]);
    },
  );

  it('Claim carries the owner, the full argv and how late it is', () => {
    const [event] = given(STREAMS.RESERVED()).when(claimCmd, AT.claim).then(['DispatchClaimed']);
    expect(event).toEqual({
      type: 'DispatchClaimed',
      data: {
        dispatcher_id: 'disp-1',
        host: 'edge-7',
        pid: 4242,
        argv: [...ARGV],
        late_by_ms: 1250, // claimed at not_before + 1.25 s
      },
    });
  });

  it('Claim carries the owner process start when the platform knows it', () => {
    const cmd: ReservationCommand = { type: 'Claim', owner: { ...OWNER, process_start: 'boot-1:12345' }, argv: ARGV };
    const [event] = given(STREAMS.RESERVED()).when(cmd, AT.claim).then(['DispatchClaimed']);
    expect(event?.data).toEqual({ ...OWNER, process_start: 'boot-1:12345', argv: [...ARGV], late_by_ms: 1250 });
  });

  it('Claim exactly at not_before is legal and 0 ms late', () => {
    const [event] = given(STREAMS.RESERVED()).when(claimCmd, (T0 + 60) * 1000).then(['DispatchClaimed']);
    expect(event?.type === 'DispatchClaimed' && event.data.late_by_ms).toBe(0);
  });

  it('Claim 1 ms before not_before throws', () => {
    expect(() => decide(fold(STREAMS.RESERVED()), claimCmd, (T0 + 60) * 1000 - 1)).toThrowErrorMatchingInlineSnapshot(
      `[IllegalTransitionError: reservation is not due until 1777830060]`,
    );
  });

  it('Claim without not_before is due at creation; late_by_ms counts from the creation ms', () => {
    const events = history([reserveCmd({ notBefore: null }), T0 * 1000 + 700]);
    expect(() => decide(fold(events), claimCmd, T0 * 1000 + 699)).toThrow(IllegalTransitionError);
    const [event] = given(events).when(claimCmd, T0 * 1000 + 740).then(['DispatchClaimed']);
    expect(event?.type === 'DispatchClaimed' && event.data.late_by_ms).toBe(40);
  });

  it('Claim at expires_at throws (expired at now >= expires_at)', () => {
    expect(() => decide(fold(STREAMS.RESERVED()), claimCmd, (T0 + 3600) * 1000)).toThrowErrorMatchingInlineSnapshot(
      `[IllegalTransitionError: reservation expired at 1777833600]`,
    );
  });

  it('Claim 1 ms before expires_at is legal', () => {
    given(STREAMS.RESERVED()).when(claimCmd, (T0 + 3600) * 1000 - 1).then(['DispatchClaimed']);
  });

  it('Expire before expires_at throws; at expires_at it records expires_at', () => {
    const events = STREAMS.RESERVED();
    expect(() => decide(fold(events), expireCmd, (T0 + 3600) * 1000 - 1)).toThrowErrorMatchingInlineSnapshot(
      `[IllegalTransitionError: reservation has not reached expires_at]`,
    );
    const [event] = given(events).when(expireCmd, (T0 + 3600) * 1000).then(['Expired']);
    expect(event).toEqual({ type: 'Expired', data: { expires_at: T0 + 3600 } });
  });

  it('Expire of a reservation without expires_at throws', () => {
    const events = history([reserveCmd({ expiresAt: null }), AT.reserve]);
    given(events).when(expireCmd, Number.MAX_SAFE_INTEGER).then(IllegalTransitionError);
  });

  it('RecordDispatch carries the job id, and `recovered` only when set', () => {
    const events = STREAMS.DISPATCHING();
    expect(given(events).when(dispatchCmd, AT.dispatch).then(['Dispatched'])).toEqual([
      { type: 'Dispatched', data: { job_id: 'job-123' } },
    ]);
    expect(
      given(events).when({ type: 'RecordDispatch', jobId: 'job-9', recovered: true }, AT.dispatch).then(['Dispatched']),
    ).toEqual([{ type: 'Dispatched', data: { job_id: 'job-9', recovered: true } }]);
  });

  it('RecordDispatch with an empty job id throws', () => {
    expect(() => decide(fold(STREAMS.DISPATCHING()), { type: 'RecordDispatch', jobId: '' }, AT.dispatch)).toThrowErrorMatchingInlineSnapshot(
      `[IllegalTransitionError: job id is empty]`,
    );
  });

  it('RecordFailure keeps the error and exit code', () => {
    expect(given(STREAMS.DISPATCHING()).when(failCmd, AT.fail).then(['DispatchFailed'])).toEqual([
      { type: 'DispatchFailed', data: { error: 'exit 3: boom', exit_code: 3 } },
    ]);
  });

  it('RecordFailure trims the error to its first 4000 characters', () => {
    expect(MAX_ERROR_CHARS).toBe(4000);
    const long = 'a'.repeat(3999) + 'bc' + 'z'.repeat(1000);
    const [event] = given(STREAMS.DISPATCHING())
      .when({ type: 'RecordFailure', error: long, exitCode: null }, AT.fail)
      .then(['DispatchFailed']);
    expect(event?.data).toEqual({ error: 'a'.repeat(3999) + 'b', exit_code: null });
    const exact = 'e'.repeat(4000);
    const [kept] = decide(fold(STREAMS.DISPATCHING()), { type: 'RecordFailure', error: exact, exitCode: 1 }, AT.fail);
    expect(kept?.type === 'DispatchFailed' && kept.data.error).toBe(exact);
  });

  // BUG (src/events/decide.ts, RecordFailure): `error.slice(0, 4000)` counts UTF-16 code units, so
  // an error whose 4000th character is an astral one (emoji, some CJK) keeps a lone high surrogate:
  // ill-formed text that SQLite's UTF-8 conversion turns into U+FFFD in `last_error`, so the
  // projection row no longer equals the fold of the ledger's JSON. Run keys count code points.
  it('RecordFailure never splits a character (counts code points, as "4000 characters" does)', () => {
    const error = 'x'.repeat(3999) + '\u{1F4A5}'.repeat(10); // 4009 characters
    const [event] = decide(fold(STREAMS.DISPATCHING()), { type: 'RecordFailure', error, exitCode: 1 }, AT.fail);
    const kept = event?.type === 'DispatchFailed' ? event.data.error : '';
    expect(kept).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
    expect([...kept]).toHaveLength(4000);
  });

  it('ReleaseClaim names the previous owner (without the claim time) and the reason', () => {
    expect(given(STREAMS.DISPATCHING()).when(releaseCmd, AT.release).then(['ClaimReleased'])).toEqual([
      { type: 'ClaimReleased', data: { reason: 'owner gone', previous_owner: { ...OWNER } } },
    ]);
  });

  it('Cancel and Clean carry no data', () => {
    expect(given(STREAMS.RESERVED()).when(cancelCmd, AT.cancel).then(['Cancelled'])).toEqual([{ type: 'Cancelled', data: {} }]);
    expect(given(STREAMS.CANCELLED()).when(cleanCmd, AT.clean).then(['Cleaned'])).toEqual([{ type: 'Cleaned', data: {} }]);
  });

  it('a claim can be released and the reservation claimed again', () => {
    const events = history(
      [reserveCmd(), AT.reserve],
      [claimCmd, AT.claim],
      [releaseCmd, AT.release],
    );
    given(events).when(claimCmd, AT.release + 1).then(['DispatchClaimed']);
  });
});

describe('evolve: how each event changes the projection row', () => {
  const reserved: Reservation = {
    reservationId: RID,
    runKey: RUN_KEY,
    status: 'RESERVED',
    jobId: null,
    command: ['/jobs/import.sh', '--date', '2026-05-04'],
    orchesjobStartOptions: ['--strict'],
    metadata: { dag_id: 'daily_import' },
    notBefore: T0 + 60,
    expiresAt: T0 + 3600,
    createdAt: T0,
    createdAtMs: T0 * 1000,
    updatedAt: T0,
    dispatchedAt: null,
    lastError: null,
    maxAttempts: 1,
    retryDelay: 0,
    attempts: 0,
    retryAt: null,
    version: 1,
    claim: null,
    cleaned: false,
  };

  it('Reserved: RESERVED, everything from the request, created_at = updated_at, the rest null', () => {
    const events = history([reserveCmd(), T0 * 1000 + 999]);
    // created_at/updated_at are whole seconds (999 ms dropped); createdAtMs keeps them
    expect(fold(events)).toEqual({ ...reserved, createdAtMs: T0 * 1000 + 999 });
  });

  it('DispatchClaimed: DISPATCHING, updated_at, last_error null, claim set', () => {
    expect(fold(STREAMS.DISPATCHING())).toEqual({
      ...reserved,
      status: 'DISPATCHING',
      updatedAt: T0 + 61,
      lastError: null,
      version: 2,
      claim: { ...OWNER, claimedAtMs: AT.claim },
    });
  });

  it('DispatchClaimed after a release clears the release message', () => {
    const events = history([reserveCmd(), AT.reserve], [claimCmd, AT.claim], [releaseCmd, AT.release], [
      claimCmd,
      AT.release + 500,
    ]);
    const state = fold(events);
    expect(state?.lastError).toBeNull();
    expect(state?.claim).toEqual({ ...OWNER, claimedAtMs: AT.release + 500 });
  });

  it('Dispatched: DISPATCHED, job_id, dispatched_at = updated_at, last_error null, claim cleared', () => {
    expect(fold(STREAMS.DISPATCHED())).toEqual({
      ...reserved,
      status: 'DISPATCHED',
      jobId: 'job-123',
      updatedAt: T0 + 62,
      dispatchedAt: T0 + 62,
      lastError: null,
      version: 3,
      claim: null,
    });
  });

  it('DispatchFailed: DISPATCH_FAILED, updated_at, last_error = the failure, claim cleared', () => {
    expect(fold(STREAMS.DISPATCH_FAILED())).toEqual({
      ...reserved,
      status: 'DISPATCH_FAILED',
      updatedAt: T0 + 63,
      lastError: 'exit 3: boom',
      version: 3,
      attempts: 1,
      claim: null,
    });
  });

  it('DispatchRefused: DISPATCH_FAILED, updated_at, last_error = the refusal; never claimed, attempts unchanged', () => {
    const events = history([reserveCmd(), AT.reserve], [refuseCmd, AT.claim]);
    expect(events[1]).toMatchObject({ type: 'DispatchRefused', data: { error: REFUSAL } });
    expect(fold(events)).toEqual({ ...reserved, status: 'DISPATCH_FAILED', updatedAt: T0 + 61, lastError: REFUSAL, version: 2 });
  });

  it("Expired: EXPIRED, updated_at, last_error 'expired before dispatch'", () => {
    expect(fold(STREAMS.EXPIRED())).toEqual({
      ...reserved,
      status: 'EXPIRED',
      updatedAt: T0 + 3600,
      lastError: 'expired before dispatch',
      version: 2,
    });
  });

  it('Cancelled: CANCELLED, updated_at, last_error null (also after a failure)', () => {
    expect(fold(STREAMS.CANCELLED())).toEqual({ ...reserved, status: 'CANCELLED', updatedAt: T0 + 10, version: 2 });
    const afterFailure = history(
      [reserveCmd(), AT.reserve],
      [claimCmd, AT.claim],
      [failCmd, AT.fail],
      [cancelCmd, AT.fail + 5000],
    );
    expect(fold(afterFailure)).toEqual({
      ...reserved,
      status: 'CANCELLED',
      updatedAt: T0 + 68,
      lastError: null,
      version: 4,
      attempts: 1,
    });
  });

  it("ClaimReleased: RESERVED, updated_at, last_error 'recovered from DISPATCHING', claim cleared", () => {
    const events = history([reserveCmd(), AT.reserve], [claimCmd, AT.claim], [releaseCmd, AT.release]);
    expect(fold(events)).toEqual({
      ...reserved,
      status: 'RESERVED',
      updatedAt: T0 + 64,
      lastError: 'recovered from DISPATCHING',
      version: 3,
      claim: null,
    });
  });

  it('Cleaned: the row is gone (cleaned, status NONE for the state machine), version counts it', () => {
    const state = fold(STREAMS.CLEANED());
    expect(state?.cleaned).toBe(true);
    expect(state?.version).toBe(3);
    expect(statusOf(state)).toBe('NONE');
  });

  it('fold of no events is the initial state (null), and fold equals evolving one event at a time', () => {
    expect(fold([])).toBeNull();
    const events = STREAMS.DISPATCHED();
    let state: ReservationState = null;
    for (const e of events) state = evolve(state, e);
    expect(fold(events)).toEqual(state);
    expect(fold(events.slice(1), fold(events.slice(0, 1)))).toEqual(state);
  });
});

describe('evolve: an event that cannot follow is a corrupt ledger', () => {
  /** A stamped event of each type with plausible data, at version `version`. */
  const EVENT_DATA: { [T in EventType]: Extract<NewEvent, { type: T }>['data'] } = {
    Reserved: { command: ['x'], orchesjob_start_options: [], metadata: null, not_before: null, expires_at: null },
    DispatchClaimed: { ...OWNER, argv: ['orchesjob'], late_by_ms: 0 },
    Dispatched: { job_id: 'j' },
    DispatchFailed: { error: 'e', exit_code: 1 },
    Expired: { expires_at: T0 },
    Cancelled: {},
    Cleaned: {},
    ClaimReleased: { reason: 'r', previous_owner: null },
    DispatchAttemptFailed: { error: 'e', exit_code: 1, attempt: 1, max_attempts: 2, retry_at: T0 },
    DispatchRefused: { error: 'refused by policy: e' },
    Rescheduled: { not_before: T0 + 9000, expires_at: null, previous_not_before: T0 + 60, previous_expires_at: T0 + 3600 },
    Requeued: { not_before: null, expires_at: null, previous_not_before: T0 + 60, previous_expires_at: T0 + 3600, previous_status: 'EXPIRED' },
    DispatchPaused: { reason: 'maintenance', until: null },
    DispatchResumed: {},
  };
  const eventOf = (type: EventType, version: number): ReservationEvent =>
    stamp([{ type, data: EVENT_DATA[type] } as NewEvent], { reservationId: RID, runKey: RUN_KEY, version: version - 1 }, {
      nowMs: AT.clean + 9000,
      actor: 'test',
      newId: () => 'EVTBAD',
    })[0] as ReservationEvent;

  /**
   * DESIGN.md's table again, by event: the statuses each event may follow. The control stream's
   * events follow none: in a reservation's stream they are a corrupt ledger, whatever its status.
   */
  const FOLLOWS: Record<EventType, readonly Status[]> = {
    Reserved: ['NONE'], // a Reserved after Cleaned starts a new stream, never continues the old one
    DispatchClaimed: ['RESERVED'],
    Expired: ['RESERVED'],
    Cancelled: ['RESERVED', 'DISPATCH_FAILED', 'EXPIRED'],
    Dispatched: ['DISPATCHING'],
    DispatchFailed: ['DISPATCHING'],
    ClaimReleased: ['DISPATCHING'],
    Cleaned: ['DISPATCHED', 'CANCELLED', 'EXPIRED', 'DISPATCH_FAILED'],
    DispatchAttemptFailed: ['DISPATCHING'],
    DispatchRefused: ['RESERVED'],
    Rescheduled: ['RESERVED'],
    Requeued: ['DISPATCH_FAILED', 'EXPIRED'],
    DispatchPaused: [],
    DispatchResumed: [],
  };

  for (const status of ALL_STATUSES) {
    for (const type of Object.keys(FOLLOWS) as EventType[]) {
      const to = type === 'DispatchPaused' || type === 'DispatchResumed' ? null : DESIGN_TO[type];
      const ok = to !== null && FOLLOWS[type].includes(status);
      it(`${status} + ${type}: ${ok ? `-> ${to}` : 'InvalidLedgerError'}`, () => {
        const state = fold(STREAMS[status]());
        const event = eventOf(type, (state?.version ?? 0) + 1);
        if (ok) expect(statusAfter(evolve(state, event))).toBe(to);
        else expect(() => evolve(state, event)).toThrow(InvalidLedgerError);
      });
    }
  }

  it('a control event in a reservation stream names itself and the status', () => {
    const state = fold(STREAMS.RESERVED());
    expect(() => evolve(state, eventOf('DispatchPaused', 2))).toThrowErrorMatchingInlineSnapshot(
      `[InvalidLedgerError: ledger event EVTBAD (DispatchPaused, version 2) of reservation 01JTESTRESERVATION0000000001 cannot follow status RESERVED]`,
    );
    expect(() => evolve(null, eventOf('DispatchResumed', 1))).toThrowErrorMatchingInlineSnapshot(
      `[InvalidLedgerError: ledger event EVTBAD (DispatchResumed, version 1) of reservation 01JTESTRESERVATION0000000001 cannot follow status NONE]`,
    );
  });

  it('the error names the event and the status', () => {
    const state = fold(STREAMS.DISPATCHED());
    expect(() => evolve(state, eventOf('DispatchClaimed', 4))).toThrowErrorMatchingInlineSnapshot(
      `[InvalidLedgerError: ledger event EVTBAD (DispatchClaimed, version 4) of reservation 01JTESTRESERVATION0000000001 cannot follow status DISPATCHED]`,
    );
  });
});

describe('stamp', () => {
  it('gives consecutive versions after the stream version, whole-second recorded_at and the ms', () => {
    const ids = ['A', 'B'];
    const out = stamp(
      [
        { type: 'Cancelled', data: {} },
        { type: 'Cleaned', data: {} },
      ],
      { reservationId: RID, runKey: RUN_KEY, version: 4 },
      { nowMs: 1_777_830_000_999, actor: 'cli:cancel', newId: () => ids.shift() as string },
    );
    expect(out).toEqual([
      { type: 'Cancelled', data: {}, eventId: 'A', reservationId: RID, runKey: RUN_KEY, version: 5, recordedAt: 1_777_830_000, recordedAtMs: 1_777_830_000_999, actor: 'cli:cancel' },
      { type: 'Cleaned', data: {}, eventId: 'B', reservationId: RID, runKey: RUN_KEY, version: 6, recordedAt: 1_777_830_000, recordedAtMs: 1_777_830_000_999, actor: 'cli:cancel' },
    ]);
  });
});

describe('purity: decide and evolve do not mutate their inputs', () => {
  for (const status of ALL_STATUSES) {
    it(`decide on ${status} with frozen state and commands`, () => {
      const state = deepFreeze(fold(STREAMS[status]()));
      const before = structuredClone(state);
      for (const [command, nowMs] of Object.values(COMMANDS)) {
        deepFreeze(command);
        try {
          decide(state, command, nowMs);
        } catch (error) {
          // Only the state machine may refuse; a TypeError would mean a write to a frozen input.
          expect(error).toBeInstanceOf(IllegalTransitionError);
        }
      }
      expect(state).toEqual(before);
    });
  }

  it('evolve with a frozen state and frozen events, through a whole stream', () => {
    const events = deepFreeze(
      history(
        [reserveCmd(), AT.reserve],
        [claimCmd, AT.claim],
        [releaseCmd, AT.release],
        [claimCmd, AT.release + 1],
        [failCmd, AT.release + 2],
        [cancelCmd, AT.release + 3],
        [cleanCmd, AT.release + 4],
      ),
    );
    const snapshot = structuredClone(events);
    let state: ReservationState = null;
    for (const event of events) {
      const prev = deepFreeze(state);
      const prevCopy = structuredClone(prev);
      state = evolve(prev, event);
      expect(prev).toEqual(prevCopy);
    }
    expect(events).toEqual(snapshot);
    expect(state?.cleaned).toBe(true);
  });
});

describe('retries (reserve --max-attempts / --retry-delay)', () => {
  const retrying = (max: number, delay: number): ReservationCommand => ({
    type: 'Reserve',
    runKey: RUN_KEY,
    command: ['job'],
    orchesjobStartOptions: [],
    metadata: null,
    notBefore: null,
    expiresAt: null,
    maxAttempts: max,
    retryDelay: delay,
  });
  const fail = (nowMs: number): ReservationCommand => ({ type: 'RecordFailure', error: `boom at ${nowMs}`, exitCode: 7 });
  const claim: ReservationCommand = { type: 'Claim', owner: OWNER, argv: ['orchesjob'] };
  const run = (...steps: [ReservationCommand, number][]) => history(...steps);

  it('a failed start with attempts left goes back to RESERVED, due again after the delay', () => {
    const events = run([retrying(3, 30), T0 * 1000], [claim, T0 * 1000 + 5], [fail(T0 * 1000 + 900), T0 * 1000 + 900]);
    expect(events.map((e) => e.type)).toEqual(['Reserved', 'DispatchClaimed', 'DispatchAttemptFailed']);
    expect(events[2]?.data).toEqual({ error: `boom at ${T0 * 1000 + 900}`, exit_code: 7, attempt: 1, max_attempts: 3, retry_at: T0 + 30 });
    const state = fold(events)!;
    expect(state).toMatchObject({ status: 'RESERVED', attempts: 1, retryAt: T0 + 30, lastError: `boom at ${T0 * 1000 + 900}`, claim: null });
    expect(() => decide(state, claim, (T0 + 29) * 1000 + 999)).toThrow(IllegalTransitionError);
    expect(decide(state, claim, (T0 + 30) * 1000).map((e) => e.type)).toEqual(['DispatchClaimed']);
  });

  it('the last attempt ends in DISPATCH_FAILED; every attempt error stays in the history', () => {
    const ms = T0 * 1000;
    const events = run(
      [retrying(2, 0), ms],
      [claim, ms + 1],
      [fail(ms + 2), ms + 2],
      [claim, ms + 3],
      [fail(ms + 4), ms + 4],
    );
    expect(events.map((e) => e.type)).toEqual(['Reserved', 'DispatchClaimed', 'DispatchAttemptFailed', 'DispatchClaimed', 'DispatchFailed']);
    expect(fold(events)).toMatchObject({ status: 'DISPATCH_FAILED', attempts: 2, lastError: `boom at ${ms + 4}` });
  });

  it('one attempt (the default) fails at once, as the spec says', () => {
    const ms = T0 * 1000;
    const events = run([retrying(1, 60), ms], [claim, ms + 1], [fail(ms + 2), ms + 2]);
    expect(events.map((e) => e.type)).toEqual(['Reserved', 'DispatchClaimed', 'DispatchFailed']);
    expect(events[0]?.data).not.toHaveProperty('max_attempts');
  });

  it('expires_at still wins over a pending retry', () => {
    const ms = T0 * 1000;
    const reserve: ReservationCommand = { ...(retrying(3, 60) as Extract<ReservationCommand, { type: 'Reserve' }>), expiresAt: T0 + 10 };
    const events = run([reserve, ms], [claim, ms + 1], [fail(ms + 2), ms + 2]);
    const state = fold(events)!;
    expect(state.status).toBe('RESERVED');
    expect(decide(state, { type: 'Expire' }, (T0 + 10) * 1000).map((e) => e.type)).toEqual(['Expired']);
    expect(() => decide(state, claim, (T0 + 60) * 1000)).toThrow(IllegalTransitionError);
  });
});

describe('Refuse (run --policy)', () => {
  it('given [Reserved], when Refuse, then [DispatchRefused]: no claim, no retry whatever attempts are left', () => {
    const retrying: ReservationCommand = { ...(reserveCmd() as Extract<ReservationCommand, { type: 'Reserve' }>), maxAttempts: 3, retryDelay: 0 };
    const events = history([retrying, AT.reserve], [claimCmd, AT.claim], [failCmd, AT.fail], [refuseCmd, AT.fail + 1000]);
    expect(events.map((e) => e.type)).toEqual(['Reserved', 'DispatchClaimed', 'DispatchAttemptFailed', 'DispatchRefused']);
    expect(fold(events)).toMatchObject({ status: 'DISPATCH_FAILED', attempts: 1, lastError: REFUSAL, claim: null });
  });

  it('given [Reserved, DispatchClaimed], when Refuse, then IllegalTransitionError: a claimed one is not refused', () => {
    given(STREAMS.DISPATCHING()).when(refuseCmd, AT.claim).then(IllegalTransitionError);
  });

  it('keeps the reason bounded like a failure', () => {
    const [event] = decide(fold(STREAMS.RESERVED()), { type: 'Refuse', reason: 'r'.repeat(MAX_ERROR_CHARS + 10) }, AT.claim);
    expect(event?.type === 'DispatchRefused' && event.data.error.length).toBe(MAX_ERROR_CHARS);
  });
});

// ---------------------------------------------------------------------------------------------
// Operator controls: reschedule, requeue, and claims while dispatching is paused.

/** RESERVED with a pending retry: attempt 1 of 3 failed at T0+63, due again at retry_at T0+123. */
const retryPending = (): ReservationEvent[] =>
  history(
    [{ ...(reserveCmd() as Extract<ReservationCommand, { type: 'Reserve' }>), maxAttempts: 3, retryDelay: 60 }, AT.reserve],
    [claimCmd, AT.claim],
    [failCmd, AT.fail],
  );

/** Stamp what `decide` returned onto the stream `events` and fold it, as the write path does. */
function applied(events: readonly ReservationEvent[], decided: readonly NewEvent[], nowMs: number): ReservationState {
  const state = fold(events);
  return fold(stamp(decided, { reservationId: RID, runKey: RUN_KEY, version: state?.version ?? 0 }, { nowMs, actor: 'test', newId }), state);
}

describe('Reschedule (new times for a RESERVED reservation)', () => {
  const at = (T0 + 30) * 1000;

  it('given [Reserved], when Reschedule --not-before, then [Rescheduled] with the new and previous times; expires_at kept', () => {
    const events = STREAMS.RESERVED();
    const decided = given(events).when(rescheduleCmd({ notBefore: T0 + 900 }), at).then(['Rescheduled']);
    expect(decided).toEqual([
      { type: 'Rescheduled', data: { not_before: T0 + 900, expires_at: T0 + 3600, previous_not_before: T0 + 60, previous_expires_at: T0 + 3600 } },
    ]);
    expect(applied(events, decided, at)).toEqual({ ...fold(events), notBefore: T0 + 900, updatedAt: T0 + 30, version: 2 });
  });

  it('--expires-at alone keeps not_before; --no-expiry (null) removes expires_at; both may change at once', () => {
    const events = STREAMS.RESERVED();
    expect(decide(fold(events), rescheduleCmd({ expiresAt: T0 + 7200 }), at)[0]?.data).toEqual({
      not_before: T0 + 60, expires_at: T0 + 7200, previous_not_before: T0 + 60, previous_expires_at: T0 + 3600,
    });
    const noExpiry = decide(fold(events), rescheduleCmd({ expiresAt: null }), at);
    expect(noExpiry[0]?.data).toEqual({ not_before: T0 + 60, expires_at: null, previous_not_before: T0 + 60, previous_expires_at: T0 + 3600 });
    expect(applied(events, noExpiry, at)).toMatchObject({ status: 'RESERVED', notBefore: T0 + 60, expiresAt: null });
    expect(decide(fold(events), rescheduleCmd({ notBefore: T0 + 5000, expiresAt: T0 + 6000 }), at)[0]?.data).toEqual({
      not_before: T0 + 5000, expires_at: T0 + 6000, previous_not_before: T0 + 60, previous_expires_at: T0 + 3600,
    });
  });

  it('the new times are the ones claims and expiry go by', () => {
    const events = STREAMS.RESERVED();
    const state = applied(events, decide(fold(events), rescheduleCmd({ notBefore: T0 + 900, expiresAt: T0 + 1000 }), at), at);
    expect(() => decide(state, claimCmd, AT.claim)).toThrowErrorMatchingInlineSnapshot(
      `[IllegalTransitionError: reservation is not due until 1777830900]`,
    );
    expect(decide(state, claimCmd, (T0 + 900) * 1000).map((e) => e.type)).toEqual(['DispatchClaimed']);
    expect(decide(state, expireCmd, (T0 + 1000) * 1000)).toEqual([{ type: 'Expired', data: { expires_at: T0 + 1000 } }]);
  });

  it('a new not_before replaces a pending retry: due at the new time, attempts and last_error kept', () => {
    const events = retryPending();
    expect(fold(events)).toMatchObject({ status: 'RESERVED', attempts: 1, retryAt: T0 + 123, lastError: 'exit 3: boom' });
    const decided = given(events).when(rescheduleCmd({ notBefore: T0 + 90 }), (T0 + 70) * 1000).then(['Rescheduled']);
    const state = applied(events, decided, (T0 + 70) * 1000);
    expect(state).toMatchObject({ status: 'RESERVED', notBefore: T0 + 90, retryAt: null, attempts: 1, lastError: 'exit 3: boom' });
    expect(decide(state, claimCmd, (T0 + 90) * 1000).map((e) => e.type)).toEqual(['DispatchClaimed']);
  });

  it('a change of expires_at alone keeps a pending retry', () => {
    const events = retryPending();
    const decided = given(events).when(rescheduleCmd({ expiresAt: T0 + 7200 }), (T0 + 70) * 1000).then(['Rescheduled']);
    const state = applied(events, decided, (T0 + 70) * 1000);
    expect(state).toMatchObject({ notBefore: T0 + 60, expiresAt: T0 + 7200, retryAt: T0 + 123, attempts: 1 });
    expect(() => decide(state, claimCmd, (T0 + 122) * 1000)).toThrow(IllegalTransitionError);
    expect(decide(state, claimCmd, (T0 + 123) * 1000).map((e) => e.type)).toEqual(['DispatchClaimed']);
  });

  it('an expires_at before not_before (given, or kept from before) is a RejectedCommandError', () => {
    const events = STREAMS.RESERVED(); // not_before T0+60, expires_at T0+3600
    given(events).when(rescheduleCmd({ notBefore: T0 + 500, expiresAt: T0 + 499 }), at).then(RejectedCommandError);
    given(events).when(rescheduleCmd({ expiresAt: T0 + 59 }), at).then(RejectedCommandError);
    given(events).when(rescheduleCmd({ notBefore: T0 + 3601 }), at).then(RejectedCommandError);
    let caught: unknown;
    try {
      decide(fold(events), rescheduleCmd({ notBefore: T0 + 3601 }), at);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(RejectedCommandError);
    expect((caught as RejectedCommandError).command).toBe('Reschedule');
    expect((caught as Error).message).toMatchInlineSnapshot(`"expires_at (1777833600) is before not_before (1777833601)"`);
    // Without expires_at, any not_before will do.
    given(events).when(rescheduleCmd({ notBefore: T0 + 99_999, expiresAt: null }), at).then(['Rescheduled']);
  });

  it.each(['DISPATCHING', 'DISPATCHED', 'DISPATCH_FAILED', 'EXPIRED', 'CANCELLED', 'CLEANED', 'NONE'] as const)(
    'given %s, when Reschedule, then IllegalTransitionError, even with times it would refuse',
    (status) => {
      given(STREAMS[status]()).when(rescheduleCmd({ notBefore: T0 + 900 }), AT.clean).then(IllegalTransitionError);
      given(STREAMS[status]()).when(rescheduleCmd({ notBefore: T0 + 900, expiresAt: T0 }), AT.clean).then(IllegalTransitionError);
    },
  );

  it('the refusal names the command and the status', () => {
    expect(() => decide(fold(STREAMS.EXPIRED()), rescheduleCmd({ notBefore: T0 }), AT.clean)).toThrowErrorMatchingInlineSnapshot(
      `[IllegalTransitionError: cannot Reschedule a reservation in status EXPIRED]`,
    );
  });
});

describe('Requeue (DISPATCH_FAILED or EXPIRED back to RESERVED)', () => {
  it('given [Reserved, DispatchClaimed, DispatchFailed], when Requeue, then [Requeued]: RESERVED, attempts 0, last_error, retry_at and job_id null', () => {
    const events = STREAMS.DISPATCH_FAILED();
    const nowMs = (T0 + 100) * 1000;
    const decided = given(events).when(requeueCmd(), nowMs).then(['Requeued']);
    expect(decided).toEqual([
      {
        type: 'Requeued',
        data: { not_before: T0 + 60, expires_at: T0 + 3600, previous_not_before: T0 + 60, previous_expires_at: T0 + 3600, previous_status: 'DISPATCH_FAILED' },
      },
    ]);
    expect(applied(events, decided, nowMs)).toEqual({
      ...fold(events),
      status: 'RESERVED',
      attempts: 0,
      lastError: null,
      retryAt: null,
      jobId: null,
      claim: null,
      updatedAt: T0 + 100,
      version: 4,
    });
  });

  it('a requeued reservation is claimed again, and its attempts count from 0', () => {
    const retrying: ReservationCommand = { ...(reserveCmd() as Extract<ReservationCommand, { type: 'Reserve' }>), maxAttempts: 2, retryDelay: 0 };
    const ms = AT.claim;
    const events = history(
      [retrying, AT.reserve],
      [claimCmd, ms],
      [failCmd, ms + 1],
      [claimCmd, ms + 2],
      [failCmd, ms + 3],
      [requeueCmd(), ms + 4],
      [claimCmd, ms + 5],
      [failCmd, ms + 6],
    );
    expect(events.map((e) => e.type)).toEqual([
      'Reserved', 'DispatchClaimed', 'DispatchAttemptFailed', 'DispatchClaimed', 'DispatchFailed',
      'Requeued', 'DispatchClaimed', 'DispatchAttemptFailed',
    ]);
    expect(events[7]?.data).toMatchObject({ attempt: 1, max_attempts: 2 });
    expect(fold(events)).toMatchObject({ status: 'RESERVED', attempts: 1 });
  });

  it('a refused reservation (DispatchRefused) may be requeued too', () => {
    const events = history([reserveCmd(), AT.reserve], [refuseCmd, AT.claim]);
    const [event] = given(events).when(requeueCmd(), AT.claim + 1000).then(['Requeued']);
    expect(event?.data).toMatchObject({ previous_status: 'DISPATCH_FAILED' });
    expect(applied(events, [event!], AT.claim + 1000)).toMatchObject({ status: 'RESERVED', lastError: null });
  });

  it('an EXPIRED reservation whose expires_at has passed needs a new one: without it, RejectedCommandError', () => {
    const events = STREAMS.EXPIRED(); // expired at T0+3600
    let caught: unknown;
    try {
      decide(fold(events), requeueCmd(), AT.clean);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(RejectedCommandError);
    expect((caught as RejectedCommandError).command).toBe('Requeue');
    expect((caught as Error).message).toMatchInlineSnapshot(
      `"expires_at 1777833600 has passed: the reservation would expire again at once; give a new --expires-at or --no-expiry"`,
    );
    // A new not_before alone keeps the passed expires_at: still refused.
    given(events).when(requeueCmd({ notBefore: T0 + 8000 }), AT.clean).then(RejectedCommandError);
  });

  it('--no-expiry (expiresAt null) requeues an EXPIRED reservation for good', () => {
    const events = STREAMS.EXPIRED();
    const decided = given(events).when(requeueCmd({ expiresAt: null }), AT.clean).then(['Requeued']);
    expect(decided[0]?.data).toEqual({
      not_before: T0 + 60, expires_at: null, previous_not_before: T0 + 60, previous_expires_at: T0 + 3600, previous_status: 'EXPIRED',
    });
    const state = applied(events, decided, AT.clean);
    expect(state).toMatchObject({ status: 'RESERVED', expiresAt: null, lastError: null, attempts: 0, retryAt: null, jobId: null });
    expect(decide(state, claimCmd, AT.clean + 1).map((e) => e.type)).toEqual(['DispatchClaimed']);
  });

  it('a new expires_at must lie after now (at now it is refused, a second later accepted) and not before not_before', () => {
    const events = STREAMS.EXPIRED();
    const now = T0 + 7200;
    given(events).when(requeueCmd({ expiresAt: now }), now * 1000).then(RejectedCommandError);
    given(events).when(requeueCmd({ expiresAt: now + 1 }), now * 1000).then(['Requeued']);
    given(events).when(requeueCmd({ notBefore: now + 600, expiresAt: now + 599 }), now * 1000).then(RejectedCommandError);
    given(events).when(requeueCmd({ notBefore: now + 600, expiresAt: now + 600 }), now * 1000).then(['Requeued']);
  });

  it('a DISPATCH_FAILED reservation whose expires_at passed meanwhile needs a new one as well', () => {
    const events = STREAMS.DISPATCH_FAILED();
    given(events).when(requeueCmd(), (T0 + 3600) * 1000).then(RejectedCommandError);
    given(events).when(requeueCmd(), (T0 + 3600) * 1000 - 1).then(['Requeued']);
  });

  it.each(['NONE', 'RESERVED', 'DISPATCHING', 'DISPATCHED', 'CANCELLED', 'CLEANED'] as const)(
    'given %s, when Requeue, then IllegalTransitionError',
    (status) => {
      given(STREAMS[status]()).when(requeueCmd({ expiresAt: null }), AT.clean).then(IllegalTransitionError);
      given(STREAMS[status]()).when(requeueCmd(), AT.clean).then(IllegalTransitionError);
    },
  );
});

describe('Claim while dispatching is paused', () => {
  const PAUSED: DispatchGate = { paused: true };

  it('given [Reserved] and a pause in force, when Claim, then IllegalTransitionError; nothing else is held', () => {
    const events = STREAMS.RESERVED();
    given(events).when(claimCmd, AT.claim, PAUSED).then(IllegalTransitionError);
    expect(() => decide(fold(events), claimCmd, AT.claim, PAUSED)).toThrowErrorMatchingInlineSnapshot(
      `[IllegalTransitionError: dispatching is paused]`,
    );
    given(events).when(claimCmd, AT.claim, { paused: false }).then(['DispatchClaimed']);
    given(events).when(claimCmd, AT.claim).then(['DispatchClaimed']);
  });

  it('a pause holds claims only: expiry, cancel, reschedule, requeue and the record of a start in flight go on', () => {
    given(STREAMS.RESERVED()).when(expireCmd, AT.expire, PAUSED).then(['Expired']);
    given(STREAMS.RESERVED()).when(cancelCmd, AT.cancel, PAUSED).then(['Cancelled']);
    given(STREAMS.RESERVED()).when(rescheduleCmd({ notBefore: T0 + 900 }), AT.cancel, PAUSED).then(['Rescheduled']);
    given(STREAMS.RESERVED()).when(refuseCmd, AT.claim, PAUSED).then(['DispatchRefused']);
    given(STREAMS.EXPIRED()).when(requeueCmd({ expiresAt: null }), AT.clean, PAUSED).then(['Requeued']);
    given(STREAMS.DISPATCHING()).when(dispatchCmd, AT.dispatch, PAUSED).then(['Dispatched']);
    given(STREAMS.DISPATCHING()).when(failCmd, AT.fail, PAUSED).then(['DispatchFailed']);
    given(STREAMS.DISPATCHING()).when(releaseCmd, AT.release, PAUSED).then(['ClaimReleased']);
  });

  it('a claim the state machine refuses anyway says why it is refused, not that dispatching is paused', () => {
    expect(() => decide(fold(STREAMS.RESERVED()), claimCmd, (T0 + 59) * 1000, PAUSED)).toThrowErrorMatchingInlineSnapshot(
      `[IllegalTransitionError: reservation is not due until 1777830060]`,
    );
    expect(() => decide(fold(STREAMS.CANCELLED()), claimCmd, AT.claim, PAUSED)).toThrowErrorMatchingInlineSnapshot(
      `[IllegalTransitionError: cannot Claim a reservation in status CANCELLED]`,
    );
  });
});
