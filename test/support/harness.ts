/**
 * The end-to-end harness: every `*.e2e.test.ts` runs the built CLI (`dist/cli.js`) and the orchesjob
 * stand-in as real processes through this module, each test in its own sandbox, and reads back what they
 * left.
 *
 * A sandbox is a fresh temp folder that is the CLI's home (`ORCHESJOB_RESERVER_HOME`), so the CLI's
 * default database is `<dir>/reserver.sqlite3`, and whose `<dir>/oj` is the stand-in's state folder
 * (`ORCHESJOB_STANDIN_DIR`: its jobs, faults.json, invocations.jsonl, executions.jsonl). Short-lived
 * calls run in the latest sandbox unless told otherwise; helpers that name a database file take that
 * file, helpers that read the stand-in's records take the sandbox.
 *
 * Importing this module registers an `afterEach` (vitest collects the top-level hooks of an imported
 * module into the importing file's root suite) that
 * - fails the test when a process spawned here is still running, or when an orchesjob stand-in that
 *   any process started in a sandbox is still alive (grandchildren leak too), and SIGKILLs them;
 * - fails the test when a database handle opened here (`withDb`, `ledgerRows`, `withLedger`) is open;
 * - removes every sandbox.
 * The hook checks everything spawned since the previous test, so tests within a file run one at a time
 * (no `describe.concurrent`); run processes concurrently inside a test with `Promise.all` or `pool`.
 */
import type { ChildProcess, ChildProcessByStdio } from 'node:child_process';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, expect } from 'vitest';
import type { Ledger } from '../../src/db/open.js';
import type { EventRow } from '../../src/events/store.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, '..', '..');
export const CLI = join(ROOT, 'dist', 'cli.js');
export const STANDIN = join(HERE, 'orchesjob-standin.mjs');

/** Longest a short-lived process may run before it is killed and the call fails. */
const PROCESS_TIMEOUT_MS = 20_000;

/** A Crockford base32 ULID. */
export const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
/** `ts`: ISO 8601 with an explicit offset (the dispatcher prints local time with its offset). */
export const ISO_WITH_OFFSET = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$/;

export function sleep(ms: number): Promise<void> {
  return new Promise((resolvePromise) => setTimeout(resolvePromise, ms));
}

// ---------------------------------------------------------------------------
// Sandboxes
// ---------------------------------------------------------------------------

export interface Sandbox {
  /** The home folder (its real path, so that it matches the paths the CLI prints). */
  readonly dir: string;
  /** The database: `<dir>/reserver.sqlite3`, the CLI's default in this home. */
  readonly db: string;
  /** The stand-in's state folder: `<dir>/oj`. */
  readonly oj: string;
}

const sandboxes: Sandbox[] = [];
let latest: Sandbox | undefined;

/** The sandbox layout of a home folder, which need not exist (to test what a command creates). */
export function sandboxAt(dir: string): Sandbox {
  return { dir, db: join(dir, 'reserver.sqlite3'), oj: join(dir, 'oj') };
}

/** A fresh sandbox, removed after the test. The latest one is where `runCli` runs by default. */
export function sandbox(): Sandbox {
  const sb = sandboxAt(realpathSync(mkdtempSync(join(tmpdir(), 'orchesjob-reserver-e2e-'))));
  sandboxes.push(sb);
  latest = sb;
  return sb;
}

/**
 * The environment of every spawned process: no stray ORCHESJOB_* from the caller, node on PATH, and no
 * NODE_EXTRA_CA_CERTS: no process here speaks TLS, and Node reads and parses that bundle at every start
 * (40 of the 60 ms CPU of a `node -e ''` where a system bundle is set, thousands of starts per run).
 */
export function envFor(sb: Sandbox, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ORCHESJOB') && k !== 'NODE_EXTRA_CA_CERTS') env[k] = v;
  // The stand-in's shebang is `#!/usr/bin/env node`: make sure it finds this node.
  env['PATH'] = [dirname(process.execPath), process.env['PATH'] ?? ''].join(delimiter);
  env['ORCHESJOB_RESERVER_HOME'] = sb.dir;
  env['ORCHESJOB_BIN'] = STANDIN;
  env['ORCHESJOB_STANDIN_DIR'] = sb.oj;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Write the stand-in's fault table. */
export function writeFaults(sb: Sandbox, faults: Record<string, Record<string, unknown>>): void {
  mkdirSync(sb.oj, { recursive: true });
  writeFileSync(join(sb.oj, 'faults.json'), JSON.stringify(faults));
}

// ---------------------------------------------------------------------------
// The stand-in's records
// ---------------------------------------------------------------------------

/** One line of the stand-in's `invocations.jsonl`. */
export interface Invocation {
  readonly argv: string[];
  readonly pid: number;
  readonly ts_ms: number;
}

/** One line of the stand-in's `executions.jsonl`: a job's command ran. */
export interface Execution {
  readonly job_id: string;
  readonly run_key: string;
  readonly command: string[];
  readonly ts_ms: number;
}

function readJsonl<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

/** Every orchesjob stand-in invocation in a sandbox, in order. */
export function invocations(sb: Sandbox): Invocation[] {
  return readJsonl<Invocation>(join(sb.oj, 'invocations.jsonl'));
}

/** The `start` invocations, optionally of one run key. */
export function startInvocations(sb: Sandbox, runKey?: string): Invocation[] {
  return invocations(sb).filter(
    (i) => i.argv[0] === 'start' && (runKey === undefined || (i.argv[1] === '--run-key' && i.argv[2] === runKey)),
  );
}

export function executions(sb: Sandbox): Execution[] {
  return readJsonl<Execution>(join(sb.oj, 'executions.jsonl'));
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

const children = new Set<ChildProcess>();

/** Whether `pid` is a live process (a zombie is not: nobody may reap orphans here). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

/** A live process that is an orchesjob stand-in (not a zombie, its pid not reused by something else). */
export function standinAlive(pid: number): boolean {
  if (pid === process.pid || !pidAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('orchesjob-standin');
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

/** Wait until the stand-in `pid` is gone; false when it is still alive after `timeoutMs`. */
export async function waitPidGone(pid: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (standinAlive(pid)) {
    if (Date.now() > until) return false;
    await sleep(25);
  }
  return true;
}

export interface RunOptions {
  /** The sandbox to run in (its home, its stand-in folder); default: the latest `sandbox()`. */
  readonly home?: Sandbox;
  /** Added to the sandbox's environment; `undefined` removes a variable. */
  readonly env?: Record<string, string | undefined>;
  /** Default: the home, or the temp root while the home does not exist. */
  readonly cwd?: string;
  /** Written to stdin, which is then closed (stdin is empty otherwise). */
  readonly input?: string;
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as JSON, when it is JSON. */
  readonly json?: any;
  /** The last non-empty stderr line parsed as JSON, when it is (the `{"error": ...}` line). */
  readonly lastStderrJson?: any;
  /** When the process exited (Date.now()). */
  readonly endedAtMs: number;
}

/** A child with stdin, stdout and stderr piped. */
export type PipedChild = ChildProcessByStdio<Writable, Readable, Readable>;

/** Spawn `node script ...args` in a sandbox, tracked by the leak check; stdin gets `input` and is closed. */
function spawnNode(script: string, args: readonly string[], opts: RunOptions): PipedChild {
  const home = opts.home ?? latest ?? sandbox();
  const child = spawn(process.execPath, [script, ...args], {
    cwd: opts.cwd ?? (existsSync(home.dir) ? home.dir : tmpdir()),
    env: envFor(home, opts.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  child.stdin.on('error', () => undefined); // the process may exit before reading stdin
  child.stdin.end(opts.input ?? '');
  return child;
}

/** Run `node script ...args` to its end (failing after PROCESS_TIMEOUT_MS). */
function runNode(script: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawnNode(script, args, opts);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, PROCESS_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const endedAtMs = Date.now();
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) {
        reject(new Error(`${script} ${args.join(' ')} did not exit within ${PROCESS_TIMEOUT_MS} ms\nstdout=${stdout}\nstderr=${stderr}`));
        return;
      }
      resolvePromise({ code, signal, stdout, stderr, json: parseOrUndefined(stdout), lastStderrJson: lastLineJson(stderr), endedAtMs });
    });
  });
}

/** Start the built CLI and return at once (for a long-running command: read its output, stop it yourself). */
export function spawnCli(args: readonly string[], opts: RunOptions = {}): PipedChild {
  return spawnNode(CLI, args, opts);
}

/** Run the built CLI to its end: `node dist/cli.js ...args`. */
export function runCli(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runNode(CLI, args, opts);
}

/** Run the orchesjob stand-in directly (to create jobs the way the dispatcher would). */
export function runStandin(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runNode(STANDIN, args, opts);
}

/** A successful CLI call's JSON document (fails the test otherwise). */
export async function cliOk(sb: Sandbox, args: readonly string[]): Promise<any> {
  const r = await runCli(args, { home: sb });
  expect({ code: r.code, stderr: r.stderr, args }).toEqual({ code: 0, stderr: '', args });
  expect(r.json).toBeDefined();
  return r.json;
}

/** `reserve --db DB --run-key K [extra...] -- command...`; returns the whole result (with `endedAtMs`). */
export async function reserve(
  sb: Sandbox,
  runKey: string,
  command: readonly string[] = ['echo', runKey],
  extra: readonly string[] = [],
): Promise<RunResult & { reservation: any }> {
  const r = await runCli(['reserve', '--db', sb.db, '--orchesjob-bin', STANDIN, '--run-key', runKey, ...extra, '--', ...command], { home: sb });
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  expect(r.json?.created).toBe(true);
  return { ...r, reservation: r.json.reservation };
}

/** `status --run-key K`'s reservation object. */
export async function status(sb: Sandbox, runKey: string): Promise<any> {
  const doc = await cliOk(sb, ['status', '--db', sb.db, '--orchesjob-bin', STANDIN, '--run-key', runKey]);
  return doc.reservation;
}

/** Run up to `limit` async tasks at once (spawning 30 node processes at once swamps a small machine). */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function parseOrUndefined(text: string): unknown {
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The last non-empty line of `text`, parsed as JSON, or undefined. */
export function lastLineJson(text: string): unknown {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const last = lines[lines.length - 1];
  return last === undefined ? undefined : parseOrUndefined(last);
}

// ---------------------------------------------------------------------------
// The dispatcher process
// ---------------------------------------------------------------------------

export type Line = Record<string, any> & { event: string };

export interface DispatcherOptions {
  readonly env?: Record<string, string | undefined>;
  /** The orchesjob executable (`--orchesjob-bin` and ORCHESJOB_BIN); default: the stand-in. */
  readonly bin?: string;
}

/**
 * A running `orchesjob-reserver run`, whose stdout JSON Lines are read as they arrive. Built on a child
 * spawned elsewhere too (under `prlimit`, say): the leak check tracks it either way.
 */
export class DispatcherProcess {
  /** Every stdout line that parsed as a JSON object, in order. */
  readonly lines: Line[] = [];
  /** Every stdout line, as text. */
  readonly rawLines: string[] = [];
  /** stdout lines that are not a JSON object. */
  readonly nonJson: string[] = [];
  /** When each line in `lines` arrived (Date.now()). */
  readonly arrivedAtMs: number[] = [];
  stderr = '';
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  exitedAtMs: number | null = null;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private buffer = '';
  private listeners = new Set<() => void>();

  constructor(
    readonly child: ChildProcess,
    readonly args: readonly string[],
  ) {
    children.add(child);
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) !== -1) {
        const text = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.rawLines.push(text);
        const parsed = parseOrUndefined(text);
        if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
          this.lines.push(parsed as Line);
          this.arrivedAtMs.push(Date.now());
        } else {
          this.nonJson.push(text);
        }
      }
      this.notify();
    });
    child.stderr?.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolvePromise) => {
      child.on('close', (code, signal) => {
        if (this.buffer !== '') {
          this.rawLines.push(this.buffer);
          this.nonJson.push(this.buffer); // a line without its newline
          this.buffer = '';
        }
        this.exitCode = code;
        this.exitSignal = signal;
        this.exitedAtMs = Date.now();
        this.notify();
        resolvePromise({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get running(): boolean {
    return this.exitedAtMs === null;
  }

  /** Lines of one event name. */
  events(name: string): Line[] {
    return this.lines.filter((l) => l.event === name);
  }

  /** The first line matching `predicate` (already printed or to come). */
  waitForLine(predicate: (line: Line) => boolean, timeoutMs = 5000): Promise<Line> {
    return this.waitFor(() => this.lines.find(predicate), timeoutMs, 'a matching line');
  }

  /** Wait until `count` lines match. */
  waitForCount(predicate: (line: Line) => boolean, count: number, timeoutMs = 10_000): Promise<Line[]> {
    return this.waitFor(
      () => {
        const found = this.lines.filter(predicate);
        return found.length >= count ? found : undefined;
      },
      timeoutMs,
      `${count} matching lines`,
    );
  }

  private waitFor<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolvePromise, reject) => {
      const attempt = (): boolean => {
        const found = check();
        if (found !== undefined) {
          done();
          resolvePromise(found);
          return true;
        }
        if (!this.running) {
          done();
          reject(new Error(`dispatcher exited (code ${this.exitCode}, signal ${this.exitSignal}) before ${what}\n${this.dump()}`));
          return true;
        }
        return false;
      };
      const listener = () => void attempt();
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.dump()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      if (!attempt()) this.listeners.add(listener);
    });
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  dump(): string {
    return `stdout:\n${this.rawLines.join('\n')}\nstderr:\n${this.stderr}`;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM and wait for the exit (SIGKILL and fail after `timeoutMs`). */
  async stop(timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.signal('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolvePromise) => {
      timer = setTimeout(() => resolvePromise('timeout'), timeoutMs);
    });
    const result = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.signal('SIGKILL');
      await this.exited;
      throw new Error(`dispatcher did not exit within ${timeoutMs} ms of SIGTERM\n${this.dump()}`);
    }
    return result;
  }
}

/**
 * Spawn `node dist/cli.js run --db DB --orchesjob-bin BIN ...args` and return at once, so that it can
 * be killed during start-up too.
 */
export function spawnDispatcher(sb: Sandbox, args: readonly string[] = [], opts: DispatcherOptions = {}): DispatcherProcess {
  const bin = opts.bin ?? STANDIN;
  const full = ['run', '--db', sb.db, '--orchesjob-bin', bin, ...args];
  return new DispatcherProcess(spawnCli(full, { home: sb, env: { ORCHESJOB_BIN: bin, ...opts.env } }), full);
}

/** `spawnDispatcher`, then wait for its `reserver_started` line. */
export async function startDispatcher(sb: Sandbox, args: readonly string[] = [], opts: DispatcherOptions = {}): Promise<DispatcherProcess> {
  const d = spawnDispatcher(sb, args, opts);
  await d.waitForLine((l) => l.event === 'reserver_started', 10_000);
  return d;
}

/** Assert the invariants of every dispatcher's stdout: JSON objects only, each with event/ts/ts_epoch. */
export function expectWellFormed(d: DispatcherProcess): void {
  expect(d.nonJson, 'stdout lines that are not a JSON object').toEqual([]);
  for (const line of d.lines) {
    expect(typeof line.event, JSON.stringify(line)).toBe('string');
    expect(line.ts, JSON.stringify(line)).toMatch(ISO_WITH_OFFSET);
    expect(Number.isInteger(line.ts_epoch), JSON.stringify(line)).toBe(true);
    expect(Date.parse(line.ts) / 1000, JSON.stringify(line)).toBe(line.ts_epoch);
  }
  const ledgerLines = d.lines.filter((l) => l.position !== undefined);
  for (const line of ledgerLines) {
    expect(Number.isInteger(line.position), JSON.stringify(line)).toBe(true);
    expect(line.event_id, JSON.stringify(line)).toMatch(ULID);
  }
  const positions = ledgerLines.map((l) => l.position as number);
  for (let i = 1; i < positions.length; i++) {
    expect(positions[i], `positions in print order: ${positions.join(',')}`).toBeGreaterThan(positions[i - 1] as number);
  }
}

// ---------------------------------------------------------------------------
// The database
// ---------------------------------------------------------------------------

/** A `reservation_events` row, as stored: the ledger's own row type. */
export type { EventRow } from '../../src/events/store.js';

/** A `reservations` row, as stored (the columns the tests name; the rest loosely typed). */
export type ReservationRow = Record<string, unknown> & {
  reservation_id: string;
  run_key: string;
  reservation_status: string;
  version: number;
};

export interface LedgerRows {
  events: EventRow[];
  reservations: ReservationRow[];
}

const openHandles = new Set<{ readonly name: string; close(): unknown }>();

/** Run `fn` with a read-only handle on the database at `dbPath`, closed afterwards. */
export function withDb<T>(dbPath: string, fn: (db: Database.Database) => T): T {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  openHandles.add(db);
  try {
    return fn(db);
  } finally {
    db.close();
    openHandles.delete(db);
  }
}

/** Every ledger event, in position order. */
export function ledgerEvents(dbPath: string): EventRow[] {
  return withDb(dbPath, (db) => db.prepare('SELECT * FROM reservation_events ORDER BY position').all() as EventRow[]);
}

/** Both tables, the reservations by creation. */
export function ledgerRows(dbPath: string): LedgerRows {
  return withDb(dbPath, (db) => ({
    events: db.prepare('SELECT * FROM reservation_events ORDER BY position').all() as EventRow[],
    reservations: db.prepare('SELECT * FROM reservations ORDER BY created_at, reservation_id').all() as ReservationRow[],
  }));
}

/**
 * Open the database through the project's own `openLedger` (migrations included), run `fn`, close it.
 * For seeding states no CLI command reaches (DISPATCHING, DISPATCHED) through the real write path.
 */
export async function withLedger<T>(dbPath: string, fn: (ledger: Ledger) => Promise<T>): Promise<T> {
  const { openLedger } = await import('../../src/db/open.js'); // only the files that seed pay for loading src
  const ledger = await openLedger(dbPath);
  const handle = { name: dbPath, close: () => ledger.close() };
  openHandles.add(handle);
  try {
    return await fn(ledger);
  } finally {
    await ledger.close();
    openHandles.delete(handle);
  }
}

/** sha256 of a file's bytes. */
export function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** The files in a folder, sorted (to see `-wal`/`-shm`/`-journal` appear). */
export function filesIn(folder: string): string[] {
  return readdirSync(folder).sort();
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/** Recursively rebuild objects with sorted keys (Python's `sort_keys=True`). */
export function sortKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeysDeep);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeysDeep((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

/** The exact text the contract wants for a document: sorted keys, 2-space indent, trailing newline. */
export function canonical(value: unknown): string {
  return `${JSON.stringify(sortKeysDeep(value), null, 2)}\n`;
}

/** Strip ANSI colour codes (citty colours its usage text). */
export function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*m/g, '');
}

// ---------------------------------------------------------------------------
// After each test: no leaked process, no open database, no sandbox left
// ---------------------------------------------------------------------------

afterEach(() => {
  const problems: string[] = [];
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      problems.push(`child process ${child.pid} (${child.spawnargs.slice(1, 4).join(' ')}) is still running`);
      child.kill('SIGKILL');
    }
  }
  children.clear();
  for (const sb of sandboxes) {
    for (const inv of invocations(sb)) {
      if (!standinAlive(inv.pid)) continue;
      problems.push(`orchesjob stand-in ${inv.pid} (${inv.argv.join(' ')}) is still running`);
      try {
        process.kill(inv.pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
    }
  }
  for (const handle of openHandles) {
    problems.push(`database ${handle.name} is still open`);
    try {
      void handle.close();
    } catch {
      /* best effort */
    }
  }
  openHandles.clear();
  for (const sb of sandboxes.splice(0)) rmSync(sb.dir, { recursive: true, force: true });
  latest = undefined;
  expect(problems, 'leaked processes or database handles').toEqual([]);
});
