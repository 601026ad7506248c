import { readdirSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Readable } from 'node:stream';
import type { Spawner, StartedChild } from './spawn.js';
import { loadSpawner } from './spawn.js';

/**
 * How this program runs other programs: every process it starts goes through `runProcess`, never
 * through a shell (every argument reaches the program as given), with stdin ignored and stdout and
 * stderr piped.
 */

/** How one process is run. */
export interface RunOptions {
  /**
   * Its own process group: out of reach of a Ctrl-C or a supervisor's signal to ours, and killed as a
   * whole (with whatever it started) when it times out.
   */
  readonly ownGroup?: boolean;
  /** Kill its process group after this long. Without it, the call waits as long as the process runs. */
  readonly timeoutMs?: number;
  /** Keep at most this many bytes of each stream; the rest is read and dropped. Without it, all. */
  readonly maxBytes?: number;
  /**
   * Settle this long after it exited even when its pipes are still open (a grandchild that kept them
   * would otherwise hold the call for as long as it lives). Without it, the call waits for the pipes.
   */
  readonly exitGraceMs?: number;
}

/** What running a process did: its exit and output, or why it never ran. */
export type RunResult =
  | {
      readonly started: true;
      /** Null when it was killed by a signal. */
      readonly code: number | null;
      readonly signal: NodeJS.Signals | null;
      readonly stdout: string;
      readonly stderr: string;
      /** It outlived `timeoutMs`, and its process group was killed. */
      readonly timedOut: boolean;
    }
  | { readonly started: false; readonly error: NodeJS.ErrnoException };

let spawner: Promise<Spawner> | undefined;

/**
 * The spawner (./spawn.ts), loaded on first use: it brings streams and sockets, which commands that
 * usually spawn nothing (`status` without `--include-job`) must not pay for at start-up.
 */
export function loadedSpawner(): Promise<Spawner> {
  spawner ??= loadSpawner();
  return spawner;
}

/** Run `argv` (program first) and collect what it printed. Never rejects. */
export async function runProcess(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [bin, ...args] = argv as [string, ...string[]];
  let chosen: Spawner;
  try {
    chosen = await loadedSpawner();
  } catch (error) {
    return { started: false, error: error as NodeJS.ErrnoException }; // ORCHESJOB_RESERVER_SPAWNER is wrong
  }
  return new Promise((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: RunResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const cannotRun = (error: NodeJS.ErrnoException) => finish({ started: false, error });
    const child = spawnPiped(chosen, bin, args, options.ownGroup === true, cannotRun);
    if (child === null) return;
    timer = watch(child, options, finish);
  });
}

/** A child whose stdout and stderr are pipes. */
type PipedChild = StartedChild & { readonly stdout: Readable; readonly stderr: Readable };

/**
 * Spawn `bin args...` with stdin ignored and stdout and stderr piped; null when it did not start, after
 * `cannotRun` was called (or will be, on the next tick) with the reason. posix_spawn throws every
 * failure. Node's spawn reports some as an 'error' event on the next tick (ENOENT, EACCES, EAGAIN, and
 * EMFILE and ENFILE, which leave the child without pipes) and throws the others (ENOMEM...); the
 * listener is attached before anything else, so none is missed and none goes unhandled.
 */
function spawnPiped(
  spawner: Spawner,
  bin: string,
  args: readonly string[],
  ownGroup: boolean,
  cannotRun: (error: NodeJS.ErrnoException) => void,
): PipedChild | null {
  let child: StartedChild;
  try {
    child = spawner.spawn(bin, args, ownGroup);
  } catch (error) {
    cannotRun(error as NodeJS.ErrnoException);
    return null;
  }
  child.on('error', cannotRun);
  if (!child.stdout || !child.stderr) {
    setImmediate(() => cannotRun(new Error('spawn failed: no pipes to the child (too many open files?)')));
    return null;
  }
  return child as PipedChild;
}

/**
 * Collect `child`'s output and settle with it once its pipes closed (or `exitGraceMs` after it
 * exited); arm its timeout. Returns the timeout's timer, for `finish` to clear.
 */
function watch(child: PipedChild, options: RunOptions, finish: (result: RunResult) => void): NodeJS.Timeout | undefined {
  const stdout = capture(child.stdout, options.maxBytes ?? Infinity);
  const stderr = capture(child.stderr, options.maxBytes ?? Infinity);
  let timedOut = false;
  const settle = (code: number | null, signal: NodeJS.Signals | null) =>
    finish({ started: true, code, signal, stdout: stdout(), stderr: stderr(), timedOut });
  child.on('close', settle);
  const graceMs = options.exitGraceMs;
  if (graceMs !== undefined) {
    child.on('exit', (code, signal) => {
      setTimeout(() => settle(code, signal), graceMs).unref();
    });
  }
  if (options.timeoutMs === undefined) return undefined;
  return setTimeout(() => {
    timedOut = true;
    killGroup(child.pid);
  }, options.timeoutMs);
}

/** Keep the first `maxBytes` of a stream, reading (and dropping) the rest so that the writer never blocks. */
function capture(stream: Readable, maxBytes: number): () => string {
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on('data', (chunk: Buffer) => {
    if (size >= maxBytes) return;
    const kept = size + chunk.length <= maxBytes ? chunk : chunk.subarray(0, maxBytes - size);
    chunks.push(kept);
    size += kept.length;
  });
  return () => Buffer.concat(chunks).toString('utf8');
}

/**
 * SIGKILL the process group led by `pid`, and `pid` itself in case it leads none (a start orphaned by
 * a killed dispatcher is found by its pid, not known to lead its group). Gone already is fine.
 */
export function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // not a group leader, or already gone
    }
  }
}

/**
 * Processes running `argv` (matched on /proc: the arguments after the program, with the program's name
 * before them, so that `#!/usr/bin/env python3` interpreters match too). Empty where /proc is not
 * available.
 */
export function processesRunning(argv: readonly string[]): number[] {
  const [bin, ...args] = argv;
  if (bin === undefined) return [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  return pids.filter((pid) => runs(pid, bin, args)).map(Number);
}

/** Whether process `pid` runs `bin args...` (false when it exited meanwhile). */
function runs(pid: string, bin: string, args: readonly string[]): boolean {
  let cmdline: string[];
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return false;
  }
  if (cmdline.at(-1) === '') cmdline.pop();
  const head = cmdline.length - args.length;
  if (head < 1) return false;
  if (!args.every((arg, i) => cmdline[head + i] === arg)) return false;
  return cmdline.slice(0, head).some((part) => basename(part) === basename(bin));
}
