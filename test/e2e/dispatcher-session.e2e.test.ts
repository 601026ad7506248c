/**
 * Dispatcher end to end: the JSON Lines of a whole session (DESIGN.md, "Dispatcher": names and fields
 * per event), restart without re-printing history, and events written by other processes.
 * The built CLI runs as real processes against a real SQLite file; orchesjob is the stand-in.
 */
import { describe, expect, it } from 'vitest';
import type { Line } from '../support/harness.js';
import {
  cliOk,
  executions,
  expectWellFormed,
  ledgerEvents,
  reserve,
  runCli,
  sandbox,
  STANDIN,
  startDispatcher,
  startInvocations,
  status,
  writeFaults,
} from '../support/harness.js';

/** DESIGN.md's table: the fields each line must carry (beside `event`, `ts`, `ts_epoch`). */
const FIELDS: Record<string, readonly string[]> = {
  reserver_started: ['db', 'orchesjob_bin', 'orchesjob_start_options', 'poll_interval', 'run_started_at'],
  reservation_accepted: [
    'reservation_id',
    'run_key',
    'reservation_status',
    'command',
    'orchesjob_start_options',
    'not_before',
    'expires_at',
    'created_at',
  ],
  orchesjob_start_call: ['reservation_id', 'run_key', 'command'],
  dispatch_succeeded: ['reservation_id', 'run_key', 'job_id'],
  dispatch_failed: ['reservation_id', 'run_key', 'error'],
  reservation_expired: [
    'reservation_id',
    'run_key',
    'reservation_status',
    'command',
    'not_before',
    'expires_at',
    'created_at',
    'updated_at',
    'last_error',
  ],
  reservation_cancelled: ['reservation_id', 'run_key'],
  reservation_cleaned: ['reservation_id', 'run_key'],
  recovered_dispatching: ['count'],
  reserver_stopped: [],
};

const LEDGER_EVENTS = new Set([
  'reservation_accepted',
  'orchesjob_start_call',
  'dispatch_succeeded',
  'dispatch_failed',
  'reservation_expired',
  'reservation_cancelled',
  'reservation_cleaned',
]);

function expectFields(line: Line): void {
  const required = FIELDS[line.event];
  expect(required, `unexpected event ${line.event}`).toBeDefined();
  expect(Object.keys(line), JSON.stringify(line)).toEqual(
    expect.arrayContaining(['event', 'ts', 'ts_epoch', ...(required ?? [])]),
  );
  if (LEDGER_EVENTS.has(line.event)) {
    expect(Object.keys(line), JSON.stringify(line)).toEqual(expect.arrayContaining(['position', 'event_id']));
  }
}

describe('dispatcher session', () => {
  it('prints reserve -> dispatch -> fail -> expire as JSON Lines with the contract fields, then status agrees', async () => {
    const sb = sandbox();
    writeFaults(sb, { 'sess-fail': { mode: 'exit', code: 7, stderr: 'boom: disk /data is full' } });
    const beforeStart = Math.floor(Date.now() / 1000);
    // A zone with an offset, so that `ts` must carry one (+09:00) and still match ts_epoch.
    const d = await startDispatcher(sb, [], { env: { TZ: 'Asia/Tokyo' } });
    const afterStart = Math.ceil(Date.now() / 1000);

    const ok = await reserve(sb, 'sess-ok', ['echo', 'hello world']);
    const succeeded = await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'sess-ok');
    const fail = await reserve(sb, 'sess-fail', ['false', '--flag']);
    const failed = await d.waitForLine((l) => l.event === 'dispatch_failed' && l.run_key === 'sess-fail');
    const now = Math.floor(Date.now() / 1000);
    const expiresAt = now + 1;
    const notBefore = now + 60;
    const exp = await reserve(sb, 'sess-expire', ['echo', 'never'], [
      '--not-before',
      String(notBefore),
      '--expires-at',
      String(expiresAt),
    ]);
    const expired = await d.waitForLine((l) => l.event === 'reservation_expired', 4000);

    const stopped = await d.stop();
    expect(stopped).toEqual({ code: 0, signal: null });
    expect(d.stderr).toBe('');
    expectWellFormed(d);
    for (const line of d.lines) {
      expectFields(line);
      expect(line.ts).toMatch(/\+09:00$/);
    }

    expect(d.lines.map((l) => [l.event, l.run_key ?? null])).toEqual([
      ['reserver_started', null],
      ['reservation_accepted', 'sess-ok'],
      ['orchesjob_start_call', 'sess-ok'],
      ['dispatch_succeeded', 'sess-ok'],
      ['reservation_accepted', 'sess-fail'],
      ['orchesjob_start_call', 'sess-fail'],
      ['dispatch_failed', 'sess-fail'],
      ['reservation_accepted', 'sess-expire'],
      ['reservation_expired', 'sess-expire'],
      ['reserver_stopped', null],
    ]);
    const [started, acceptedOk, callOk, , acceptedFail, callFail, , acceptedExp] = d.lines as Line[];

    expect(started).toMatchObject({
      event: 'reserver_started',
      db: sb.db,
      orchesjob_bin: STANDIN,
      orchesjob_start_options: [],
      poll_interval: 2,
      spawner: 'posix_spawn', // the addon the build compiled (src/orchesjob/spawn.ts)
    });
    expect(started?.run_started_at).toBeGreaterThanOrEqual(beforeStart);
    expect(started?.run_started_at).toBeLessThanOrEqual(afterStart);

    expect(acceptedOk).toMatchObject({
      reservation_id: ok.reservation.reservation_id,
      run_key: 'sess-ok',
      reservation_status: 'RESERVED',
      command: ['echo', 'hello world'],
      orchesjob_start_options: [],
      not_before: null,
      expires_at: null,
      created_at: ok.reservation.created_at,
    });
    expect(callOk).toMatchObject({
      reservation_id: ok.reservation.reservation_id,
      run_key: 'sess-ok',
      command: [STANDIN, 'start', '--run-key', 'sess-ok', '--', 'echo', 'hello world'],
    });
    expect(succeeded.reservation_id).toBe(ok.reservation.reservation_id);
    expect(succeeded.job_id).toEqual(expect.any(String));

    expect(acceptedFail?.reservation_id).toBe(fail.reservation.reservation_id);
    expect(callFail?.command).toEqual([STANDIN, 'start', '--run-key', 'sess-fail', '--', 'false', '--flag']);
    expect(failed.reservation_id).toBe(fail.reservation.reservation_id);
    expect(failed.error).toContain('boom: disk /data is full');
    expect(failed.error).toContain('exit_code=7');

    expect(acceptedExp).toMatchObject({ not_before: notBefore, expires_at: expiresAt });
    expect(expired).toMatchObject({
      reservation_id: exp.reservation.reservation_id,
      run_key: 'sess-expire',
      reservation_status: 'EXPIRED',
      command: ['echo', 'never'],
      not_before: notBefore,
      expires_at: expiresAt,
      created_at: exp.reservation.created_at,
      last_error: 'expired before dispatch',
    });
    expect(expired.updated_at).toBeGreaterThanOrEqual(expiresAt);

    // Every ledger event appended while it ran was printed exactly once, as itself.
    const ledger = ledgerEvents(sb.db);
    const printed = d.lines.filter((l) => l.position !== undefined);
    expect(printed.map((l) => [l.position, l.event_id])).toEqual(ledger.map((e) => [e.position, e.event_id]));

    // The stand-in: one start for sess-ok and sess-fail, none for the expired one.
    expect(startInvocations(sb, 'sess-ok')).toHaveLength(1);
    expect(startInvocations(sb, 'sess-fail')).toHaveLength(1);
    expect(startInvocations(sb, 'sess-expire')).toHaveLength(0);
    const okExecutions = executions(sb).filter((e) => e.run_key === 'sess-ok');
    expect(okExecutions).toHaveLength(1);
    expect(executions(sb)).toHaveLength(1);

    const okStatus = await status(sb, 'sess-ok');
    expect(okStatus).toMatchObject({ reservation_status: 'DISPATCHED', job_id: okExecutions[0]?.job_id, last_error: null });
    expect(succeeded.job_id).toBe(okExecutions[0]?.job_id);
    const failStatus = await status(sb, 'sess-fail');
    expect(failStatus).toMatchObject({ reservation_status: 'DISPATCH_FAILED', job_id: null });
    expect(failStatus.last_error).toContain('boom: disk /data is full');
    expect(failStatus.last_error).toContain('exit_code=7');
    const expStatus = await status(sb, 'sess-expire');
    expect(expStatus).toMatchObject({ reservation_status: 'EXPIRED', last_error: 'expired before dispatch' });
  });

  it('starts orchesjob with Node\'s spawn when ORCHESJOB_RESERVER_SPAWNER=child_process, and refuses another value', async () => {
    const sb = sandbox();
    const d = await startDispatcher(sb, [], { env: { ORCHESJOB_RESERVER_SPAWNER: 'child_process' } });
    expect(d.lines[0]).toMatchObject({ event: 'reserver_started', spawner: 'child_process' });
    await reserve(sb, 'spawned-by-node', ['echo', 'hi']);
    const succeeded = await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'spawned-by-node');
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    expect(succeeded.job_id).toBe(executions(sb).find((e) => e.run_key === 'spawned-by-node')?.job_id);

    const refused = await runCli(['run', '--db', sb.db, '--orchesjob-bin', STANDIN], { home: sb, env: { ORCHESJOB_RESERVER_SPAWNER: 'fork' } });
    expect({ code: refused.code, stdout: refused.stdout, stderr: refused.stderr }).toEqual({
      code: 1,
      stdout: '',
      stderr: '{"error": "ORCHESJOB_RESERVER_SPAWNER must be posix_spawn or child_process, not \\"fork\\""}\n',
    });
  });

  it('does not print history again after a restart; new reservations are printed', async () => {
    const sb = sandbox();
    const first = await startDispatcher(sb, ['--poll-interval', '0.5']);
    const old1 = await reserve(sb, 'old-1');
    const old2 = await reserve(sb, 'old-2');
    await first.waitForCount((l) => l.event === 'dispatch_succeeded', 2);
    expect(await first.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(first);
    const lastPrinted = Math.max(...first.lines.filter((l) => l.position !== undefined).map((l) => l.position as number));

    const second = await startDispatcher(sb, ['--poll-interval', '0.5']);
    const fresh = await reserve(sb, 'new-1');
    await second.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'new-1');
    expect(await second.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(second);

    const oldIds = new Set([old1.reservation.reservation_id, old2.reservation.reservation_id]);
    expect(second.lines.filter((l) => oldIds.has(l.reservation_id))).toEqual([]);
    expect(second.lines.map((l) => [l.event, l.run_key ?? null])).toEqual([
      ['reserver_started', null],
      ['reservation_accepted', 'new-1'],
      ['orchesjob_start_call', 'new-1'],
      ['dispatch_succeeded', 'new-1'],
      ['reserver_stopped', null],
    ]);
    expect(second.lines[1]?.reservation_id).toBe(fresh.reservation.reservation_id);
    expect(second.lines[1]?.position).toBe(lastPrinted + 1);
    expect(executions(sb).map((e) => e.run_key).sort()).toEqual(['new-1', 'old-1', 'old-2']);
  });

  it('prints reservation_cancelled and reservation_cleaned written by other processes', async () => {
    const sb = sandbox();
    const d = await startDispatcher(sb);
    const later = Math.floor(Date.now() / 1000) + 3600;
    const waiting = await reserve(sb, 'to-cancel', ['echo', 'x'], ['--not-before', String(later)]);
    await d.waitForLine((l) => l.event === 'reservation_accepted' && l.run_key === 'to-cancel');

    const cancelled = await cliOk(sb, ['cancel', '--db', sb.db, '--orchesjob-bin', STANDIN, '--run-key', 'to-cancel']);
    expect(cancelled).toMatchObject({ cancelled: true, reservation: { reservation_status: 'CANCELLED' } });
    const cancelLine = await d.waitForLine((l) => l.event === 'reservation_cancelled');
    expect(cancelLine).toMatchObject({ reservation_id: waiting.reservation.reservation_id, run_key: 'to-cancel' });

    const cleaned = await cliOk(sb, ['clean', '--db', sb.db, '--reservation-id', waiting.reservation.reservation_id]);
    expect(cleaned).toMatchObject({ deleted: 1, dry_run: false, matched: 1 });
    const cleanLine = await d.waitForLine((l) => l.event === 'reservation_cleaned');
    expect(cleanLine).toMatchObject({ reservation_id: waiting.reservation.reservation_id, run_key: 'to-cancel' });

    // A dispatched one, cleaned by run key.
    const done = await reserve(sb, 'to-clean');
    await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'to-clean');
    await cliOk(sb, ['clean', '--db', sb.db, '--run-key', 'to-clean', '--all']);
    await d.waitForLine((l) => l.event === 'reservation_cleaned' && l.run_key === 'to-clean');

    expect(await d.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(d);
    for (const line of d.lines) expectFields(line);
    expect(d.lines.map((l) => [l.event, l.run_key ?? null])).toEqual([
      ['reserver_started', null],
      ['reservation_accepted', 'to-cancel'],
      ['reservation_cancelled', 'to-cancel'],
      ['reservation_cleaned', 'to-cancel'],
      ['reservation_accepted', 'to-clean'],
      ['orchesjob_start_call', 'to-clean'],
      ['dispatch_succeeded', 'to-clean'],
      ['reservation_cleaned', 'to-clean'],
      ['reserver_stopped', null],
    ]);
    expect(d.lines.find((l) => l.event === 'reservation_cleaned' && l.run_key === 'to-clean')?.reservation_id).toBe(
      done.reservation.reservation_id,
    );
    expect(startInvocations(sb, 'to-cancel')).toEqual([]);
  });
});
