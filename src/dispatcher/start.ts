import { spawn } from 'node:child_process';
import type { Reservation } from '../events/index.js';
import { shellJoin, spawnPiped } from '../orchesjob.js';

/** The argv of one dispatch: `orchesjob start --run-key K <global...> <reservation...> -- CMD...`. */
export function startArgv(bin: string, globalOptions: readonly string[], r: Reservation): string[] {
  return [bin, 'start', '--run-key', r.runKey, ...globalOptions, ...r.orchesjobStartOptions, '--', ...r.command];
}

/** How a start ended: a job id, or why there is none. */
export type StartOutcome =
  | { readonly ok: true; readonly jobId: string; readonly recovered?: boolean }
  | { readonly ok: false; readonly error: string; readonly exitCode: number | null };

/** Output kept from orchesjob: its JSON is small; anything larger is cut, never buffered without bound. */
const MAX_CAPTURE_BYTES = 1024 * 1024;
/** How long to wait for orchesjob's pipes to close after it exited. */
const EXIT_GRACE_MS = 500;

/**
 * Run `orchesjob start` without a shell, in its own process group, and read its job id.
 *
 * A start fails when it exits non-zero, prints no JSON, prints JSON without a string `job_id`, or has
 * not exited after `timeoutMs` (its whole process group is then killed). Its own process group also
 * keeps it out of reach of a Ctrl-C or a supervisor's group signal meant for the dispatcher: a start in
 * flight is finished and recorded, not cut off.
 */
export function runStart(argv: readonly string[], timeoutMs: number): Promise<StartOutcome> {
  const [bin, ...args] = argv as [string, ...string[]];
  return new Promise((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (outcome: StartOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const cannotRun = (error: NodeJS.ErrnoException) =>
      finish({
        ok: false,
        exitCode: null,
        error:
          error.code === 'ENOENT' ? `orchesjob executable not found: ${bin}` : `cannot run orchesjob (${bin}): ${error.message}`,
      });
    const child = spawnPiped(spawn, bin, args, { detached: true }, cannotRun);
    if (child === null) return;
    const stdout = capture(child.stdout);
    const stderr = capture(child.stderr);
    let timedOut = false;
    timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, timeoutMs);
    // 'close' waits for the pipes; a grandchild that kept them open must not hold the dispatch
    // forever, so after 'exit' the output is taken as it is after a short grace.
    const settle = (code: number | null, signal: NodeJS.Signals | null) => {
      const err = stderr().trim();
      if (timedOut) {
        finish({
          ok: false,
          exitCode: code,
          error: `orchesjob start did not return within ${timeoutMs / 1000} s; its process group was killed\nstderr=${err}`,
        });
      } else if (code !== 0) {
        const how = code === null ? `killed by ${signal}` : `exit_code=${code}`;
        finish({ ok: false, exitCode: code, error: `orchesjob command failed: ${shellJoin(argv)}\n${how}\nstderr=${err}` });
      } else {
        finish(parseStartOutput(stdout()));
      }
    };
    child.on('close', settle);
    child.on('exit', (code, signal) => {
      setTimeout(() => settle(code, signal), EXIT_GRACE_MS).unref();
    });
  });
}

/** Read `orchesjob start`'s JSON: an object with a non-empty string `job_id`. */
export function parseStartOutput(stdout: string): StartOutcome {
  const text = stdout.trim();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, exitCode: 0, error: `orchesjob returned non-JSON output: ${text.slice(0, 500)}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, exitCode: 0, error: 'orchesjob start did not return a JSON object.' };
  }
  const jobId = (value as Record<string, unknown>)['job_id'];
  if (typeof jobId !== 'string' || jobId === '') {
    return { ok: false, exitCode: 0, error: 'orchesjob start output does not contain job_id.' };
  }
  return { ok: true, jobId };
}

function capture(stream: NodeJS.ReadableStream): () => string {
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on('data', (chunk: Buffer) => {
    if (size >= MAX_CAPTURE_BYTES) return;
    chunks.push(chunk);
    size += chunk.length;
  });
  return () => Buffer.concat(chunks).toString('utf8');
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
