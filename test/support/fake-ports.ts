/**
 * Fake ports for the dispatcher's in-process tests (`test/int/dispatcher-*.int.test.ts`): a clock the
 * test sets, a waker whose sleeps end when that clock reaches their end (or on `wake()`), and an
 * orchesjob client whose starts the test settles. The database is never faked: each test gets a real
 * SQLite ledger in a temp folder.
 *
 * `useInProcessDispatcher()` (call it once at the top of a test file) returns a factory of harnesses
 * and registers an `afterEach` that stops every dispatcher still running (failing its open starts),
 * fails the test when one did not stop or when `run()` rejected, and closes and removes each ledger.
 *
 * Nothing here reads the real clock or sleeps for real: the loop advances only through promise jobs
 * and `setImmediate` rounds, and `idle()` waits for it to be asleep again.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect } from 'vitest';
import type { Ledger } from '../../src/db/open.js';
import { openLedger } from '../../src/db/open.js';
import type { Waker } from '../../src/db/waker.js';
import type { DispatcherOptions } from '../../src/dispatcher/ports.js';
import { Dispatcher } from '../../src/dispatcher/dispatcher.js';
import type { ClaimOwner, Reservation } from '../../src/events/index.js';
import { lastPosition } from '../../src/events/store.js';
import { execute } from '../../src/ledger.js';
import type { DispatchClient, JobLookup, StartOutcome } from '../../src/orchesjob/client.js';
import type { StartSpec } from '../../src/orchesjob/argv.js';
import { findByRunKey } from '../../src/projections/reservations.js';

// ---------------------------------------------------------------------------------------------
// Clock

/** Epoch milliseconds that move only when the test moves them. */
export class FakeClock {
  private ms: number;
  private readonly listeners: (() => void)[] = [];

  constructor(startMs: number) {
    this.ms = startMs;
  }

  /** The clock as the dispatcher reads it (a bound function: pass it as `clock`). */
  readonly now = (): number => this.ms;

  set(ms: number): void {
    this.ms = ms;
    for (const listener of this.listeners) listener();
  }

  advance(ms: number): void {
    this.set(this.ms + ms);
  }

  /** Called after every change (the waker ends the sleeps that are over). */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }
}

// ---------------------------------------------------------------------------------------------
// Waker

/** One `sleep(ms)` the loop asked for, in fake time, and how it ended. */
export interface SleepRequest {
  readonly ms: number;
  readonly at: number;
  readonly endsAt: number;
  /** 'timeout': the clock reached `endsAt`; 'wake': `wake()` ended it (or a kept wake, at once). */
  endedBy: 'timeout' | 'wake' | null;
}

/**
 * The `Waker` contract of src/db/waker.ts on a fake clock: a sleep ends when the clock reaches its
 * end or on `wake()`; a wake while nobody sleeps is kept, so the next sleep returns at once.
 */
export class FakeWaker implements Waker {
  /** Every sleep requested, in order. */
  readonly sleeps: SleepRequest[] = [];
  watching = false;
  closed = false;
  private kept = false;
  private current: { readonly request: SleepRequest; readonly resolve: () => void } | null = null;

  constructor(private readonly clock: FakeClock) {
    clock.onChange(() => {
      if (this.current !== null && this.clock.now() >= this.current.request.endsAt) this.end('timeout');
    });
  }

  watch(): void {
    this.watching = true;
  }

  sleep(ms: number): Promise<void> {
    const at = this.clock.now();
    const request: SleepRequest = { ms, at, endsAt: at + ms, endedBy: null };
    this.sleeps.push(request);
    if (this.current !== null) throw new Error('FakeWaker: two sleeps at once');
    if (this.kept || ms <= 0) {
      request.endedBy = this.kept ? 'wake' : 'timeout';
      this.kept = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.current = { request, resolve };
    });
  }

  wake(): void {
    if (this.current === null) this.kept = true;
    else this.end('wake');
  }

  clear(): void {
    this.kept = false;
  }

  close(): void {
    this.closed = true;
  }

  /** The sleep in progress, or null. */
  get sleeping(): SleepRequest | null {
    return this.current?.request ?? null;
  }

  /** The last sleep requested (throws when there was none). */
  get last(): SleepRequest {
    const last = this.sleeps.at(-1);
    if (last === undefined) throw new Error('FakeWaker: no sleep was requested');
    return last;
  }

  private end(how: 'timeout' | 'wake'): void {
    const current = this.current;
    if (current === null) return;
    this.current = null;
    current.request.endedBy = how;
    current.resolve();
  }
}

// ---------------------------------------------------------------------------------------------
// orchesjob

/** One `start(argv, timeoutMs)` call, and the test's hands on its outcome. */
export interface StartCall {
  readonly argv: readonly string[];
  readonly timeoutMs: number;
  /** Fake time of the call. */
  readonly at: number;
  /** The outcome once settled, else null. */
  readonly outcome: StartOutcome | null;
  /** orchesjob printed a job id. */
  succeed(jobId: string): void;
  /** orchesjob failed (exit code null: killed, or it could not be run). */
  fail(failure: { readonly exitCode: number | null; readonly error: string }): void;
}

/** The run key of a start argv (`... --run-key K ...`). */
export function runKeyOf(argv: readonly string[]): string {
  const at = argv.indexOf('--run-key');
  const key = at < 0 ? undefined : argv[at + 1];
  if (key === undefined) throw new Error(`no --run-key in ${JSON.stringify(argv)}`);
  return key;
}

/**
 * orchesjob as the dispatcher sees it. Starts wait for the test to settle them; what orchesjob knows
 * about jobs (`jobStartedSince`) and which starts are running (`runningStarts`) are tables the test
 * fills, by run key. `calls` lists every call in order, for tests of what comes before what.
 */
export class FakeDispatchClient implements DispatchClient {
  readonly starts: StartCall[] = [];
  readonly lookups: { readonly runKey: string; readonly sinceMs: number; readonly at: number }[] = [];
  readonly killed: number[] = [];
  /**
   * Every call, in order: `start K`, `jobStartedSince K`, `runningStarts K`, `killStart PID`. The
   * harness shares this array and adds `print EVENT [K]` for each stdout line, so that a test can
   * tell what was printed before what was called.
   */
  readonly calls: string[];
  /**
   * What `jobStartedSince` answers for a run key; a run key not in it has no job (`none`). An `Error`
   * rejects, as the real client does when orchesjob cannot be run at all.
   */
  readonly jobs = new Map<string, JobLookup | Error>();
  /** Pids `runningStarts` finds for a run key's start; `killStart` removes the pid it kills. */
  readonly running = new Map<string, number[]>();
  /** The most starts ever unsettled at once. */
  maxUnsettled = 0;

  constructor(
    readonly bin: string,
    private readonly clock: FakeClock,
    calls: string[] = [],
  ) {
    this.calls = calls;
  }

  /** The `i`th start called (throws when there is none). */
  nth(i: number): StartCall {
    const call = this.starts[i];
    if (call === undefined) throw new Error(`no start #${i}: ${this.starts.length} called`);
    return call;
  }

  /** Starts called and not yet settled. */
  get unsettled(): StartCall[] {
    return this.starts.filter((s) => s.outcome === null);
  }

  startArgv(globalOptions: readonly string[], r: StartSpec): string[] {
    return [this.bin, 'start', '--run-key', r.runKey, ...globalOptions, ...r.orchesjobStartOptions, '--', ...r.command];
  }

  start(argv: readonly string[], timeoutMs: number): Promise<StartOutcome> {
    this.calls.push(`start ${runKeyOf(argv)}`);
    return new Promise<StartOutcome>((resolve) => {
      let outcome: StartOutcome | null = null;
      const settle = (o: StartOutcome) => {
        if (outcome !== null) throw new Error(`start of ${runKeyOf(argv)} settled twice`);
        outcome = o;
        resolve(o);
      };
      this.starts.push({
        argv: [...argv],
        timeoutMs,
        at: this.clock.now(),
        get outcome() {
          return outcome;
        },
        succeed: (jobId) => settle({ ok: true, jobId }),
        fail: ({ exitCode, error }) => settle({ ok: false, exitCode, error }),
      });
      this.maxUnsettled = Math.max(this.maxUnsettled, this.unsettled.length);
    });
  }

  async jobStartedSince(runKey: string, sinceMs: number): Promise<JobLookup> {
    this.calls.push(`jobStartedSince ${runKey}`);
    this.lookups.push({ runKey, sinceMs, at: this.clock.now() });
    const answer = this.jobs.get(runKey) ?? { kind: 'none' };
    if (answer instanceof Error) throw answer;
    return answer;
  }

  runningStarts(argv: readonly string[]): number[] {
    const runKey = runKeyOf(argv);
    this.calls.push(`runningStarts ${runKey}`);
    return [...(this.running.get(runKey) ?? [])];
  }

  killStart(pid: number): void {
    this.calls.push(`killStart ${pid}`);
    this.killed.push(pid);
    for (const [key, pids] of this.running) this.running.set(key, pids.filter((p) => p !== pid));
  }

  async checkCanStartChild(): Promise<string | null> {
    return null;
  }

  async spawner(): Promise<string> {
    return 'fake';
  }
}

// ---------------------------------------------------------------------------------------------
// Driver

/** A parsed JSON line of the dispatcher's stdout or stderr. */
export type Line = Record<string, unknown> & { readonly event: string };

/** A start-up time on a whole second: 2026-05-04T02:00:00Z. */
export const T0 = Date.UTC(2026, 4, 4, 2, 0, 0);
/** Epoch seconds of a fake time. */
export const sec = (ms: number): number => Math.floor(ms / 1000);

export const ORCHESJOB_BIN = '/opt/orchesjob/bin/orchesjob';

/** Settings of the dispatcher under test; a poll interval long enough that no test meets it by accident. */
export const DEFAULTS = {
  dbLabel: 'reserver.sqlite3',
  orchesjobBin: ORCHESJOB_BIN,
  startOptions: [] as string[],
  pollIntervalMs: 600_000,
  errorSleepMs: 5_000,
  startTimeoutMs: 30_000,
  maxConcurrentStarts: 4,
};

export interface ReserveSpec {
  readonly command?: readonly string[];
  readonly options?: readonly string[];
  /** Epoch seconds. */
  readonly notBefore?: number | null;
  readonly expiresAt?: number | null;
  readonly maxAttempts?: number;
  readonly retryDelay?: number;
  /** Who reserves: `cli:reserve` unless given (`gate:<key>` for a reservation made through the gate). */
  readonly actor?: string;
}

export interface Harness {
  readonly clock: FakeClock;
  readonly waker: FakeWaker;
  readonly client: FakeDispatchClient;
  readonly ledger: Ledger;
  /** Set by `start()`. */
  readonly dispatcher: Dispatcher;
  /** True once `run()` resolved. */
  readonly stopped: boolean;
  /** Every stdout line so far, parsed. */
  readonly out: Line[];
  /** Every stderr line so far, parsed. */
  readonly err: Line[];
  /** stdout lines of one event type. */
  linesOf(event: string): Line[];
  /** `Reserve` at the fake time, as `orchesjob-reserver reserve` would. */
  reserve(runKey: string, spec?: ReserveSpec): Promise<Reservation>;
  /** `Claim` at the fake time by another dispatcher (`owner`), as its pass would have. */
  claim(runKey: string, owner: ClaimOwner, argv: readonly string[], startTimeoutMs?: number): Promise<Reservation>;
  /** The projection row of a run key. */
  find(runKey: string): Promise<Reservation | null>;
  /** The ledger's last position: "nothing was written" is this unchanged. */
  position(): Promise<number>;
  /** Build the dispatcher with the fakes, `run()` it (not awaited) and wait until it sleeps. */
  start(options?: Partial<DispatcherOptions>): Promise<void>;
  /** Wait until the loop is asleep (or has returned) and stays so. */
  idle(): Promise<void>;
  /** Move the fake clock to `ms`, then `idle()`. */
  at(ms: number): Promise<void>;
  /** `wake()` the loop, as another process's commit would, then `idle()`. */
  wake(): Promise<void>;
  /** `stop()`, then `idle()`. */
  stop(): Promise<void>;
}

/** Macrotask rounds the loop must stay asleep for `idle()` to believe it. */
const STABLE_ROUNDS = 3;
/** Rounds after which `idle()` gives up: a loop that never sleeps is a bug to report, not to wait for. */
const MAX_ROUNDS = 2_000;

const macrotask = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Register the cleanup and return a factory of harnesses; call once at the top of a test file. */
export function useInProcessDispatcher(): (startMs?: number) => Promise<Harness> {
  const open: { harness: Harness; folder: string; problems: () => string[] }[] = [];
  afterEach(async () => {
    const problems: string[] = [];
    for (const { harness, folder, problems: of } of open.splice(0)) {
      try {
        problems.push(...(await shutDown(harness)), ...of());
      } finally {
        await harness.ledger.close();
        rmSync(folder, { recursive: true, force: true });
      }
    }
    expect(problems, 'dispatchers left running, or run() rejected').toEqual([]);
  });
  return async (startMs = T0) => {
    const folder = mkdtempSync(join(tmpdir(), 'ojr-dispatcher-int-'));
    const ledger = await openLedger(join(folder, 'reserver.sqlite3'));
    const built = harness(ledger, startMs);
    open.push({ ...built, folder });
    return built.harness;
  };
}

/** Stop a dispatcher the test left running; its open starts fail so that the drain can end. */
async function shutDown(h: Harness): Promise<string[]> {
  let dispatcher: Dispatcher;
  try {
    dispatcher = h.dispatcher;
  } catch {
    return []; // never started
  }
  if (h.stopped) return [];
  dispatcher.stop();
  for (const s of h.client.unsettled) s.fail({ exitCode: null, error: 'test over' });
  await h.idle();
  return h.stopped ? [] : ['the dispatcher did not stop after stop()'];
}

function harness(ledger: Ledger, startMs: number): { harness: Harness; problems: () => string[] } {
  const clock = new FakeClock(startMs);
  const waker = new FakeWaker(clock);
  const calls: string[] = [];
  const client = new FakeDispatchClient(ORCHESJOB_BIN, clock, calls);
  const out: Line[] = [];
  const err: Line[] = [];
  const problems: string[] = [];
  let dispatcher: Dispatcher | null = null;
  let stopped = false;
  const parse = (lines: string, into: Line[]) => {
    for (const text of lines.split('\n')) {
      const line = JSON.parse(text) as Line;
      into.push(line);
      if (into === out) calls.push(typeof line['run_key'] === 'string' ? `print ${line.event} ${line['run_key']}` : `print ${line.event}`);
    }
  };

  const idle = async () => {
    for (let round = 0, stable = 0; round < MAX_ROUNDS; round++) {
      const requested = waker.sleeps.length;
      await macrotask();
      if (stopped) return;
      stable = waker.sleeping !== null && waker.sleeps.length === requested ? stable + 1 : 0;
      if (stable >= STABLE_ROUNDS) return;
    }
    throw new Error(`the loop did not settle into a sleep within ${MAX_ROUNDS} rounds (${waker.sleeps.length} sleeps requested)`);
  };

  const h: Harness = {
    clock,
    waker,
    client,
    ledger,
    get dispatcher() {
      if (dispatcher === null) throw new Error('start() the harness first');
      return dispatcher;
    },
    get stopped() {
      return stopped;
    },
    out,
    err,
    linesOf: (event) => out.filter((l) => l.event === event),
    async reserve(runKey, spec = {}) {
      const command = {
        type: 'Reserve',
        runKey,
        command: spec.command ?? ['/jobs/run.sh'],
        orchesjobStartOptions: spec.options ?? [],
        metadata: null,
        notBefore: spec.notBefore ?? null,
        expiresAt: spec.expiresAt ?? null,
        ...(spec.maxAttempts === undefined ? {} : { maxAttempts: spec.maxAttempts }),
        ...(spec.retryDelay === undefined ? {} : { retryDelay: spec.retryDelay }),
      } as const;
      return (await execute(ledger.db, null, command, { actor: spec.actor ?? 'cli:reserve', now: clock.now })).reservation;
    },
    async claim(runKey, owner, argv, startTimeoutMs) {
      const command = { type: 'Claim', owner, argv, ...(startTimeoutMs === undefined ? {} : { startTimeoutMs }) } as const;
      return (await execute(ledger.db, { runKey }, command, { actor: `dispatcher:${owner.dispatcher_id}`, now: clock.now })).reservation;
    },
    find: (runKey) => findByRunKey(ledger.db, runKey),
    position: () => lastPosition(ledger.db),
    async start(options = {}) {
      if (dispatcher !== null) throw new Error('start() once per harness');
      dispatcher = new Dispatcher({
        ...DEFAULTS,
        ...options,
        ledger,
        clock: clock.now,
        client,
        waker,
        out: (text) => parse(text, out),
        err: (text) => parse(text, err),
      });
      dispatcher.run().then(
        () => {
          stopped = true;
        },
        (error: unknown) => {
          stopped = true;
          problems.push(`run() rejected: ${String(error)}`);
        },
      );
      await idle();
    },
    idle,
    async at(ms) {
      clock.set(ms);
      await idle();
    },
    async wake() {
      waker.wake();
      await idle();
    },
    async stop() {
      h.dispatcher.stop();
      await idle();
    },
  };
  return { harness: h, problems: () => problems };
}
