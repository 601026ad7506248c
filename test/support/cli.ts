/**
 * Helpers for the end-to-end tests: spawn the built CLI (`dist/cli.js`) as a real process against a
 * real SQLite file in a fresh temp folder per test, and read that file back.
 *
 * Importing this module registers an `afterEach` hook (vitest collects top-level hooks of imported
 * modules into the importing file's suite) that
 * - fails the test when a process spawned through `runCli`/`runStandin` is still running, or when
 *   an orchesjob stand-in the CLI started is still alive (grandchildren leak too), killing them;
 * - fails the test when a database handle opened through `ledgerRows`/`withLedger` is still open;
 * - removes every temp folder `tempHome()` created.
 * Tests must run one at a time within a file (no `describe.concurrent`): the hook checks everything
 * spawned since the previous test. Run processes concurrently inside a test with `Promise.all`.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, expect } from 'vitest';
import type { Ledger } from '../../src/db/open.js';
import { openLedger } from '../../src/db/open.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, '..', '..');
const DIST = join(ROOT, 'dist');
export const CLI = join(DIST, 'cli.js');
export const STANDIN = join(HERE, 'orchesjob-standin.mjs');

/** Longest a single spawned process may run before it is killed and the call fails. */
const PROCESS_TIMEOUT_MS = 20_000;

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as JSON, when it is JSON. */
  readonly json?: any;
  /** The last non-empty stderr line parsed as JSON, when it is (the `{"error": ...}` line). */
  readonly lastStderrJson?: any;
}

export interface RunOptions {
  /** Added to the default environment; `undefined` removes a variable. */
  readonly env?: Record<string, string | undefined>;
  readonly cwd?: string;
  /** Written to stdin, which is then closed (stdin is empty otherwise). */
  readonly input?: string;
  /** The home (`ORCHESJOB_RESERVER_HOME`); default: the test's current `tempHome()`. */
  readonly home?: string;
}

// ---------------------------------------------------------------------------
// Temp folders
// ---------------------------------------------------------------------------

const homes: string[] = [];
let currentHome: string | undefined;

/**
 * A fresh temp folder, removed after the test. The latest one is the default home of `runCli`.
 * Its real path (no symlinks), so that it matches the paths the CLI prints.
 */
export function tempHome(): string {
  const home = realpathSync(mkdtempSync(join(tmpdir(), 'orchesjob-reserver-e2e-')));
  homes.push(home);
  currentHome = home;
  return home;
}

function homeFor(opts: RunOptions): string {
  return opts.home ?? currentHome ?? tempHome();
}

/** The default database of a home. */
export function dbPathOf(home: string): string {
  return join(home, 'reserver.sqlite3');
}

/** The stand-in's state folder for a home. */
export function standinDirOf(home: string): string {
  return join(home, 'orchesjob-standin');
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

const children = new Set<ChildProcess>();

/** The environment every spawned process gets: no stray ORCHESJOB_* from the caller's shell. */
function baseEnv(home: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ORCHESJOB')) env[k] = v;
  // The stand-in's shebang is `#!/usr/bin/env node`: make sure it finds this node.
  env['PATH'] = [dirname(process.execPath), process.env['PATH'] ?? ''].join(delimiter);
  env['ORCHESJOB_RESERVER_HOME'] = home;
  env['ORCHESJOB_BIN'] = STANDIN;
  env['ORCHESJOB_STANDIN_DIR'] = standinDirOf(home);
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

function runProcess(file: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  const home = homeFor(opts);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, {
      // The home may not exist yet (tests of what a command creates): then run from the temp root.
      cwd: opts.cwd ?? (existsSync(home) ? home : tmpdir()),
      env: baseEnv(home, opts.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.stdin.on('error', () => undefined); // the process may exit before reading stdin
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), PROCESS_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL' && code === null) {
        reject(new Error(`${file} ${args.join(' ')} did not exit within ${PROCESS_TIMEOUT_MS} ms`));
        return;
      }
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      resolvePromise({ code, signal, stdout, stderr, json: parseOrUndefined(stdout), lastStderrJson: lastLineJson(stderr) });
    });
  });
}

/** Run the built CLI: `node dist/cli.js ...args`. */
export function runCli(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runProcess(process.execPath, [CLI, ...args], opts);
}

/** Run the orchesjob stand-in directly (to create jobs the way the dispatcher would). */
export function runStandin(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runProcess(process.execPath, [STANDIN, ...args], opts);
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

/** One line of the stand-in's `invocations.jsonl`. */
export interface Invocation {
  readonly argv: string[];
  readonly pid: number;
  readonly ts_ms: number;
}

/** Every orchesjob stand-in invocation in a home, in order. */
export function invocations(home: string): Invocation[] {
  const file = join(standinDirOf(home), 'invocations.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Invocation);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---------------------------------------------------------------------------
// The database
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

const openHandles = new Set<{ close(): unknown; name: string }>();

/** Both tables of the database at `dbPath`, read through a read-only handle that is closed again. */
export function ledgerRows(dbPath: string): LedgerRows {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  openHandles.add(db);
  try {
    return {
      events: db.prepare('SELECT * FROM reservation_events ORDER BY position').all() as EventRow[],
      reservations: db
        .prepare('SELECT * FROM reservations ORDER BY created_at, reservation_id')
        .all() as ReservationRow[],
    };
  } finally {
    db.close();
    openHandles.delete(db);
  }
}

/**
 * Open the database through the project's own `openLedger` (migrations included), run `fn`, close it.
 * For seeding states no CLI command reaches yet (DISPATCHING, DISPATCHED) through the real write path.
 */
export async function withLedger<T>(dbPath: string, fn: (ledger: Ledger) => Promise<T>): Promise<T> {
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
// Output helpers
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

/** A Crockford base32 ULID. */
export const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

// ---------------------------------------------------------------------------
// After each test: no leaked process, no open database, no temp folder left
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
  for (const home of homes) {
    for (const inv of invocations(home)) {
      if (inv.pid !== process.pid && pidAlive(inv.pid) && !pidReusedByOther(inv.pid)) {
        problems.push(`orchesjob stand-in ${inv.pid} (${inv.argv.join(' ')}) is still running`);
        try {
          process.kill(inv.pid, 'SIGKILL');
        } catch {
          /* gone meanwhile */
        }
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
  for (const home of homes.splice(0)) rmSync(home, { recursive: true, force: true });
  currentHome = undefined;
  expect(problems, 'leaked processes or database handles').toEqual([]);
});

/** A stand-in's pid may have been reused by an unrelated process since; that is no leak. */
function pidReusedByOther(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return !cmdline.includes('orchesjob-standin');
  } catch {
    return false; // no /proc (macOS): trust kill(0)
  }
}
