/**
 * End to end: `history` and `events` (including `events --follow`) of the built CLI against a real
 * SQLite file. Follow processes are started with the harness's `spawnCli` (runCli waits for an exit),
 * whose leak check kills any that is still running and fails the test that left it.
 */
import { describe, expect, it } from 'vitest';
import { execute } from '../../src/ledger.js';
import type { PipedChild, RunResult, Sandbox } from '../support/harness.js';
import { canonical, ledgerRows, runCli, sandbox, sha256, sortKeysDeep, spawnCli, ULID, withLedger } from '../support/harness.js';

/** The keys of every event object `history` and `events` print. */
const EVENT_KEYS = [
  'actor',
  'data',
  'event_id',
  'position',
  'recorded_at',
  'recorded_at_iso',
  'recorded_at_ms',
  'reservation_id',
  'run_key',
  'type',
  'version',
];

/** A success: exit 0, nothing on stderr. */
function ok(r: RunResult): RunResult {
  expect({ code: r.code, stderr: r.stderr }, r.stdout).toEqual({ code: 0, stderr: '' });
  return r;
}

/** A failure: the exit code, nothing on stdout, `{"error": ...}` as the last stderr line. Returns the message. */
function fails(r: RunResult, code: number): string {
  expect({ code: r.code, stdout: r.stdout }, r.stderr).toEqual({ code, stdout: '' });
  expect(Object.keys(r.lastStderrJson ?? {}), r.stderr).toEqual(['error']);
  return r.lastStderrJson.error as string;
}

/** `history`'s document: canonical JSON (sorted keys, 2-space indent), `{"events": [...]}`. */
function historyOk(r: RunResult): any[] {
  ok(r);
  expect(r.stdout).toBe(canonical(r.json));
  expect(Object.keys(r.json)).toEqual(['events']);
  return r.json.events as any[];
}

/** `events`' JSON Lines: each line compact JSON with sorted keys. */
function parseLines(stdout: string): any[] {
  if (stdout === '') return [];
  expect(stdout.endsWith('\n'), 'output ends with a complete line').toBe(true);
  return stdout
    .slice(0, -1)
    .split('\n')
    .map((line) => {
      const event = JSON.parse(line);
      expect(line).toBe(JSON.stringify(sortKeysDeep(event)));
      return event;
    });
}

/** What the ledger holds, as `history`/`events` must print it. */
function expectedEvents(home: Sandbox): any[] {
  return ledgerRows(home.db).events.map((row) => ({
    ...row,
    data: JSON.parse(row.data),
    recorded_at_iso: `${new Date(row.recorded_at * 1000).toISOString().slice(0, 19)}+00:00`,
  }));
}

const positions = (events: any[]) => events.map((e) => e.position as number);

/** Reserve through the ledger's write path, in this process (fast seeding of many events). */
async function seedReserves(home: Sandbox, keys: string[]): Promise<void> {
  await withLedger(home.db, async (ledger) => {
    for (const key of keys) {
      await execute(
        ledger.db,
        null,
        { type: 'Reserve', runKey: key, command: ['prog', key], orchesjobStartOptions: [], metadata: null, notBefore: null, expiresAt: null },
        { actor: 'test:seed' },
      );
    }
  });
}

// ---------------------------------------------------------------------------
// `events --follow` processes
// ---------------------------------------------------------------------------

interface Follower {
  readonly child: PipedChild;
  /** Complete stdout lines so far, with the time each arrived. */
  readonly lines: { text: string; atMs: number }[];
  stdout(): string;
  stderr(): string;
  /** Resolves once `n` lines have arrived; rejects after `timeoutMs`. */
  waitForLines(n: number, timeoutMs?: number): Promise<void>;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `node dist/cli.js events --follow ...args` against the home's database. */
function follow(home: Sandbox, args: string[] = []): Follower {
  const child = spawnCli(['events', '--follow', ...args], { home });
  const lines: { text: string; atMs: number }[] = [];
  let out = '';
  let partial = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    const atMs = Date.now();
    out += chunk;
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    for (const text of parts) lines.push({ text, atMs });
    for (const w of waiters) w();
  });
  child.stderr.on('data', (chunk: string) => {
    err += chunk;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      for (const w of waiters) w();
      resolve({ code, signal });
    });
  });
  return {
    child,
    lines,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitForLines(n, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (lines.length >= n) {
            cleanup();
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`events --follow exited with ${lines.length} of ${n} lines; stderr: ${err}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`events --follow printed ${lines.length} of ${n} lines within ${timeoutMs} ms; stderr: ${err}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/** Stop a follower with a signal; it must exit 0 with nothing on stderr. Returns its events. */
async function stopWith(f: Follower, signal: NodeJS.Signals): Promise<any[]> {
  f.child.kill(signal);
  const { code, signal: killedBy } = await f.exit;
  expect({ code, killedBy, stderr: f.stderr() }).toEqual({ code: 0, killedBy: null, stderr: '' });
  return parseLines(f.stdout());
}

// ---------------------------------------------------------------------------

describe('history', () => {
  it('by run key: every reservation that held it, across cancel, clean and re-reserve, in ledger order', async () => {
    const home = sandbox();
    const first = ok(await runCli(['reserve', '--run-key', 'nightly', '--', 'prog', '1'])).json.reservation;
    ok(await runCli(['reserve', '--run-key', 'other', '--', 'prog', 'x'])); // interleaved, not in the history
    ok(await runCli(['cancel', '--run-key', 'nightly']));
    ok(await runCli(['clean', '--all', '--run-key', 'nightly']));
    const second = ok(await runCli(['reserve', '--run-key', 'nightly', '--', 'prog', '2'])).json.reservation;
    expect(second.reservation_id).not.toBe(first.reservation_id);

    const events = historyOk(await runCli(['history', '--run-key', 'nightly']));
    expect(events.map((e) => [e.reservation_id, e.type, e.version, e.actor])).toEqual([
      [first.reservation_id, 'Reserved', 1, 'cli:reserve'],
      [first.reservation_id, 'Cancelled', 2, 'cli:cancel'],
      [first.reservation_id, 'Cleaned', 3, 'cli:clean'],
      [second.reservation_id, 'Reserved', 1, 'cli:reserve'],
    ]);
    expect(positions(events)).toEqual([1, 3, 4, 5]);
    for (const e of events) {
      expect(Object.keys(e)).toEqual(EVENT_KEYS);
      expect(e.event_id).toMatch(ULID);
      expect(e.run_key).toBe('nightly');
      expect(e.recorded_at_ms).toBeGreaterThanOrEqual(e.recorded_at * 1000);
      expect(e.recorded_at_ms).toBeLessThan((e.recorded_at + 1) * 1000);
    }
    expect(events[0].data).toMatchObject({ command: ['prog', '1'], orchesjob_start_options: [], metadata: null });
    expect(events[3].data).toMatchObject({ command: ['prog', '2'] });
    // Exactly what the ledger holds.
    expect(events).toEqual(expectedEvents(home).filter((e) => e.run_key === 'nightly'));
  });

  it('by reservation id: one stream, also after clean removed it from the projection', async () => {
    const home = sandbox();
    const first = ok(await runCli(['reserve', '--run-key', 'k', '--', 'prog'])).json.reservation;
    ok(await runCli(['cancel', '--reservation-id', first.reservation_id]));
    ok(await runCli(['clean', '--reservation-id', first.reservation_id]));
    const second = ok(await runCli(['reserve', '--run-key', 'k', '--', 'prog'])).json.reservation;
    fails(await runCli(['status', '--reservation-id', first.reservation_id]), 4);

    const [a, b] = await Promise.all([
      runCli(['history', '--reservation-id', first.reservation_id]),
      runCli(['history', '--reservation-id', second.reservation_id]),
    ]);
    const all = expectedEvents(home);
    expect(historyOk(a)).toEqual(all.filter((e) => e.reservation_id === first.reservation_id));
    expect(historyOk(a).map((e) => [e.type, e.version])).toEqual([
      ['Reserved', 1],
      ['Cancelled', 2],
      ['Cleaned', 3],
    ]);
    expect(historyOk(b)).toEqual([all[3]]);
  });

  it('exits 4 when no event matches; 2 on a bad or missing identity', async () => {
    sandbox();
    ok(await runCli(['reserve', '--run-key', 'k', '--', 'prog']));
    const [key, id] = await Promise.all([
      runCli(['history', '--run-key', 'unknown']),
      runCli(['history', '--reservation-id', '01ARZ3NDEKTSV4RRFFQ69G5FAV']),
    ]);
    expect(fails(key, 4)).toMatchInlineSnapshot(`"Reservation not found."`);
    expect(fails(id, 4)).toBe('Reservation not found.');

    const bad = await Promise.all(
      [
        [],
        ['--run-key', 'k', '--reservation-id', 'x'],
        ['--run-key', ''],
        ['--run-key', 'a\u0001b'],
        ['--run-key', 'x'.repeat(513)],
        ['--reservation-id', ''],
        ['--run-key'],
        ['--run-key', 'k', '--bogus'],
        ['--run-key', 'k', 'extra'],
      ].map((args) => runCli(['history', ...args])),
    );
    for (const r of bad) fails(r, 2);
    expect(fails(bad[0] as RunResult, 2)).toMatchInlineSnapshot(`"Specify exactly one of --run-key or --reservation-id."`);
  });

  it('--help: description, usage, exit codes, an example', async () => {
    sandbox();
    const r = ok(await runCli(['history', '--help']));
    expect(r.stdout).toContain('Usage: orchesjob-reserver history (--run-key KEY | --reservation-id ID)');
    expect(r.stdout).toContain('Exit codes: 0 ok, 1 general error, 2 invalid arguments, 4 not found');
    expect(r.stdout).toContain('Example: orchesjob-reserver history --run-key');
  });
});

describe('events', () => {
  it('JSON Lines in position order; --since is exclusive; --limit caps the count', async () => {
    const home = sandbox();
    ok(await runCli(['reserve', '--run-key', 'a', '--', 'prog']));
    ok(await runCli(['reserve', '--run-key', 'b', '--', 'prog']));
    ok(await runCli(['cancel', '--run-key', 'a']));
    ok(await runCli(['clean', '--all'])); // cleans the cancelled `a` only
    const all = expectedEvents(home);
    expect(all.map((e) => [e.type, e.run_key])).toEqual([
      ['Reserved', 'a'],
      ['Reserved', 'b'],
      ['Cancelled', 'a'],
      ['Cleaned', 'a'],
    ]);

    const [every, since2, limit2, since1limit3, beyond, sinceZero, plusSign] = await Promise.all([
      runCli(['events']),
      runCli(['events', '--since', '2']),
      runCli(['events', '--limit', '2']),
      runCli(['events', '--since', '1', '--limit', '3']),
      runCli(['events', '--since', '99']),
      runCli(['events', '--since', '0', '--limit', '100']),
      runCli(['events', '--since=+3']),
    ]);
    expect(parseLines(ok(every).stdout)).toEqual(all);
    expect(parseLines(ok(since2).stdout)).toEqual(all.slice(2));
    expect(parseLines(ok(limit2).stdout)).toEqual(all.slice(0, 2));
    expect(parseLines(ok(since1limit3).stdout)).toEqual(all.slice(1, 4));
    expect(ok(beyond).stdout).toBe('');
    expect(parseLines(ok(sinceZero).stdout)).toEqual(all);
    expect(parseLines(ok(plusSign).stdout)).toEqual(all.slice(3));
    // The same objects as `history`.
    const history = historyOk(await runCli(['history', '--run-key', 'a']));
    expect(parseLines(every.stdout).filter((e) => e.run_key === 'a')).toEqual(history);
  });

  it('an empty ledger prints nothing and exits 0', async () => {
    sandbox();
    expect(ok(await runCli(['events'])).stdout).toBe('');
  });

  it('a backlog larger than one read batch: every event once, in order', async () => {
    const home = sandbox();
    await seedReserves(home, Array.from({ length: 2100 }, (_, i) => `k${i}`));
    const [every, window] = await Promise.all([runCli(['events']), runCli(['events', '--since', '999', '--limit', '1002'])]);
    expect(positions(parseLines(ok(every).stdout))).toEqual(Array.from({ length: 2100 }, (_, i) => i + 1));
    expect(positions(parseLines(ok(window).stdout))).toEqual(Array.from({ length: 1002 }, (_, i) => i + 1000));
  });

  it('reading writes nothing: the database file is unchanged', async () => {
    const home = sandbox();
    ok(await runCli(['reserve', '--run-key', 'a', '--', 'prog']));
    const before = sha256(home.db);
    const rowsBefore = ledgerRows(home.db);
    ok(await runCli(['events']));
    ok(await runCli(['history', '--run-key', 'a']));
    fails(await runCli(['history', '--run-key', 'nope']), 4);
    const f = follow(home);
    await f.waitForLines(1);
    await stopWith(f, 'SIGTERM');
    expect(sha256(home.db)).toBe(before);
    expect(ledgerRows(home.db)).toEqual(rowsBefore);
  });

  it('bad flags exit 2 with nothing on stdout, --follow included', async () => {
    sandbox();
    const cases = [
      ['--since', 'abc'],
      ['--since', '-1'],
      ['--since', '1.5'],
      ['--since', ''],
      ['--since', '1e3'],
      ['--limit', '0'],
      ['--limit', '-3'],
      ['--limit', 'x'],
      ['--limit', '2.5'],
      ['--since', 'abc', '--follow'],
      ['--limit', '0', '--follow'],
      ['--follow=yes'],
      ['--follow', '--follow'],
      ['--since'],
      ['--bogus'],
      ['extra'],
    ];
    const results = await Promise.all(cases.map((args) => runCli(['events', ...args])));
    results.forEach((r, i) => expect(r.code, JSON.stringify(cases[i])).toBe(2));
    for (const r of results) fails(r, 2);
    expect(fails(results[1] as RunResult, 2)).toMatchInlineSnapshot(`"Invalid --since: "-1" (a ledger position: an integer >= 0)."`);
    expect(fails(results[5] as RunResult, 2)).toMatchInlineSnapshot(`"Invalid --limit: "0" (a positive integer)."`);
  });

  it('--help: description, usage, exit codes, an example', async () => {
    sandbox();
    const r = ok(await runCli(['events', '--help']));
    expect(r.stdout).toContain('Usage: orchesjob-reserver events [--since POSITION] [--limit N] [--follow]');
    expect(r.stdout).toContain('Exit codes: 0 ok');
    expect(r.stdout).toContain('Example: orchesjob-reserver events --since');
    expect(r.stdout).toContain('--follow --limit N');
  });
});

describe('events --follow', () => {
  it('prints what concurrent writers append, each event once, in order, within ~1 s; SIGTERM exits 0', async () => {
    const home = sandbox();
    ok(await runCli(['reserve', '--run-key', 'before', '--', 'prog']));
    const f = follow(home);
    await f.waitForLines(1);

    // Two writer processes at a time, each a chain of reserve -> cancel.
    const returned = new Map<string, number>(); // `${type}:${reservation_id}` -> when its command returned
    const chain = async (name: string) => {
      for (let i = 0; i < 4; i++) {
        const r = ok(await runCli(['reserve', '--run-key', `${name}-${i}`, '--', 'prog']));
        returned.set(`Reserved:${r.json.reservation.reservation_id}`, Date.now());
        if (i % 2 === 0) {
          ok(await runCli(['cancel', '--run-key', `${name}-${i}`]));
          returned.set(`Cancelled:${r.json.reservation.reservation_id}`, Date.now());
        }
      }
    };
    await Promise.all([chain('w1'), chain('w2')]);
    const all = expectedEvents(home);
    expect(all).toHaveLength(1 + 2 * 6);
    await f.waitForLines(all.length, 3000);

    for (const { text, atMs } of f.lines.slice(1)) {
      const e = JSON.parse(text);
      const writtenAt = returned.get(`${e.type}:${e.reservation_id}`);
      expect(writtenAt, text).toBeDefined();
      // Printed at most ~1 s after its writer returned (fs.watch makes it milliseconds; the poll bounds it).
      expect(atMs - (writtenAt as number), text).toBeLessThan(1500);
    }
    const printed = await stopWith(f, 'SIGTERM');
    expect(printed).toEqual(all);
  });

  it('SIGTERM right after a write: events appended before the signal are still printed, then exit 0', async () => {
    const home = sandbox();
    await seedReserves(home, ['first']);
    const f = follow(home, ['--since', '0']);
    await f.waitForLines(1);
    await seedReserves(home, Array.from({ length: 1500 }, (_, i) => `k${i}`)); // beyond one read batch
    const printed = await stopWith(f, 'SIGTERM');
    expect(positions(printed)).toEqual(Array.from({ length: 1501 }, (_, i) => i + 1));
    expect(printed).toEqual(expectedEvents(home));
  });

  it('SIGINT exits 0 too; --since resumes where a previous follower stopped, with no gap and no repeat', async () => {
    const home = sandbox();
    await seedReserves(home, ['a', 'b']);
    const f1 = follow(home);
    await f1.waitForLines(2);
    const firstRun = await stopWith(f1, 'SIGINT');
    await seedReserves(home, ['c', 'd']);
    const last = firstRun[firstRun.length - 1].position as number;
    const f2 = follow(home, ['--since', String(last)]);
    await f2.waitForLines(2);
    await withLedger(home.db, (ledger) =>
      execute(ledger.db, { runKey: 'a' }, { type: 'Cancel' }, { actor: 'test:seed' }),
    );
    await f2.waitForLines(3);
    const secondRun = await stopWith(f2, 'SIGTERM');
    expect([...firstRun, ...secondRun]).toEqual(expectedEvents(home));
  });

  it('--follow --limit N waits for N events, prints exactly N and exits 0 by itself', async () => {
    const home = sandbox();
    await seedReserves(home, ['a']);
    const f = follow(home, ['--limit', '3']);
    await f.waitForLines(1);
    await seedReserves(home, ['b']);
    await f.waitForLines(2);
    expect(f.child.exitCode).toBeNull(); // still waiting for the third
    await seedReserves(home, ['c', 'd', 'e']);
    const { code } = await f.exit;
    expect({ code, stderr: f.stderr() }).toEqual({ code: 0, stderr: '' });
    expect(parseLines(f.stdout())).toEqual(expectedEvents(home).slice(0, 3));
  });

  it('--follow on an empty ledger waits for the first event', async () => {
    const home = sandbox();
    await seedReserves(home, []); // create the database
    const f = follow(home, ['--since', '0']);
    await new Promise((r) => setTimeout(r, 300)); // let it start (a signal before start-up is a plain kill)
    await seedReserves(home, ['a']);
    await f.waitForLines(1, 3000);
    expect(await stopWith(f, 'SIGTERM')).toEqual(expectedEvents(home));
  });
});
