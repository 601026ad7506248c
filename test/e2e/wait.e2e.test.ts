/**
 * `wait` end to end: the built CLI against a real SQLite file, the orchesjob stand-in, and a running
 * dispatcher (`run`) where a reservation must move. Every exit code of its contract, the document it
 * prints (the `status` document), and that it blocks without polling: few orchesjob calls, little CPU.
 * Times are asserted only as generous upper bounds.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PipedChild, RunResult, Sandbox } from '../support/harness.js';
import {
  canonical,
  cliOk,
  invocations,
  lastLineJson,
  ledgerEvents,
  reserve,
  runCli,
  sandbox,
  sleep,
  spawnCli,
  startDispatcher,
  stripAnsi,
  writeFaults,
} from '../support/harness.js';

const nowS = () => Math.floor(Date.now() / 1000);

/** A `wait` started now, in the background: its child, and its result once it exits. */
interface Waiting {
  readonly child: PipedChild;
  readonly result: Promise<RunResult>;
}

function startWait(sb: Sandbox, args: readonly string[]): Waiting {
  const child = spawnCli(['wait', '--db', sb.db, ...args], { home: sb });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
  const result = new Promise<RunResult>((resolve) => {
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      resolve({ code, signal, stdout, stderr, json: stdout === '' ? undefined : JSON.parse(stdout), lastStderrJson: lastLineJson(stderr), endedAtMs: Date.now() });
    });
  });
  return { child, result };
}

/** A wait that ended with `code`: the canonical document on stdout, and (for a failure) one `{"error"}` line on stderr. */
function ended(r: RunResult, code: number, error: string | null): any {
  expect({ code: r.code, signal: r.signal }, `stdout=${r.stdout}\nstderr=${r.stderr}`).toEqual({ code, signal: null });
  expect(r.json, r.stderr).toBeDefined();
  expect(r.stdout).toBe(canonical(r.json));
  if (error === null) expect(r.stderr).toBe('');
  else expect(r.stderr).toBe(`{"error": ${JSON.stringify(error)}}\n`);
  return r.json;
}

/** A failure before any document: the exit code, nothing on stdout, `{"error"}` last on stderr. Returns the message. */
function fails(r: RunResult, code: number): string {
  expect({ code: r.code, stdout: r.stdout }, r.stderr).toEqual({ code, stdout: '' });
  expect(Object.keys(r.lastStderrJson ?? {}), r.stderr).toEqual(['error']);
  return r.lastStderrJson.error as string;
}

/** The `orchesjob status --job-id` calls the stand-in logged. */
function jobStatusCalls(sb: Sandbox): number {
  return invocations(sb).filter((i) => i.argv[0] === 'status' && i.argv[1] === '--job-id').length;
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat (11 and 12 after the state), in clock ticks (USER_HZ, 100 on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A reservation dispatched by a dispatcher (stopped again), its job running for `jobSeconds`. */
async function dispatchedJob(sb: Sandbox, runKey: string, jobSeconds: number): Promise<string> {
  writeFaults(sb, { [runKey]: { mode: 'none', job_seconds: jobSeconds } });
  const d = await startDispatcher(sb);
  await reserve(sb, runKey);
  const line = await d.waitForLine((l) => l.event === 'dispatch_succeeded', 10_000);
  expect(await d.stop()).toEqual({ code: 0, signal: null });
  return line.job_id as string;
}

describe('wait: arguments', () => {
  it('--help prints its usage and exit codes, exit 0', async () => {
    const r = await runCli(['wait', '--help']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const text = stripAnsi(r.stdout);
    expect(text).toContain('Usage: orchesjob-reserver wait (--run-key KEY | --reservation-id ID) [--for dispatched|finished] [--timeout SECONDS]');
    expect(text).toContain('8 the job ended other than SUCCEEDED, 124 --timeout passed');
    expect(text).toContain('requeue');
    expect(text).toContain('--for');
    expect(text).toContain('--timeout');
  });

  it('lists wait in the top-level usage', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\n {2}wait +Block until a reservation is dispatched/);
  });

  it('bad --for, bad --timeout, no identity: exit 2, nothing on stdout, no database written', async () => {
    const sb = sandbox();
    const cases: [string[], string][] = [
      [['--run-key', 'k', '--for', 'started'], 'Invalid --for: "started" (dispatched or finished).'],
      [['--run-key', 'k', '--for', ''], 'Invalid --for: "" (dispatched or finished).'],
      [['--run-key', 'k', '--timeout', '0'], 'Invalid --timeout: "0" (a positive number of seconds).'],
      [['--run-key', 'k', '--timeout', '-1'], 'Invalid --timeout: "-1" (a positive number of seconds).'],
      [['--run-key', 'k', '--timeout', 'soon'], 'Invalid --timeout: "soon" (a positive number of seconds).'],
      [['--run-key', 'k', '--timeout', ' '], 'Invalid --timeout: " " (a positive number of seconds).'],
      [['--run-key', 'k', '--timeout', 'Infinity'], 'Invalid --timeout: "Infinity" (a positive number of seconds).'],
      [['--for', 'finished'], 'Specify exactly one of --run-key or --reservation-id.'],
      [['--run-key', 'k', '--follow'], 'unknown option: --follow'],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['wait', '--db', sb.db, ...args], { home: sb });
      expect(fails(r, 2), args.join(' ')).toBe(message);
    }
    expect(existsSync(sb.db)).toBe(false);
  });

  it('exit 4, nothing on stdout, for a reservation that does not exist', async () => {
    const sb = sandbox();
    await reserve(sb, 'other');
    expect(fails(await runCli(['wait', '--db', sb.db, '--run-key', 'missing', '--timeout', '5'], { home: sb }), 4)).toBe('Reservation not found.');
    expect(fails(await runCli(['wait', '--db', sb.db, '--reservation-id', 'NOPE', '--for', 'finished'], { home: sb }), 4)).toBe('Reservation not found.');
  });
});

describe('wait --for dispatched', () => {
  it('blocks until a dispatcher dispatches the reservation, then prints the status document, exit 0', async () => {
    const sb = sandbox();
    const d = await startDispatcher(sb);
    const notBefore = nowS() + 2;
    await reserve(sb, 'due-soon', ['echo', 'hi'], ['--not-before', String(notBefore)]);
    const w = startWait(sb, ['--run-key', 'due-soon', '--timeout', '30']);
    const r = await w.result;
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    const doc = ended(r, 0, null);
    expect(Object.keys(doc)).toEqual(['dispatch', 'reservation']);
    expect(doc.reservation).toMatchObject({ run_key: 'due-soon', reservation_status: 'DISPATCHED' });
    expect(doc.reservation.job_id).toEqual(expect.any(String));
    // Exactly what `status` prints of it.
    expect(doc).toEqual(await cliOk(sb, ['status', '--db', sb.db, '--run-key', 'due-soon']));
    // It returned after the dispatch was recorded, and not long after (a generous bound).
    const dispatched = ledgerEvents(sb.db).find((e) => e.type === 'Dispatched');
    expect(dispatched).toBeDefined();
    expect(r.endedAtMs).toBeGreaterThanOrEqual(dispatched?.recorded_at_ms ?? Infinity);
    expect(r.endedAtMs - (dispatched?.recorded_at_ms ?? 0)).toBeLessThan(3000);
  });

  it('returns at once for a reservation already dispatched (by reservation id)', async () => {
    const sb = sandbox();
    await dispatchedJob(sb, 'done', 600);
    const { reservation } = await cliOk(sb, ['status', '--db', sb.db, '--run-key', 'done']);
    const doc = ended(await runCli(['wait', '--db', sb.db, '--reservation-id', reservation.reservation_id], { home: sb }), 0, null);
    expect(doc.reservation.reservation_status).toBe('DISPATCHED');
    expect(doc.job).toBeUndefined();
  });

  it('exit 6 when the reservation is cancelled by another process while wait blocks', async () => {
    const sb = sandbox();
    await reserve(sb, 'later', ['echo', 'later'], ['--not-before', String(nowS() + 3600)]);
    const w = startWait(sb, ['--run-key', 'later']);
    await sleep(500); // blocking by now
    const cancel = await runCli(['cancel', '--db', sb.db, '--run-key', 'later'], { home: sb });
    expect(cancel.code).toBe(0);
    const r = await w.result;
    const doc = ended(r, 6, 'reservation ended CANCELLED: it cannot be dispatched');
    expect(doc.reservation.reservation_status).toBe('CANCELLED');
    expect(r.endedAtMs - cancel.endedAtMs).toBeLessThan(3000);
  });

  it('exit 6 when the reservation expires (recorded by a dispatcher started meanwhile)', async () => {
    const sb = sandbox();
    const expiresAt = nowS() + 1;
    await reserve(sb, 'expiring', ['echo', 'x'], ['--expires-at', String(expiresAt)]);
    const w = startWait(sb, ['--run-key', 'expiring', '--timeout', '30']);
    await sleep(expiresAt * 1000 + 200 - Date.now());
    const d = await startDispatcher(sb);
    const r = await w.result;
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    const doc = ended(r, 6, 'reservation ended EXPIRED: it cannot be dispatched');
    expect(doc.reservation.reservation_status).toBe('EXPIRED');
    expect(invocations(sb)).toEqual([]); // never started
  });

  it('exit 6 when the start fails with no attempts left (DISPATCH_FAILED)', async () => {
    const sb = sandbox();
    writeFaults(sb, { failing: { mode: 'exit', code: 7, stderr: 'boom' } });
    await reserve(sb, 'failing');
    const d = await startDispatcher(sb);
    const r = await startWait(sb, ['--run-key', 'failing', '--for', 'finished', '--timeout', '30']).result;
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    const doc = ended(r, 6, 'reservation ended DISPATCH_FAILED: it cannot be dispatched');
    expect(doc.reservation.reservation_status).toBe('DISPATCH_FAILED');
    expect(doc.reservation.last_error).toContain('boom');
    expect(doc.job).toBeUndefined();
  });

  it('waits through a failed attempt that is retried (RESERVED again is "not yet")', async () => {
    const sb = sandbox();
    writeFaults(sb, { retried: { mode: 'exit', code: 7, stderr: 'first', times: 1 } });
    const d = await startDispatcher(sb);
    await reserve(sb, 'retried', ['echo', 'x'], ['--max-attempts', '2', '--retry-delay', '2']);
    await d.waitForLine((l) => l.event === 'dispatch_attempt_failed', 10_000);
    // RESERVED again, the retry due in about 2 s: wait starts now and blocks through it.
    expect((await cliOk(sb, ['status', '--db', sb.db, '--run-key', 'retried'])).reservation.reservation_status).toBe('RESERVED');
    const r = await startWait(sb, ['--run-key', 'retried', '--timeout', '30']).result;
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    const doc = ended(r, 0, null);
    expect(doc.reservation.reservation_status).toBe('DISPATCHED');
    expect(ledgerEvents(sb.db).map((e) => e.type)).toEqual(['Reserved', 'DispatchClaimed', 'DispatchAttemptFailed', 'DispatchClaimed', 'Dispatched']);
  });

  it('exit 124 with the last document once --timeout passes', async () => {
    const sb = sandbox();
    await reserve(sb, 'far', ['echo', 'x'], ['--not-before', String(nowS() + 3600)]);
    const startedAt = Date.now();
    const r = await runCli(['wait', '--db', sb.db, '--run-key', 'far', '--timeout', '0.5'], { home: sb });
    const doc = ended(r, 124, 'timed out after 0.5 s waiting for dispatched: reservation RESERVED');
    expect(doc.reservation.reservation_status).toBe('RESERVED');
    expect(r.endedAtMs - startedAt).toBeGreaterThanOrEqual(500);
    expect(r.endedAtMs - startedAt).toBeLessThan(5000);
  });

  it('SIGTERM: prints the document, exit 143', async () => {
    const sb = sandbox();
    await reserve(sb, 'far', ['echo', 'x'], ['--not-before', String(nowS() + 3600)]);
    const w = startWait(sb, ['--run-key', 'far']);
    await sleep(700);
    w.child.kill('SIGTERM');
    const doc = ended(await w.result, 143, 'stopped by SIGTERM while waiting for dispatched: reservation RESERVED');
    expect(doc.reservation.reservation_status).toBe('RESERVED');
  });

  it('does not busy-poll: little CPU while blocking 2 s', async () => {
    const sb = sandbox();
    await reserve(sb, 'far', ['echo', 'x'], ['--not-before', String(nowS() + 3600)]);
    const w = startWait(sb, ['--run-key', 'far', '--timeout', '3']);
    await sleep(700); // past start-up
    const pid = w.child.pid as number;
    const before = cpuSeconds(pid);
    await sleep(2000);
    const used = cpuSeconds(pid) - before;
    console.log(`[wait] CPU while blocking 2 s: ${used.toFixed(2)} s`);
    expect(used).toBeLessThan(0.3);
    ended(await w.result, 124, 'timed out after 3 s waiting for dispatched: reservation RESERVED');
  });
});

describe('wait --for finished', () => {
  it('exit 0 once the job SUCCEEDED, with "job" as `status --include-job` prints it', async () => {
    const sb = sandbox();
    writeFaults(sb, { ok: { mode: 'none', job_seconds: 1.5 } });
    await reserve(sb, 'ok', ['echo', 'ok'], ['--not-before', String(nowS() + 1)]);
    // Started before the dispatch: it waits through RESERVED, DISPATCHED and the job RUNNING.
    const w = startWait(sb, ['--run-key', 'ok', '--for', 'finished', '--timeout', '30']);
    const d = await startDispatcher(sb);
    const r = await w.result;
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    const doc = ended(r, 0, null);
    expect(Object.keys(doc)).toEqual(['dispatch', 'job', 'reservation']);
    expect(doc.reservation.reservation_status).toBe('DISPATCHED');
    expect(doc.job).toMatchObject({ job_id: doc.reservation.job_id, status: 'SUCCEEDED', exit_code: 0 });
    expect(doc).toEqual(await cliOk(sb, ['status', '--db', sb.db, '--run-key', 'ok', '--include-job']));
  });

  it('exit 8 when the job FAILED', async () => {
    const sb = sandbox();
    writeFaults(sb, { bad: { mode: 'none', job_seconds: 0.5, job_exit_code: 3 } });
    const d = await startDispatcher(sb);
    await reserve(sb, 'bad');
    const r = await startWait(sb, ['--run-key', 'bad', '--for', 'finished', '--timeout', '30']).result;
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    const doc = ended(r, 8, 'job ended FAILED');
    expect(doc.job).toMatchObject({ status: 'FAILED', exit_code: 3 });
  });

  it('exit 8 when the job was ABORTED while wait blocks', async () => {
    const sb = sandbox();
    const jobId = await dispatchedJob(sb, 'aborted', 600);
    const w = startWait(sb, ['--run-key', 'aborted', '--for', 'finished', '--timeout', '30']);
    await sleep(700);
    const abort = await runCli(['cancel', '--db', sb.db, '--run-key', 'aborted'], { home: sb });
    expect(abort.code).toBe(0);
    const doc = ended(await w.result, 8, 'job ended ABORTED');
    expect(doc.job).toMatchObject({ job_id: jobId, status: 'ABORTED' });
  });

  it('asks orchesjob at most about once a second, and exit 124 with the job RUNNING', async () => {
    const sb = sandbox();
    await dispatchedJob(sb, 'long', 600);
    const callsBefore = jobStatusCalls(sb);
    const startedAt = Date.now();
    const r = await startWait(sb, ['--run-key', 'long', '--for', 'finished', '--timeout', '3.5']).result;
    const doc = ended(r, 124, 'timed out after 3.5 s waiting for finished: job RUNNING');
    expect(doc.job).toMatchObject({ status: 'RUNNING' });
    const calls = jobStatusCalls(sb) - callsBefore;
    console.log(`[wait] orchesjob status calls over ${r.endedAtMs - startedAt} ms: ${calls}`);
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(calls).toBeLessThanOrEqual(4);
  });

  it('keeps asking when orchesjob status fails: one warning line, then the timeout says why', async () => {
    const sb = sandbox();
    const jobId = await dispatchedJob(sb, 'lost-record', 600);
    rmSync(join(sb.oj, 'jobs', `${jobId}.json`)); // orchesjob now answers exit 3, job not found
    const r = await startWait(sb, ['--run-key', 'lost-record', '--for', 'finished', '--timeout', '2.5']).result;
    expect(r.code).toBe(124);
    expect(r.stdout).toBe(canonical(r.json));
    expect(r.json.job).toBeUndefined(); // orchesjob never answered
    const lines = r.stderr.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2);
    expect(Object.keys(lines[0])).toEqual(['warning']);
    expect(lines[0].warning).toContain(`orchesjob status --job-id ${jobId} failed with exit code 3`);
    expect(lines[0].warning).toContain('(retrying every second)');
    expect(Object.keys(lines[1])).toEqual(['error']);
    expect(lines[1].error).toMatch(new RegExp(`^timed out after 2.5 s waiting for finished: orchesjob status --job-id ${jobId} failed with exit code 3`));
    expect(jobStatusCalls(sb)).toBeGreaterThanOrEqual(2);
  });

  it('exit 4 when the reservation is cleaned while wait blocks', async () => {
    const sb = sandbox();
    await dispatchedJob(sb, 'cleaned', 600);
    const w = startWait(sb, ['--run-key', 'cleaned', '--for', 'finished', '--timeout', '30']);
    await sleep(700);
    const { reservation } = await cliOk(sb, ['status', '--db', sb.db, '--run-key', 'cleaned']);
    await cliOk(sb, ['clean', '--db', sb.db, '--reservation-id', reservation.reservation_id]);
    expect(fails(await w.result, 4)).toBe('Reservation not found.');
  });
});
