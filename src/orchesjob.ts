import type { ChildProcess, SpawnOptions } from 'node:child_process';
import type { Readable } from 'node:stream';
import { ReserverError } from './errors.js';
import { writeStdout } from './output.js';

/**
 * Calls to the `orchesjob` program, always without a shell: every argument reaches it as given.
 */

/** What one orchesjob call did. `code` is null when it was killed by a signal. */
export interface OrchesjobOutcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run `bin args...`, collect its output. A missing executable is a general error naming it. */
export async function callOrchesjob(bin: string, args: readonly string[]): Promise<OrchesjobOutcome> {
  // Loaded here: child_process brings streams and sockets, which `status` without a job never needs.
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const cannotRun = (error: NodeJS.ErrnoException) =>
      reject(
        new ReserverError(
          'GENERAL',
          error.code === 'ENOENT'
            ? `orchesjob executable not found: ${bin} (set --orchesjob-bin or ORCHESJOB_BIN)`
            : `cannot run orchesjob (${bin}): ${error.message}`,
        ),
      );
    const child = spawnPiped(spawn, bin, args, {}, cannotRun);
    if (child === null) return;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('close', (code, signal) => {
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** A child whose stdout and stderr are pipes. */
export type PipedChild = ChildProcess & { readonly stdout: Readable; readonly stderr: Readable };

/**
 * Spawn `bin args...` with stdin ignored and stdout and stderr piped; null when it did not start, after
 * `cannotRun` was called (or will be, on the next tick) with the reason. Node reports some spawn
 * failures as an 'error' event on the next tick (ENOENT, EACCES, EAGAIN, and EMFILE and ENFILE, which
 * leave the child without pipes) and throws the others (ENOMEM...); the listener is attached before
 * anything else, so none is missed and none goes unhandled. `spawnFn` is `node:child_process`'s
 * `spawn`, passed in so that this module does not load it (see `callOrchesjob`).
 */
export function spawnPiped(
  spawnFn: typeof import('node:child_process').spawn,
  bin: string,
  args: readonly string[],
  options: Omit<SpawnOptions, 'stdio'>,
  cannotRun: (error: NodeJS.ErrnoException) => void,
): PipedChild | null {
  let child: ChildProcess;
  try {
    child = spawnFn(bin, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
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
 * True when orchesjob's argument parser rejected the subcommand itself: the real orchesjob has no
 * `result` and no `cancel`, and argparse then exits 2 with `invalid choice`.
 */
export function rejectedSubcommand(outcome: OrchesjobOutcome): boolean {
  return outcome.code === 2 && outcome.stderr.includes('invalid choice');
}

/**
 * Call the documented subcommand; when orchesjob does not know it, call `fallback` instead.
 * Returns what the call that counts printed, unchanged.
 */
export async function callWithFallback(
  bin: string,
  args: readonly string[],
  fallback: readonly string[],
): Promise<OrchesjobOutcome> {
  const first = await callOrchesjob(bin, args);
  return rejectedSubcommand(first) ? callOrchesjob(bin, fallback) : first;
}

/** Pass orchesjob's output and exit status through unchanged (`result`, `cancel`). */
export function proxyOutcome(outcome: OrchesjobOutcome): void {
  writeStdout(outcome.stdout);
  process.stderr.write(outcome.stderr);
  process.exitCode = outcome.code ?? 1;
}

/** Quote an argv for a human reading an error message (not for a shell: nothing is run through one). */
export function shellJoin(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'"'"'`)}'`)).join(' ');
}
