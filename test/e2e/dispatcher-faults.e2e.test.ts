/**
 * Dispatcher end to end: failed starts (the stand-in's faults.json), the orchesjob argv with global and
 * per-reservation start options, and bad `run` flags.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CLI,
  cliOk,
  DispatcherProcess,
  envFor,
  expectWellFormed,
  ledgerEvents,
  reserve,
  runCli,
  sandbox,
  sleep,
  STANDIN,
  startDispatcher,
  startInvocations,
  status,
  writeFaults,
} from '../support/harness.js';

describe('dispatcher: failed starts', () => {
  it('records non-zero exit, non-JSON, no job_id and a hung start (--start-timeout 1) as DISPATCH_FAILED', async () => {
    const sb = sandbox();
    writeFaults(sb, {
      'f-exit': { mode: 'exit', code: 3, stderr: 'orchesjob: run key f-exit is locked by pid 4242' },
      'f-nonjson': { mode: 'non-json' },
      'f-nojob': { mode: 'no-job-id' },
      'f-hang': { mode: 'hang' },
    });
    const d = await startDispatcher(sb, ['--start-timeout', '1']);
    const keys = ['f-exit', 'f-nonjson', 'f-nojob', 'f-hang'];
    await Promise.all(keys.map((key) => reserve(sb, key, ['echo', key])));
    const failed = await d.waitForCount((l) => l.event === 'dispatch_failed', 4, 8000);
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(d);
    expect(d.events('dispatch_succeeded')).toEqual([]);
    const errorOf = (key: string): string => failed.find((l) => l.run_key === key)?.error ?? '';

    expect(errorOf('f-exit')).toContain('exit_code=3');
    expect(errorOf('f-exit')).toContain('orchesjob: run key f-exit is locked by pid 4242');
    expect(errorOf('f-nonjson')).toMatch(/non-JSON/i);
    expect(errorOf('f-nonjson')).toContain('this is not json');
    expect(errorOf('f-nojob')).toMatch(/job_id/);
    expect(errorOf('f-hang')).toMatch(/did not return within 1 s/);

    const listed = await cliOk(sb, ['list', '--db', sb.db]);
    expect(listed.reservations).toHaveLength(4);
    for (const r of listed.reservations as { run_key: string; reservation_status: string; job_id: string | null; last_error: string }[]) {
      expect(r.reservation_status, r.run_key).toBe('DISPATCH_FAILED');
      expect(r.job_id, r.run_key).toBeNull();
      expect(r.last_error, r.run_key).toBe(errorOf(r.run_key));
    }

    // The hung start was given about its timeout, and its process is gone.
    const [hang] = startInvocations(sb, 'f-hang');
    expect(hang).toBeDefined();
    const call = d.lines.findIndex((l) => l.event === 'orchesjob_start_call' && l.run_key === 'f-hang');
    const fail = d.lines.findIndex((l) => l.event === 'dispatch_failed' && l.run_key === 'f-hang');
    const waitedMs = (d.arrivedAtMs[fail] ?? 0) - (d.arrivedAtMs[call] ?? 0);
    const claim = ledgerEvents(sb.db).find((e) => e.type === 'DispatchClaimed' && e.run_key === 'f-hang');
    const failure = ledgerEvents(sb.db).find((e) => e.type === 'DispatchFailed' && e.run_key === 'f-hang');
    const recordedMs = (failure?.recorded_at_ms ?? 0) - (claim?.recorded_at_ms ?? 0);
    console.log(`[faults] hung start failed ${recordedMs} ms after its claim (lines ${waitedMs} ms apart)`);
    expect(recordedMs).toBeGreaterThanOrEqual(1000);
    expect(recordedMs).toBeLessThan(3000);
    let probe: NodeJS.ErrnoException | undefined;
    try {
      process.kill(hang?.pid ?? 0, 0);
    } catch (error) {
      probe = error as NodeJS.ErrnoException;
    }
    expect(probe?.code, `stand-in ${hang?.pid} should be gone`).toBe('ESRCH');
  });
});

describe('dispatcher: orchesjob argv', () => {
  it('puts global start options before the reservation own, both before --', async () => {
    const sb = sandbox();
    const d = await startDispatcher(sb, ['--orchesjob-start-option', '--sync']);
    expect(d.lines[0]?.orchesjob_start_options).toEqual(['--sync']);
    // Flags after `--` belong to the target command, even when they look like ours.
    const command = ['prog', '--run-key', 'x', '--db', 'y'];
    await reserve(sb, 'argv-key', command, ['--orchesjob-start-option=--strict']);
    const succeeded = await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'argv-key');
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(d);

    const expected = ['start', '--run-key', 'argv-key', '--sync', '--strict', '--', ...command];
    expect(startInvocations(sb).map((i) => i.argv)).toEqual([expected]);
    expect(d.events('reservation_accepted')[0]?.orchesjob_start_options).toEqual(['--strict']);
    expect(d.events('orchesjob_start_call')[0]?.command).toEqual([STANDIN, ...expected]);
    expect(succeeded.job_id).toEqual(expect.any(String));
    expect((await status(sb, 'argv-key')).reservation_status).toBe('DISPATCHED');
  });
});

describe('dispatcher: bad flags', () => {
  const cases: [string, string][] = [
    ['--poll-interval', '0'],
    ['--poll-interval', 'abc'],
    ['--error-sleep', '-1'],
    ['--max-concurrent-starts', '0'],
    ['--start-timeout', 'abc'],
  ];
  it.each(cases)('run %s %s: exit 2, {"error": ...} on stderr, nothing on stdout', async (flag, value) => {
    const sb = sandbox();
    const r = await runCli(['run', '--db', sb.db, '--orchesjob-bin', STANDIN, flag, value], { home: sb });
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
    const last = r.stderr.split('\n').filter((l) => l.trim() !== '').at(-1) ?? '';
    const doc = JSON.parse(last) as Record<string, unknown>;
    expect(Object.keys(doc)).toEqual(['error']);
    expect(doc['error']).toContain(flag);
    expect(startInvocations(sb)).toEqual([]);
  });
});

const PRLIMIT = ['/usr/bin/prlimit', '/bin/prlimit'].find((p) => existsSync(p)) ?? null;

describe.skipIf(PRLIMIT === null)('dispatcher: too few file descriptors (prlimit --nofile)', () => {
  it('reports it at start, records each start that cannot be spawned as DISPATCH_FAILED, and keeps running', async () => {
    const sb = sandbox();
    await cliOk(sb, ['list', '--db', sb.db]); // the file exists before any dispatcher opens it
    // How many descriptors Node, SQLite and the file watcher hold depends on the Node build: lower the
    // limit until the start-up check can no longer start a child (below that, the database cannot be
    // opened and `run` exits 1).
    let d: DispatcherProcess | null = null;
    for (let limit = 40; limit >= 12 && d === null; limit -= 2) {
      const full = ['run', '--db', sb.db, '--orchesjob-bin', STANDIN];
      const child = spawn(PRLIMIT as string, [`--nofile=${limit}:${limit}`, process.execPath, CLI, ...full], {
        env: envFor(sb),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const candidate = new DispatcherProcess(child, full);
      const started = candidate.waitForLine((l) => l.event === 'reserver_started', 10_000).then(() => true);
      if (!(await Promise.race([started, candidate.exited.then(() => false)]))) continue; // could not even start
      await sleep(300); // the check runs right after reserver_started
      if (candidate.stderr.includes('start-up check')) d = candidate;
      else expect(await candidate.stop()).toEqual({ code: 0, signal: null });
    }
    expect(d, 'no limit made the start-up check fail').not.toBeNull();
    const dispatcher = d as DispatcherProcess;
    const [checkLine] = dispatcher.stderr.trim().split('\n').map((l) => JSON.parse(l) as { event: string; error: string });
    expect(checkLine?.event).toBe('dispatcher_error');
    expect(checkLine?.error).toMatch(/^start-up check: cannot start a child process \(.*--version\): .*(EMFILE|no pipes)/);

    await reserve(sb, 'no-fd', ['echo', 'no-fd']);
    const [failed] = await dispatcher.waitForCount((l) => l.event === 'dispatch_failed', 1, 8000);
    expect(failed?.error).toMatch(/cannot run orchesjob .*(EMFILE|no pipes)/);
    expect((await status(sb, 'no-fd')).reservation_status).toBe('DISPATCH_FAILED');
    expect(dispatcher.running).toBe(true);
    expect(await dispatcher.stop()).toEqual({ code: 0, signal: null });
    expect(dispatcher.events('reserver_stopped')).toHaveLength(1);
    expectWellFormed(dispatcher);
  });
});
