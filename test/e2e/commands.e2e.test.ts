/**
 * End to end: the built CLI against a real SQLite file, the contract's examples and DESIGN.md's output
 * rules. Reservations in states no command reaches yet (DISPATCHING, DISPATCHED, timed states) are
 * seeded through the ledger's own write path (`execute`), never by writing tables.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ReservationCommand } from '../../src/events/index.js';
import { execute } from '../../src/ledger.js';
import type { RunResult, Sandbox } from '../support/harness.js';
import {
  canonical,
  invocations,
  ledgerRows,
  ROOT,
  runCli,
  runStandin,
  sandbox,
  sleep,
  STANDIN,
  stripAnsi,
  ULID,
  withLedger,
} from '../support/harness.js';

/** The 18 keys of every reservation object (DESIGN.md, "Commands"). */
const RESERVATION_KEYS = [
  'reservation_id',
  'run_key',
  'reservation_status',
  'job_id',
  'command',
  'orchesjob_start_options',
  'metadata',
  'not_before',
  'not_before_iso',
  'expires_at',
  'expires_at_iso',
  'created_at',
  'created_at_iso',
  'updated_at',
  'updated_at_iso',
  'dispatched_at',
  'dispatched_at_iso',
  'last_error',
];

/** A success: exit 0, nothing on stderr, one canonical JSON document on stdout. */
function ok(r: RunResult): any {
  expect({ code: r.code, stderr: r.stderr }, r.stdout).toEqual({ code: 0, stderr: '' });
  expect(r.json).toBeDefined();
  expect(r.stdout).toBe(canonical(r.json));
  return r.json;
}

/** A failure: the exit code, nothing on stdout, `{"error": ...}` as the last stderr line. Returns the message. */
function fails(r: RunResult, code: number): string {
  expect({ code: r.code, stdout: r.stdout }, r.stderr).toEqual({ code, stdout: '' });
  expect(Object.keys(r.lastStderrJson ?? {}), r.stderr).toEqual(['error']);
  expect(typeof r.lastStderrJson.error).toBe('string');
  return r.lastStderrJson.error as string;
}

function expectReservationShape(r: any): void {
  expect(Object.keys(r)).toEqual([...RESERVATION_KEYS].sort());
}

const isoUtc = (s: number) => `${new Date(s * 1000).toISOString().slice(0, 19)}+00:00`;
const nowS = () => Math.floor(Date.now() / 1000);

async function reserveOk(runKey: string, extra: string[] = [], command = ['prog']): Promise<any> {
  const doc = ok(await runCli(['reserve', '--run-key', runKey, ...extra, '--', ...command]));
  expect(doc.created).toBe(true);
  return doc.reservation;
}

const OWNER = { dispatcher_id: 't', host: 'h', pid: 1 };

/** Claim a reservation (RESERVED -> DISPATCHING) through the ledger, as a dispatcher would. */
async function claim(home: Sandbox, runKey: string): Promise<void> {
  await withLedger(home.db, async (ledger) => {
    await execute(
      ledger.db,
      { runKey },
      { type: 'Claim', owner: OWNER, argv: [STANDIN, 'start', '--run-key', runKey, '--', 'prog'] },
      { actor: 'dispatcher:t' },
    );
  });
}

/** Reserve through the ledger (the write path `reserve` uses), at `atMs` (default: now). */
async function seedReserve(home: Sandbox, runKey: string, atMs?: number): Promise<string> {
  return withLedger(home.db, async (ledger) => {
    const { reservation } = await execute(
      ledger.db,
      null,
      { type: 'Reserve', runKey, command: ['prog'], orchesjobStartOptions: [], metadata: null, notBefore: null, expiresAt: null },
      { actor: 'test:seed', ...(atMs === undefined ? {} : { now: () => atMs }) },
    );
    return reservation.reservationId;
  });
}

/**
 * A DISPATCHED reservation: reserve it, start its job with the stand-in (running for `jobSeconds`),
 * then Claim + RecordDispatch through the ledger, as the dispatcher will. `jobId` given: record that
 * id instead (one the stand-in does not know).
 */
async function dispatched(
  home: Sandbox,
  runKey: string,
  opts: { jobSeconds?: number; jobId?: string } = {},
): Promise<{ reservationId: string; jobId: string }> {
  const reservationId = await seedReserve(home, runKey);
  let jobId = opts.jobId;
  if (jobId === undefined) {
    const start = await runStandin(['start', '--run-key', runKey, '--', 'prog'], {
      env: { ORCHESJOB_STANDIN_JOB_SECONDS: String(opts.jobSeconds ?? 600) },
    });
    expect(start.code).toBe(0);
    jobId = start.json.job_id as string;
  }
  await claim(home, runKey);
  const id = jobId;
  await withLedger(home.db, async (ledger) => {
    await execute(ledger.db, { runKey }, { type: 'RecordDispatch', jobId: id }, { actor: 'dispatcher:t' });
  });
  return { reservationId, jobId };
}

type SeedState = 'RESERVED' | 'DISPATCHING' | 'CANCELLED' | 'EXPIRED' | 'DISPATCH_FAILED' | 'DISPATCHED';

/** Seed reservations in the given states through the ledger, each at its own fixed clock (epoch seconds). */
async function seed(home: Sandbox, specs: { key: string; atS: number; state: SeedState }[]): Promise<void> {
  await withLedger(home.db, async (ledger) => {
    for (const { key, atS, state } of specs) {
      const now = () => atS * 1000;
      const ctx = { actor: 'test:seed', now };
      await execute(
        ledger.db,
        null,
        {
          type: 'Reserve',
          runKey: key,
          command: ['prog', key],
          orchesjobStartOptions: [],
          metadata: null,
          notBefore: null,
          expiresAt: state === 'EXPIRED' ? atS : null,
        },
        ctx,
      );
      const steps: ReservationCommand[] = [];
      if (state === 'CANCELLED') steps.push({ type: 'Cancel' });
      if (state === 'EXPIRED') steps.push({ type: 'Expire' });
      if (state === 'DISPATCHING' || state === 'DISPATCH_FAILED' || state === 'DISPATCHED') {
        steps.push({ type: 'Claim', owner: OWNER, argv: ['orchesjob'] });
      }
      if (state === 'DISPATCH_FAILED') steps.push({ type: 'RecordFailure', error: 'boom', exitCode: 7 });
      if (state === 'DISPATCHED') steps.push({ type: 'RecordDispatch', jobId: `job-${key}` });
      for (const step of steps) await execute(ledger.db, { runKey: key }, step, ctx);
    }
  });
}

const T = 1_780_000_000; // 2026-05-28T20:26:40Z

const PKG_VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;

/** `"dispatch"` of `status` and `list` while dispatching is not paused. */
const NOT_PAUSED = { paused: false, reason: null, until: null, until_iso: null, since: null, since_iso: null };

describe('reserve', () => {
  it('prints {"created": true, "reservation": R} with the 18 keys, sorted, 2-space indent (spec example)', async () => {
    const home = sandbox();
    const before = nowS();
    const r = await runCli([
      'reserve',
      '--run-key',
      'daily-import-2026-05-04',
      '--not-before',
      '2026-05-04T03:00:00+09:00',
      '--metadata-json',
      '{"dag_id":"daily_import","task_id":"import"}',
      '--orchesjob-start-option=--strict',
      '--',
      '/jobs/import.sh',
      '--date',
      '2026-05-04',
    ]);
    const after = nowS();
    const doc = ok(r);
    expect(Object.keys(doc)).toEqual(['created', 'reservation']);
    expect(doc.created).toBe(true);
    const res = doc.reservation;
    expectReservationShape(res);
    expect(res).toMatchObject({
      run_key: 'daily-import-2026-05-04',
      reservation_status: 'RESERVED',
      job_id: null,
      command: ['/jobs/import.sh', '--date', '2026-05-04'],
      orchesjob_start_options: ['--strict'],
      metadata: { dag_id: 'daily_import', task_id: 'import' },
      not_before: 1777831200,
      not_before_iso: '2026-05-03T18:00:00+00:00',
      expires_at: null,
      expires_at_iso: null,
      dispatched_at: null,
      dispatched_at_iso: null,
      last_error: null,
    });
    expect(res.reservation_id).toMatch(ULID);
    expect(res.created_at).toBeGreaterThanOrEqual(before);
    expect(res.created_at).toBeLessThanOrEqual(after);
    expect(res.updated_at).toBe(res.created_at);
    expect(res.created_at_iso).toBe(isoUtc(res.created_at));
    expect(res.updated_at_iso).toBe(isoUtc(res.updated_at));

    const { events, reservations } = ledgerRows(home.db);
    expect(events).toHaveLength(1);
    const [event] = events;
    expect(event).toMatchObject({
      reservation_id: res.reservation_id,
      version: 1,
      run_key: 'daily-import-2026-05-04',
      type: 'Reserved',
      actor: 'cli:reserve',
      recorded_at: res.created_at,
    });
    expect(event!.event_id).toMatch(ULID);
    expect(event!.reservation_id).toMatch(ULID);
    expect(Math.floor(event!.recorded_at_ms / 1000)).toBe(event!.recorded_at);
    expect(JSON.parse(event!.data)).toEqual({
      command: ['/jobs/import.sh', '--date', '2026-05-04'],
      orchesjob_start_options: ['--strict'],
      metadata: { dag_id: 'daily_import', task_id: 'import' },
      not_before: 1777831200,
      expires_at: null,
    });
    expect(reservations).toHaveLength(1);
    expect(reservations[0]).toMatchObject({
      reservation_id: res.reservation_id,
      run_key: 'daily-import-2026-05-04',
      reservation_status: 'RESERVED',
      command_json: '["/jobs/import.sh","--date","2026-05-04"]',
      orchesjob_start_options_json: '["--strict"]',
      metadata_json: '{"dag_id":"daily_import","task_id":"import"}',
      not_before: 1777831200,
      expires_at: null,
      job_id: null,
      version: 1,
    });
  });

  it('prints non-ASCII text unescaped (UTF-8) and keeps nested metadata keys sorted', async () => {
    sandbox();
    const r = await runCli([
      'reserve',
      '--run-key',
      '夜間-バックアップ',
      '--metadata-json',
      '{"z":{"b":1,"a":"é"},"a":[{"y":1,"x":2}]}',
      '--',
      'prog',
    ]);
    const doc = ok(r);
    expect(r.stdout).toContain('"run_key": "夜間-バックアップ"');
    expect(r.stdout).toContain('"a": "é"');
    expect(doc.reservation.metadata).toEqual({ a: [{ x: 2, y: 1 }], z: { a: 'é', b: 1 } });
  });

  it('a repeated run key returns the stored reservation unchanged (created: false) and appends nothing', async () => {
    const home = sandbox();
    const first = await reserveOk('k', ['--not-before', '2030-01-01T00:00:00Z', '--metadata-json', '{"a":1}'], ['one']);
    const again = ok(
      await runCli([
        'reserve',
        '--run-key',
        'k',
        '--not-before',
        '2031-01-01T00:00:00Z',
        '--expires-at',
        '2032-01-01T00:00:00Z',
        '--metadata-json',
        '{"b":2}',
        '--orchesjob-start-option',
        '--strict',
        '--',
        'two',
        'args',
      ]),
    );
    expect(again).toEqual({ created: false, reservation: first });
    const { events } = ledgerRows(home.db);
    expect(events.map((e) => e.type)).toEqual(['Reserved']);
  });

  it('flags after -- belong to the command; the default database is used, not the command\'s --db', async () => {
    const home = sandbox();
    const argv = ['reserve', '--run-key', 'k', '--', 'prog', '--run-key', 'x', '--db', 'y'];
    const res = ok(await runCli(argv, { cwd: home.dir }));
    expect(res.reservation.command).toEqual(['prog', '--run-key', 'x', '--db', 'y']);
    expect(res.reservation.run_key).toBe('k');
    expect(existsSync(join(home.dir, 'y'))).toBe(false);
    const { reservations } = ledgerRows(home.db);
    expect(reservations.map((r) => [r.run_key, r.command_json])).toEqual([
      ['k', '["prog","--run-key","x","--db","y"]'],
    ]);
  });

  it('database: $ORCHESJOB_RESERVER_HOME, else $ORCHESJOB_HOME; --db overrides; missing folders are made', async () => {
    const home = sandbox();
    const shared = join(home.dir, 'orchesjob-home');
    const own = join(home.dir, 'reserver-home');
    const explicit = join(home.dir, 'a', 'b', 'explicit.sqlite3');
    await Promise.all([
      runCli(['reserve', '--run-key', 'shared', '--', 'prog'], {
        env: { ORCHESJOB_RESERVER_HOME: undefined, ORCHESJOB_HOME: shared },
      }),
      runCli(['reserve', '--run-key', 'own', '--', 'prog'], {
        env: { ORCHESJOB_RESERVER_HOME: own, ORCHESJOB_HOME: shared },
      }),
      runCli(['reserve', '--run-key', 'explicit', '--db', explicit, '--', 'prog'], { env: { ORCHESJOB_HOME: shared } }),
    ]).then((runs) => runs.forEach(ok));
    const keysIn = (db: string) => ledgerRows(db).reservations.map((r) => r.run_key);
    expect(keysIn(join(shared, 'reserver.sqlite3'))).toEqual(['shared']);
    expect(keysIn(join(own, 'reserver.sqlite3'))).toEqual(['own']);
    expect(keysIn(explicit)).toEqual(['explicit']);
    expect(existsSync(home.db)).toBe(false);
  });

  it('--orchesjob-start-option=--strict and --orchesjob-start-option --strict both store ["--strict"]; it repeats', async () => {
    const home = sandbox();
    const [a, b, c] = await Promise.all([
      runCli(['reserve', '--run-key', 'a', '--orchesjob-start-option=--strict', '--', 'prog']),
      runCli(['reserve', '--run-key', 'b', '--orchesjob-start-option', '--strict', '--', 'prog']),
      runCli([
        'reserve',
        '--run-key',
        'c',
        '--orchesjob-start-option',
        '--strict',
        '--orchesjob-start-option=--sync',
        '--',
        'prog',
      ]),
    ]);
    expect(ok(a).reservation.orchesjob_start_options).toEqual(['--strict']);
    expect(ok(b).reservation.orchesjob_start_options).toEqual(['--strict']);
    expect(ok(c).reservation.orchesjob_start_options).toEqual(['--strict', '--sync']);
    const rows = ledgerRows(home.db).reservations;
    expect(Object.fromEntries(rows.map((r) => [r.run_key, r.orchesjob_start_options_json]))).toEqual({
      a: '["--strict"]',
      b: '["--strict"]',
      c: '["--strict","--sync"]',
    });
  });

  it('accepts the command without -- (first positional starts it)', async () => {
    sandbox();
    const doc = ok(await runCli(['reserve', '--run-key', 'k', 'prog', '--flag', 'v']));
    expect(doc.reservation.command).toEqual(['prog', '--flag', 'v']);
  });

  it('times: epoch seconds, Z, offsets, fractions, a space for T; no offset and bare dates are host local time (TZ)', async () => {
    sandbox();
    const env = { TZ: 'Asia/Tokyo' };
    const cases: [string, number][] = [
      ['1777831200', 1777831200],
      ['2026-05-03T18:00:00Z', 1777831200],
      ['2026-05-03T18:00:00.999Z', 1777831200],
      ['2026-05-04T03:00:00+09:00', 1777831200],
      ['2026-05-03T13:00:00-05:00', 1777831200],
      ['2026-05-04 03:00:00', 1777831200],
      ['2026-05-04T03:00', 1777831200],
      ['2026-05-04', Date.UTC(2026, 4, 3, 15) / 1000],
    ];
    // Two values per call (--not-before, --expires-at): four processes.
    const pairs = [0, 2, 4, 6].map((i) => [cases[i]!, cases[i + 1]!] as const);
    const results = await Promise.all(
      pairs.map(([nb, ea], i) =>
        runCli(['reserve', '--run-key', `t${i}`, '--not-before', nb[0], '--expires-at', ea[0], '--', 'prog'], { env }),
      ),
    );
    const got = results.map((r) => {
      const res = ok(r).reservation;
      return [res.not_before, res.not_before_iso, res.expires_at, res.expires_at_iso];
    });
    expect(got).toEqual(pairs.map(([nb, ea]) => [nb[1], isoUtc(nb[1]), ea[1], isoUtc(ea[1])]));
  });
});

describe('status', () => {
  it('by run key and by reservation id: {"reservation": R}; --include-job before dispatch adds no job', async () => {
    const home = sandbox();
    const res = await reserveOk('k', ['--expires-at', '2099-01-01T00:00:00Z']);
    const [byKey, byId, withJob] = await Promise.all([
      runCli(['status', '--run-key', 'k']),
      runCli(['status', '--reservation-id', res.reservation_id]),
      runCli(['status', '--run-key', 'k', '--include-job']),
    ]);
    expect(ok(byKey)).toEqual({ reservation: res, dispatch: NOT_PAUSED });
    expect(ok(byId)).toEqual({ reservation: res, dispatch: NOT_PAUSED });
    expect(ok(withJob)).toEqual({ reservation: res, dispatch: NOT_PAUSED });
    expectReservationShape(byKey.json.reservation);
    expect(res.expires_at_iso).toBe('2099-01-01T00:00:00+00:00');
    expect(invocations(home)).toEqual([]); // no job id: orchesjob is not asked
  });

  it('--include-job on a DISPATCHED reservation adds orchesjob\'s job object', async () => {
    const home = sandbox();
    const { jobId, reservationId } = await dispatched(home, 'k');
    const doc = ok(await runCli(['status', '--run-key', 'k', '--include-job']));
    expect(Object.keys(doc)).toEqual(['dispatch', 'job', 'reservation']);
    expectReservationShape(doc.reservation);
    expect(doc.reservation).toMatchObject({
      reservation_id: reservationId,
      reservation_status: 'DISPATCHED',
      job_id: jobId,
      last_error: null,
    });
    expect(doc.reservation.dispatched_at).toBe(doc.reservation.updated_at);
    expect(doc.reservation.dispatched_at_iso).toBe(isoUtc(doc.reservation.dispatched_at));
    const direct = await runStandin(['status', '--job-id', jobId]);
    expect(doc.job).toEqual(direct.json);
    expect(doc.job).toMatchObject({ job_id: jobId, run_key: 'k', status: 'RUNNING' });
    expect(invocations(home).at(-2)?.argv).toEqual(['status', '--job-id', jobId]);
  });

  it('--include-job prints {"raw_stdout", "raw_stderr"} when orchesjob prints something that is not JSON', async () => {
    const home = sandbox();
    const { jobId } = await dispatched(home, 'k');
    const fake = join(home.dir, 'fake-orchesjob.sh');
    writeFileSync(fake, '#!/bin/sh\necho "not json: $*"\necho "a warning" >&2\n');
    chmodSync(fake, 0o755);
    const doc = ok(await runCli(['status', '--run-key', 'k', '--include-job', '--orchesjob-bin', fake]));
    expect(doc.job).toEqual({ raw_stdout: `not json: status --job-id ${jobId}\n`, raw_stderr: 'a warning\n' });
  });

  it('--include-job when orchesjob exits non-zero is a general error (exit 1) naming its exit code', async () => {
    const home = sandbox();
    await dispatched(home, 'k', { jobId: 'job-unknown-to-orchesjob' });
    const message = fails(await runCli(['status', '--run-key', 'k', '--include-job']), 1);
    expect(message).toMatchInlineSnapshot(
      `"orchesjob status --job-id job-unknown-to-orchesjob failed with exit code 3: orchesjob: Job not found: job-unknown-to-orchesjob"`,
    );
  });

  it('--orchesjob-bin naming a missing file is a general error (exit 1) saying so', async () => {
    const home = sandbox();
    await dispatched(home, 'k');
    const missing = join(home.dir, 'no-such-orchesjob');
    const [status, result, cancel] = await Promise.all([
      runCli(['status', '--run-key', 'k', '--include-job', '--orchesjob-bin', missing]),
      runCli(['result', '--run-key', 'k', '--orchesjob-bin', missing]),
      runCli(['cancel', '--run-key', 'k', '--orchesjob-bin', missing]),
    ]);
    const messages = [fails(status, 1), fails(result, 1), fails(cancel, 1)].map((m) => m.replaceAll(home.dir, '<HOME>'));
    expect(new Set(messages).size).toBe(1);
    expect(messages[0]).toMatchInlineSnapshot(
      `"orchesjob executable not found: <HOME>/no-such-orchesjob (set --orchesjob-bin or ORCHESJOB_BIN)"`,
    );
    expect(ledgerRows(home.db).reservations[0]?.reservation_status).toBe('DISPATCHED');
  });

  it('a run key or reservation id that does not exist: exit 4', async () => {
    const home = sandbox();
    await seedReserve(home, 'k');
    const [a, b] = await Promise.all([
      runCli(['status', '--run-key', 'nope']),
      runCli(['status', '--reservation-id', '01ARZ3NDEKTSV4RRFFQ69G5FAV']),
    ]);
    expect(fails(a, 4)).toMatchInlineSnapshot(`"Reservation not found."`);
    expect(fails(b, 4)).toBe(fails(a, 4));
  });
});

describe('list', () => {
  it('newest created_at first (not id order), --status filter, --limit, 50 by default', async () => {
    const home = sandbox();
    const base = 1_800_000_000_000;
    // Created in this order with created_at going *down*: id order and created_at order disagree.
    await withLedger(home.db, async (ledger) => {
      for (let i = 0; i < 55; i++) {
        await execute(
          ledger.db,
          null,
          { type: 'Reserve', runKey: `k${i}`, command: ['prog'], orchesjobStartOptions: [], metadata: null, notBefore: null, expiresAt: null },
          { actor: 'test:seed', now: () => base - i * 1000 },
        );
      }
      for (const i of [1, 3, 54]) {
        await execute(ledger.db, { runKey: `k${i}` }, { type: 'Cancel' }, { actor: 'test:seed', now: () => base + 1000 });
      }
    });
    const keys = (doc: any) => doc.reservations.map((r: any) => r.run_key);
    const [all, big, cancelled, reserved, two, oneCancelled, none] = (
      await Promise.all([
        runCli(['list']),
        runCli(['list', '--limit', '1000']),
        runCli(['list', '--status', 'CANCELLED']),
        runCli(['list', '--status', 'RESERVED', '--limit', '3']),
        runCli(['list', '--limit', '2']),
        runCli(['list', '--status', 'CANCELLED', '--limit', '1']),
        runCli(['list', '--status', 'DISPATCHED']),
      ])
    ).map(ok);
    expect(Object.keys(all)).toEqual(['dispatch', 'reservations']);
    expect(all.dispatch).toEqual(NOT_PAUSED);
    expect(keys(all)).toEqual(Array.from({ length: 50 }, (_, i) => `k${i}`));
    all.reservations.forEach(expectReservationShape);
    expect(all.reservations[1]).toMatchObject({ reservation_status: 'CANCELLED', created_at: base / 1000 - 1 });
    expect(keys(big)).toEqual(Array.from({ length: 55 }, (_, i) => `k${i}`));
    expect(keys(cancelled)).toEqual(['k1', 'k3', 'k54']);
    expect(keys(reserved)).toEqual(['k0', 'k2', 'k4']);
    expect(keys(two)).toEqual(['k0', 'k1']);
    expect(keys(oneCancelled)).toEqual(['k1']);
    expect(none).toEqual({ reservations: [], dispatch: NOT_PAUSED });
    expect(ok(await runCli(['status', '--run-key', 'k1'])).reservation).toEqual(all.reservations[1]);
  });

  it('reservations made one after another in the same second: the latest first', async () => {
    // Start both right after a second begins. On a loaded machine the two processes may still straddle
    // a second boundary: then again in a fresh sandbox, a few times at most.
    let a: any;
    let b: any;
    for (let attempt = 1; attempt <= 5; attempt++) {
      sandbox();
      await sleep(1000 - (Date.now() % 1000));
      a = await reserveOk('a');
      b = await reserveOk('b');
      if (a.created_at === b.created_at) break;
    }
    expect(b.created_at, 'both reserved in one second').toBe(a.created_at);
    expect(ok(await runCli(['list'])).reservations).toEqual([b, a]);
  });
});

describe('cancel', () => {
  it('before dispatch: {"cancelled": true, "reservation": R} and a Cancelled event; again: exit 6', async () => {
    const home = sandbox();
    const res = await reserveOk('k');
    const doc = ok(await runCli(['cancel', '--run-key', 'k']));
    expect(Object.keys(doc)).toEqual(['cancelled', 'reservation']);
    expect(doc.cancelled).toBe(true);
    expectReservationShape(doc.reservation);
    expect(doc.reservation).toMatchObject({
      reservation_id: res.reservation_id,
      reservation_status: 'CANCELLED',
      job_id: null,
      last_error: null,
      created_at: res.created_at,
    });
    expect(doc.reservation.updated_at).toBeGreaterThanOrEqual(res.updated_at);
    const { events, reservations } = ledgerRows(home.db);
    expect(events.map((e) => [e.type, e.version, e.actor, e.reservation_id])).toEqual([
      ['Reserved', 1, 'cli:reserve', res.reservation_id],
      ['Cancelled', 2, 'cli:cancel', res.reservation_id],
    ]);
    expect(events[1]!.event_id).toMatch(ULID);
    expect(reservations).toMatchObject([{ reservation_status: 'CANCELLED', version: 2 }]);

    const again = await runCli(['cancel', '--reservation-id', res.reservation_id]);
    expect(fails(again, 6)).toMatchInlineSnapshot(`"Cannot cancel reservation in status CANCELLED without job_id."`);
    expect(ledgerRows(home.db).events).toHaveLength(2);
  });

  it('EXPIRED and DISPATCH_FAILED reservations can be cancelled too', async () => {
    const home = sandbox();
    await seed(home, [
      { key: 'expired', atS: T, state: 'EXPIRED' },
      { key: 'failed', atS: T, state: 'DISPATCH_FAILED' },
    ]);
    const docs = (
      await Promise.all([runCli(['cancel', '--run-key', 'expired']), runCli(['cancel', '--run-key', 'failed'])])
    ).map(ok);
    for (const doc of docs) {
      expect(doc.cancelled).toBe(true);
      expect(doc.reservation).toMatchObject({ reservation_status: 'CANCELLED', last_error: null, job_id: null });
    }
    const cancelled = ledgerRows(home.db).events.filter((e) => e.type === 'Cancelled');
    expect(cancelled.map((e) => [e.run_key, e.actor]).sort()).toEqual([
      ['expired', 'cli:cancel'],
      ['failed', 'cli:cancel'],
    ]);
  });

  it('a DISPATCHING reservation cannot be cancelled: exit 6, nothing appended', async () => {
    const home = sandbox();
    await seedReserve(home, 'k');
    await claim(home, 'k');
    const before = ledgerRows(home.db);
    expect(fails(await runCli(['cancel', '--run-key', 'k']), 6)).toMatchInlineSnapshot(
      `"Cannot cancel reservation in status DISPATCHING without job_id."`,
    );
    expect(ledgerRows(home.db)).toEqual(before);
  });

  it('a DISPATCHED reservation: falls back to `orchesjob abort --job-id`, passes its output through', async () => {
    const home = sandbox();
    const { jobId } = await dispatched(home, 'k');
    const before = ledgerRows(home.db);
    const r = await runCli(['cancel', '--run-key', 'k']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.json).toMatchObject({ job_id: jobId, status: 'ABORTED', aborted: true });
    expect(r.stdout).toBe(`${JSON.stringify(r.json)}\n`); // orchesjob's own compact line, unchanged
    const calls = invocations(home).slice(1).map((i) => i.argv);
    expect(calls).toEqual([
      ['cancel', '--job-id', jobId],
      ['abort', '--job-id', jobId],
    ]);
    expect(ledgerRows(home.db)).toEqual(before); // the reservation stays DISPATCHED
    expect((await runStandin(['status', '--job-id', jobId])).json.status).toBe('ABORTED');
  });

  it('a DISPATCHED reservation with an orchesjob that has `cancel`: calls it only', async () => {
    const home = sandbox();
    const { jobId } = await dispatched(home, 'k');
    const r = await runCli(['cancel', '--run-key', 'k'], { env: { ORCHESJOB_STANDIN_ACCEPT_RESULT_CANCEL: '1' } });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.json).toMatchObject({ job_id: jobId, status: 'ABORTED' });
    expect(invocations(home).slice(1).map((i) => i.argv)).toEqual([['cancel', '--job-id', jobId]]);
  });

  it("a DISPATCHED reservation whose job already finished: orchesjob's exit code and stderr, unchanged", async () => {
    const home = sandbox();
    const { jobId } = await dispatched(home, 'k', { jobSeconds: 0 });
    const r = await runCli(['cancel', '--run-key', 'k']);
    expect(r.code).toBe(4); // orchesjob: invalid state
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`orchesjob: Job is not running: ${jobId} status=SUCCEEDED\n`);
  });
});

describe('result', () => {
  it('falls back to `orchesjob status --job-id` with the real protocol, output unchanged', async () => {
    const home = sandbox();
    const { jobId } = await dispatched(home, 'k', { jobSeconds: 0 });
    const r = await runCli(['result', '--run-key', 'k']);
    const direct = await runStandin(['status', '--job-id', jobId]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toBe(direct.stdout);
    expect(r.json).toMatchObject({ job_id: jobId, status: 'SUCCEEDED', exit_code: 0 });
    expect(invocations(home).slice(1, 3).map((i) => i.argv)).toEqual([
      ['result', '--job-id', jobId],
      ['status', '--job-id', jobId],
    ]);
  });

  it('calls `orchesjob result --job-id` only, when orchesjob has it', async () => {
    const home = sandbox();
    const { jobId, reservationId } = await dispatched(home, 'k', { jobSeconds: 0 });
    const r = await runCli(['result', '--reservation-id', reservationId], {
      env: { ORCHESJOB_STANDIN_ACCEPT_RESULT_CANCEL: '1' },
    });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.json).toEqual({ job_id: jobId, run_key: 'k', status: 'SUCCEEDED', exit_code: 0, stdout: '', stderr: '' });
    expect(invocations(home).slice(1).map((i) => i.argv)).toEqual([['result', '--job-id', jobId]]);
  });

  it("passes orchesjob's failure through unchanged (exit 3, its stderr)", async () => {
    const home = sandbox();
    await dispatched(home, 'k', { jobId: 'job-unknown-to-orchesjob' });
    const r = await runCli(['result', '--run-key', 'k']);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
      code: 3,
      stdout: '',
      stderr: 'orchesjob: Job not found: job-unknown-to-orchesjob\n',
    });
  });

  it('before dispatch: exit 5', async () => {
    const home = sandbox();
    await seedReserve(home, 'k');
    expect(fails(await runCli(['result', '--run-key', 'k']), 5)).toMatchInlineSnapshot(
      `"Reservation has not been dispatched yet; job_id is not available."`,
    );
    expect(invocations(home)).toEqual([]);
  });
});

describe('clean', () => {

  it('--dry-run reports what matches and writes nothing', async () => {
    const home = sandbox();
    await seed(home, [
      { key: 'new', atS: T + 200, state: 'CANCELLED' },
      { key: 'old', atS: T, state: 'EXPIRED' },
      { key: 'live', atS: T + 100, state: 'RESERVED' },
    ]);
    const before = ledgerRows(home.db);
    const doc = ok(await runCli(['clean', '--all', '--dry-run']));
    expect(Object.keys(doc)).toEqual(['deleted', 'dry_run', 'matched', 'reservations']);
    expect(doc).toMatchObject({ deleted: 0, dry_run: true, matched: 2 });
    expect(doc.reservations.map((r: any) => [r.run_key, r.reservation_status, r.updated_at])).toEqual([
      ['old', 'EXPIRED', T],
      ['new', 'CANCELLED', T + 200],
    ]);
    doc.reservations.forEach(expectReservationShape);
    expect(doc.reservations[0].last_error).toBe('expired before dispatch');
    expect(ledgerRows(home.db)).toEqual(before);
  });

  it('--all deletes every terminal reservation, never RESERVED or DISPATCHING; appends Cleaned; keeps history', async () => {
    const home = sandbox();
    await seed(home, [
      { key: 'reserved', atS: T, state: 'RESERVED' },
      { key: 'dispatching', atS: T + 1, state: 'DISPATCHING' },
      { key: 'dispatched', atS: T + 2, state: 'DISPATCHED' },
      { key: 'cancelled', atS: T + 3, state: 'CANCELLED' },
      { key: 'expired', atS: T + 4, state: 'EXPIRED' },
      { key: 'failed', atS: T + 5, state: 'DISPATCH_FAILED' },
    ]);
    const before = ledgerRows(home.db);
    const startedS = nowS();
    const doc = ok(await runCli(['clean', '--all']));
    expect(doc).toMatchObject({ deleted: 4, dry_run: false, matched: 4 });
    expect(doc.reservations.map((r: any) => r.run_key)).toEqual(['dispatched', 'cancelled', 'expired', 'failed']);
    expect(doc.reservations.map((r: any) => r.reservation_status)).toEqual([
      'DISPATCHED',
      'CANCELLED',
      'EXPIRED',
      'DISPATCH_FAILED',
    ]);
    expect(doc.reservations[0].job_id).toBe('job-dispatched');
    expect(doc.reservations[3].last_error).toBe('boom');

    const after = ledgerRows(home.db);
    expect(after.reservations.map((r) => r.run_key).sort()).toEqual(['dispatching', 'reserved']);
    expect(after.events.slice(0, before.events.length)).toEqual(before.events); // history kept
    const cleaned = after.events.slice(before.events.length);
    const versionOf = (id: string) => before.reservations.find((r) => r.reservation_id === id)!.version;
    expect(cleaned.map((e) => [e.type, e.run_key, e.actor, e.version, e.data])).toEqual(
      doc.reservations.map((r: any) => ['Cleaned', r.run_key, 'cli:clean', versionOf(r.reservation_id) + 1, '{}']),
    );
    for (const e of cleaned) {
      expect(e.event_id).toMatch(ULID);
      expect(e.recorded_at).toBeGreaterThanOrEqual(startedS);
    }
  });

  it('--before is updated_at <, --after is updated_at >=, both a range, --run-key restricts', async () => {
    const home = sandbox();
    await seed(home, [
      { key: 'r1', atS: T, state: 'CANCELLED' },
      { key: 'r2', atS: T + 100, state: 'CANCELLED' },
      { key: 'r3', atS: T + 200, state: 'CANCELLED' },
    ]);
    const iso = (s: number) => new Date(s * 1000).toISOString();
    const runs = await Promise.all(
      [
        ['--before', iso(T + 100)],
        ['--after', String(T + 100)],
        ['--after', String(T), '--before', String(T + 200)],
        ['--run-key', 'r3', '--all'],
        ['--run-key', 'r2', '--before', String(T + 150)],
        ['--run-key', 'r1', '--after', String(T + 1)],
      ].map((sel) => runCli(['clean', ...sel, '--dry-run'])),
    );
    expect(runs.map((r) => ok(r).reservations.map((x: any) => x.run_key))).toEqual([
      ['r1'],
      ['r2', 'r3'],
      ['r1', 'r2'],
      ['r3'],
      ['r2'],
      [],
    ]);
    const doc = ok(await runCli(['clean', '--after', String(T + 50), '--before', String(T + 150)]));
    expect(doc).toMatchObject({ deleted: 1, matched: 1, dry_run: false });
    expect(ledgerRows(home.db).reservations.map((r) => r.run_key)).toEqual(['r1', 'r3']);
  });

  it('--job-id and --reservation-id delete one terminal reservation; a live one matches nothing', async () => {
    const home = sandbox();
    await seed(home, [
      { key: 'd', atS: T, state: 'DISPATCHED' },
      { key: 'c', atS: T + 1, state: 'CANCELLED' },
      { key: 'live', atS: T + 2, state: 'RESERVED' },
    ]);
    const ids = Object.fromEntries(ledgerRows(home.db).reservations.map((r) => [r.run_key, r.reservation_id]));
    const [byJob, byId, live, unknown] = (
      await Promise.all([
        runCli(['clean', '--job-id', 'job-d']),
        runCli(['clean', '--reservation-id', ids['c']!]),
        runCli(['clean', '--reservation-id', ids['live']!]),
        runCli(['clean', '--job-id', 'no-such-job']),
      ])
    ).map(ok);
    expect(byJob).toMatchObject({ deleted: 1, matched: 1 });
    expect(byJob.reservations.map((r: any) => r.run_key)).toEqual(['d']);
    expect(byId).toMatchObject({ deleted: 1, matched: 1 });
    expect(byId.reservations.map((r: any) => r.run_key)).toEqual(['c']);
    expect(live).toEqual({ deleted: 0, dry_run: false, matched: 0, reservations: [] });
    expect(unknown).toEqual({ deleted: 0, dry_run: false, matched: 0, reservations: [] });
    const { reservations, events } = ledgerRows(home.db);
    expect(reservations.map((r) => r.run_key)).toEqual(['live']);
    expect(events.filter((e) => e.type === 'Cleaned').map((e) => e.run_key).sort()).toEqual(['c', 'd']);
  });

  it('selection errors: exit 2, nothing written', async () => {
    const home = sandbox();
    await seed(home, [{ key: 'c', atS: T, state: 'CANCELLED' }]);
    const before = ledgerRows(home.db);
    const runs = await Promise.all(
      [
        ['--dry-run'],
        ['--run-key', 'c'],
        ['--job-id', 'j', '--all'],
        ['--job-id', 'j', '--run-key', 'c'],
        ['--reservation-id', 'r', '--before', '2026-01-01'],
        ['--job-id', 'j', '--reservation-id', 'r'],
        ['--after', '2026-02-30'],
      ].map((sel) => runCli(['clean', ...sel])),
    );
    expect(runs.map((r) => fails(r, 2))).toMatchInlineSnapshot(`
      [
        "Specify --all, --job-id, --reservation-id, --before, or --after.",
        "Specify --all, --job-id, --reservation-id, --before, or --after.",
        "--job-id cannot be combined with --all, --before, --after, or --run-key.",
        "--job-id cannot be combined with --all, --before, --after, or --run-key.",
        "--reservation-id cannot be combined with --all, --before, --after, or --run-key.",
        "--job-id and --reservation-id cannot be combined.",
        "Invalid after: "2026-02-30". Expected epoch seconds or ISO 8601 datetime.",
      ]
    `);
    expect(ledgerRows(home.db)).toEqual(before);
  });

  it('a cleaned run key can be reserved again: created:true, a new reservation id, a new stream', async () => {
    const home = sandbox();
    const old = await reserveOk('k', [], ['old']);
    ok(await runCli(['cancel', '--run-key', 'k']));
    ok(await runCli(['clean', '--run-key', 'k', '--all']));
    fails(await runCli(['status', '--run-key', 'k']), 4);
    const again = ok(await runCli(['reserve', '--run-key', 'k', '--', 'new']));
    expect(again.created).toBe(true);
    expect(again.reservation.reservation_id).not.toBe(old.reservation_id);
    expect(again.reservation.command).toEqual(['new']);
    expect(again.reservation.reservation_status).toBe('RESERVED');
    const { events, reservations } = ledgerRows(home.db);
    expect(events.map((e) => [e.type, e.version, e.reservation_id === old.reservation_id])).toEqual([
      ['Reserved', 1, true],
      ['Cancelled', 2, true],
      ['Cleaned', 3, true],
      ['Reserved', 1, false],
    ]);
    expect(reservations).toHaveLength(1);
    expect(reservations[0]!.reservation_id).toBe(again.reservation.reservation_id);
    expect(ok(await runCli(['status', '--run-key', 'k']))).toEqual({ reservation: again.reservation, dispatch: NOT_PAUSED });
  });
});

describe('version and help', () => {
  it('--version prints the package version', async () => {
    sandbox();
    const r = await runCli(['--version']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toBe(`orchesjob-reserver ${PKG_VERSION}\n`);
  });

  it('--help and reserve --help exit 0 and mention the commands and flags; no database is opened', async () => {
    const home = sandbox();
    const [top, reserveHelp] = await Promise.all([runCli(['--help']), runCli(['reserve', '--help'])]);
    for (const r of [top, reserveHelp]) expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    for (const name of ['reserve', 'run', 'status', 'result', 'cancel', 'list', 'clean']) {
      expect(stripAnsi(top.stdout)).toContain(name);
    }
    for (const flag of [
      '--run-key',
      '--not-before',
      '--expires-at',
      '--metadata-json',
      '--orchesjob-start-option',
      '--db',
      '--orchesjob-bin',
    ]) {
      expect(stripAnsi(reserveHelp.stdout)).toContain(flag);
    }
    expect(existsSync(home.db)).toBe(false);
  });
});
