/**
 * Helpers for the dispatcher's end-to-end tests (`test/e2e/dispatcher*.e2e.test.ts`): a sandbox folder
 * per test (SQLite file + stand-in state folder), the built CLI's `run` as a real long-lived process whose
 * stdout JSON Lines are read incrementally, short-lived CLI calls (`reserve`, `status`, ...), and readers
 * for the stand-in's `invocations.jsonl` / `executions.jsonl` and the ledger (read-only better-sqlite3).
 *
 * `useDispatcherHarness()` (call it once at the top of a test file) registers an `afterEach` that
 * - fails the test when a process it spawned is still running (and SIGKILLs it),
 * - fails the test when an orchesjob stand-in recorded in a sandbox is still alive (and SIGKILLs it),
 * - fails the test when a database handle opened by `ledgerEvents`/`withDb` is still open,
 * - removes every sandbox folder.
 * Tests within a file run one at a time (no `describe.concurrent`).
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, expect } from 'vitest';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');
export const STANDIN = path.join(HERE, 'orchesjob-standin.mjs');

/** Longest a short-lived CLI call may take before it is killed and the call fails. */
const CLI_TIMEOUT_MS = 15_000;

/** `ts`: ISO 8601 with an explicit offset (the dispatcher prints local time with its offset). */
export const ISO_WITH_OFFSET = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$/;
/** A Crockford base32 ULID. */
export const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

// ---------------------------------------------------------------------------
// Sandboxes
// ---------------------------------------------------------------------------

export interface Sandbox {
  /** The temp folder (real path). */
  readonly dir: string;
  /** `<dir>/reserver.sqlite3` */
  readonly db: string;
  /** `<dir>/oj`: ORCHESJOB_STANDIN_DIR */
  readonly oj: string;
}

const sandboxes: Sandbox[] = [];

export function sandbox(): Sandbox {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'orchesjob-dispatcher-e2e-')));
  const sb = { dir, db: path.join(dir, 'reserver.sqlite3'), oj: path.join(dir, 'oj') };
  sandboxes.push(sb);
  return sb;
}

/** The environment of every spawned process: no stray ORCHESJOB_* from the caller, node on PATH. */
export function envFor(sb: Sandbox, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ORCHESJOB')) env[k] = v;
  // The stand-in's shebang is `#!/usr/bin/env node`: make sure it finds this node.
  env['PATH'] = [path.dirname(process.execPath), process.env['PATH'] ?? ''].join(path.delimiter);
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
  fs.mkdirSync(sb.oj, { recursive: true });
  fs.writeFileSync(path.join(sb.oj, 'faults.json'), JSON.stringify(faults));
}

// ---------------------------------------------------------------------------
// Stand-in records
// ---------------------------------------------------------------------------

export interface Invocation {
  readonly argv: string[];
  readonly pid: number;
  readonly ts_ms: number;
}

export interface Execution {
  readonly job_id: string;
  readonly run_key: string;
  readonly command: string[];
  readonly ts_ms: number;
}

function readJsonl<T>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

export function invocations(sb: Sandbox): Invocation[] {
  return readJsonl<Invocation>(path.join(sb.oj, 'invocations.jsonl'));
}

/** The `start` invocations, optionally of one run key. */
export function startInvocations(sb: Sandbox, runKey?: string): Invocation[] {
  return invocations(sb).filter(
    (i) => i.argv[0] === 'start' && (runKey === undefined || (i.argv[1] === '--run-key' && i.argv[2] === runKey)),
  );
}

export function executions(sb: Sandbox): Execution[] {
  return readJsonl<Execution>(path.join(sb.oj, 'executions.jsonl'));
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
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

/** A live process that is an orchesjob stand-in (its pid was not reused by something else). */
function standinAlive(pid: number): boolean {
  if (!pidAlive(pid)) return false;
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('orchesjob-standin');
  } catch {
    return true;
  }
}

/** Wait until `pid` is gone; false when it is still alive after `timeoutMs`. */
export async function waitPidGone(pid: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (standinAlive(pid)) {
    if (Date.now() > until) return false;
    await sleep(25);
  }
  return true;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as JSON, when it is JSON. */
  readonly json: any;
  /** When the process exited (Date.now()). */
  readonly endedAtMs: number;
}

/** Run `node dist/cli.js ...args` to completion. */
export function cli(sb: Sandbox, args: readonly string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: envFor(sb, env), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, CLI_TIMEOUT_MS);
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
        reject(new Error(`cli ${args.join(' ')} did not exit within ${CLI_TIMEOUT_MS} ms\nstdout=${stdout}\nstderr=${stderr}`));
        return;
      }
      let json: any;
      try {
        json = stdout.trim() === '' ? undefined : JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, signal, stdout, stderr, json, endedAtMs });
    });
  });
}

/** A successful CLI call's JSON document (fails the test otherwise). */
export async function cliOk(sb: Sandbox, args: readonly string[]): Promise<any> {
  const r = await cli(sb, args);
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
): Promise<CliResult & { reservation: any }> {
  const r = await cli(sb, ['reserve', '--db', sb.db, '--orchesjob-bin', STANDIN, '--run-key', runKey, ...extra, '--', ...command]);
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

// ---------------------------------------------------------------------------
// The dispatcher process
// ---------------------------------------------------------------------------

export type Line = Record<string, any> & { event: string };

export interface StartOptions {
  readonly env?: Record<string, string | undefined>;
  /** Wait for `reserver_started` before returning (default true). */
  readonly waitStarted?: boolean;
}

/** A running `orchesjob-reserver run`. */
export class DispatcherProcess {
  /** Every stdout line that parsed as JSON, in order. */
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
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
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
    this.exited = new Promise((resolve) => {
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
        resolve({ code, signal });
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
    return new Promise((resolve, reject) => {
      const attempt = (): boolean => {
        const found = check();
        if (found !== undefined) {
          done();
          resolve(found);
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
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
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
 * Start `node dist/cli.js run --db DB --orchesjob-bin STANDIN ...args` and (by default) wait for its
 * `reserver_started` line.
 */
export async function startDispatcher(sb: Sandbox, args: readonly string[] = [], opts: StartOptions = {}): Promise<DispatcherProcess> {
  const full = ['run', '--db', sb.db, '--orchesjob-bin', STANDIN, ...args];
  const child = spawn(process.execPath, [CLI, ...full], {
    cwd: ROOT,
    env: envFor(sb, opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const d = new DispatcherProcess(child, full);
  if (opts.waitStarted ?? true) await d.waitForLine((l) => l.event === 'reserver_started', 10_000);
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
// The ledger, read-only
// ---------------------------------------------------------------------------

export interface EventRow {
  position: number;
  event_id: string;
  reservation_id: string;
  version: number;
  run_key: string;
  type: string;
  data: string;
  recorded_at: number;
  recorded_at_ms: number;
  actor: string;
}

const openHandles = new Set<Database.Database>();

/** Run `fn` with a read-only handle on the sandbox's database, closed afterwards. */
export function withDb<T>(sb: Sandbox, fn: (db: Database.Database) => T): T {
  const db = new Database(sb.db, { readonly: true, fileMustExist: true });
  openHandles.add(db);
  try {
    return fn(db);
  } finally {
    db.close();
    openHandles.delete(db);
  }
}

/** Every ledger event, in position order. */
export function ledgerEvents(sb: Sandbox): EventRow[] {
  return withDb(sb, (db) => db.prepare('SELECT * FROM reservation_events ORDER BY position').all() as EventRow[]);
}

// ---------------------------------------------------------------------------
// After each test
// ---------------------------------------------------------------------------

export function useDispatcherHarness(): void {
  afterEach(async () => {
    const problems: string[] = [];
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        problems.push(`child process ${child.pid} (${child.spawnargs.slice(2, 4).join(' ')}) is still running`);
        child.kill('SIGKILL');
      }
    }
    children.clear();
    for (const sb of sandboxes) {
      for (const inv of invocations(sb)) {
        if (standinAlive(inv.pid)) {
          problems.push(`orchesjob stand-in ${inv.pid} (${inv.argv.join(' ')}) is still running`);
          try {
            process.kill(inv.pid, 'SIGKILL');
          } catch {
            /* gone meanwhile */
          }
        }
      }
    }
    for (const db of openHandles) {
      problems.push(`database ${db.name} is still open`);
      db.close();
    }
    openHandles.clear();
    for (const sb of sandboxes.splice(0)) fs.rmSync(sb.dir, { recursive: true, force: true });
    expect(problems, 'leaked processes or database handles').toEqual([]);
  });
}
