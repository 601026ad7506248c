import { messageOf, ReserverError } from '../errors.js';
import type { StartSpec, WithFallback } from './argv.js';
import { cancelArgs, resultArgs, shellJoin, startArgv, statusByJobArgs, statusByRunKeyArgs } from './argv.js';
import type { JobLookup, JobStatus, OrchesjobOutcome, StartOutcome } from './protocol.js';
import { EXIT_ARGPARSE_REJECTED, parseJobStartedSince, parseJobStatus, parseStartOutput, rejectedSubcommand } from './protocol.js';
import type { RunResult } from './process.js';
import { killGroup, loadedSpawner, processesRunning, runProcess } from './process.js';

export type { JobLookup, JobStatus, OrchesjobOutcome, StartOutcome } from './protocol.js';

/**
 * The orchesjob client: the one place that runs orchesjob and reads its answers. It returns typed
 * results and never prints; the commands decide what the user sees.
 */

/** Output kept from a start: its JSON is small; anything larger is cut, never buffered without bound. */
const MAX_START_CAPTURE_BYTES = 1024 * 1024;
/** How long to wait for a start's pipes to close after it exited. */
const START_EXIT_GRACE_MS = 500;
/** How long the start-up check's child may take (`node --version` takes milliseconds). */
const CHILD_CHECK_TIMEOUT_MS = 10_000;

/** What recovery asks of orchesjob and of the host's processes. */
export interface RecoveryClient {
  /**
   * A job of `runKey` started at or after `sinceMs`, or that there is none. Rejects (a general
   * `ReserverError`) only when orchesjob cannot be run at all.
   */
  jobStartedSince(runKey: string, sinceMs: number): Promise<JobLookup>;
  /** The pids of processes running the start `argv` now. */
  runningStarts(argv: readonly string[]): number[];
  /** Kill a start found by `runningStarts`, with its process group, as its owner would at its timeout. */
  killStart(pid: number): void;
}

/** Everything the dispatcher needs from orchesjob: what an in-process test replaces with a fake. */
export interface DispatchClient extends RecoveryClient {
  /** The argv of a reservation's start: recorded in its claim, then run by `start`. */
  startArgv(globalOptions: readonly string[], reservation: StartSpec): string[];
  /** Run a start and read its job id. Never rejects: every failure is an outcome. */
  start(argv: readonly string[], timeoutMs: number): Promise<StartOutcome>;
  /** Null when a child can be started as a start is; otherwise the `dispatcher_error` message. */
  checkCanStartChild(): Promise<string | null>;
  /** How children are started (`reserver_started`'s `spawner`); rejects when that cannot be chosen. */
  spawner(): Promise<string>;
}

export class OrchesjobClient implements DispatchClient {
  constructor(readonly bin: string) {}

  startArgv(globalOptions: readonly string[], reservation: StartSpec): string[] {
    return startArgv(this.bin, globalOptions, reservation);
  }

  /**
   * Run `orchesjob start` in its own process group, and read its job id.
   *
   * A start fails when it exits non-zero, prints no JSON, prints JSON without a string `job_id`, or has
   * not exited after `timeoutMs` (its whole process group is then killed). Its own process group also
   * keeps it out of reach of a Ctrl-C or a supervisor's group signal meant for the dispatcher: a start
   * in flight is finished and recorded, not cut off.
   */
  async start(argv: readonly string[], timeoutMs: number): Promise<StartOutcome> {
    const result = await runProcess(argv, {
      ownGroup: true,
      timeoutMs,
      maxBytes: MAX_START_CAPTURE_BYTES,
      exitGraceMs: START_EXIT_GRACE_MS,
    });
    return startOutcome(argv, timeoutMs, result);
  }

  /**
   * Ask `orchesjob status --run-key K --all` (or, for an orchesjob without `--all`, which argparse
   * rejects with exit 2, `status --run-key K`) for a job started at or after `sinceMs`.
   */
  async jobStartedSince(runKey: string, sinceMs: number): Promise<JobLookup> {
    let outcome = await this.call(statusByRunKeyArgs(runKey, true));
    if (outcome.code === EXIT_ARGPARSE_REJECTED) outcome = await this.call(statusByRunKeyArgs(runKey, false));
    return parseJobStartedSince(runKey, sinceMs, outcome);
  }

  runningStarts(argv: readonly string[]): number[] {
    return processesRunning(argv);
  }

  killStart(pid: number): void {
    killGroup(pid);
  }

  /**
   * Start one child as orchesjob is started (its own process group, piped output, exit and close):
   * `node --version`, whose output is dropped. A child that could not be started at all (no exit code:
   * `start`'s message, written for orchesjob, carries the reason) is the only failure; `node --version`
   * prints no JSON, so its outcome is never ok.
   */
  async checkCanStartChild(): Promise<string | null> {
    const argv = [process.execPath, '--version'];
    const cannot = (reason: string) => `start-up check: cannot start a child process (${argv.join(' ')}): ${reason}`;
    try {
      const outcome = await this.start(argv, CHILD_CHECK_TIMEOUT_MS);
      return !outcome.ok && outcome.exitCode === null ? cannot(outcome.error) : null;
    } catch (error) {
      return cannot(messageOf(error));
    }
  }

  /** `posix_spawn` or `child_process` (src/orchesjob/spawn.ts); rejects on a wrong ORCHESJOB_RESERVER_SPAWNER. */
  async spawner(): Promise<string> {
    return (await loadedSpawner()).name;
  }

  /** `orchesjob status --job-id`: its JSON, its raw output when that is not JSON, or why it failed. */
  async jobStatus(jobId: string): Promise<JobStatus> {
    return parseJobStatus(jobId, await this.call(statusByJobArgs(jobId)));
  }

  /** `orchesjob status --job-id ID` or `--run-key K`, as the provider's sensor asks it: what it printed. */
  status(lookup: { readonly jobId: string } | { readonly runKey: string }): Promise<OrchesjobOutcome> {
    return this.call('jobId' in lookup ? statusByJobArgs(lookup.jobId) : statusByRunKeyArgs(lookup.runKey, false));
  }

  /** `orchesjob result --job-id`, or `status --job-id` when orchesjob has no `result`: what it printed. */
  result(jobId: string): Promise<OrchesjobOutcome> {
    return this.callWithFallback(resultArgs(jobId));
  }

  /** `orchesjob cancel --job-id`, or `abort --job-id` when orchesjob has no `cancel`: what it printed. */
  cancel(jobId: string): Promise<OrchesjobOutcome> {
    return this.callWithFallback(cancelArgs(jobId));
  }

  /** The documented subcommand, or its fallback when orchesjob rejects it: the call that counts. */
  private async callWithFallback({ args, fallback }: WithFallback): Promise<OrchesjobOutcome> {
    const first = await this.call(args);
    return rejectedSubcommand(first) ? this.call(fallback) : first;
  }

  /**
   * Run `bin args...` (no timeout: the user waits as for orchesjob itself) and collect all its output.
   * A missing executable is a general error naming it.
   */
  private async call(args: readonly string[]): Promise<OrchesjobOutcome> {
    const result = await runProcess([this.bin, ...args]);
    if (!result.started) {
      throw new ReserverError('GENERAL', cannotRunMessage(this.bin, result.error, ' (set --orchesjob-bin or ORCHESJOB_BIN)'));
    }
    const { code, signal, stdout, stderr } = result;
    return { code, signal, stdout, stderr };
  }
}

/** How a start ended, from how its process ended. */
function startOutcome(argv: readonly string[], timeoutMs: number, result: RunResult): StartOutcome {
  if (!result.started) return { ok: false, exitCode: null, error: cannotRunMessage(argv[0] ?? '', result.error, '') };
  const { code, signal } = result;
  const stderr = result.stderr.trim();
  if (result.timedOut) {
    return {
      ok: false,
      exitCode: code,
      error: `orchesjob start did not return within ${timeoutMs / 1000} s; its process group was killed\nstderr=${stderr}`,
    };
  }
  if (code !== 0) {
    const how = code !== null ? `exit_code=${code}` : signal !== null ? `killed by ${signal}` : 'exit status unknown (reaped by another)';
    return { ok: false, exitCode: code, error: `orchesjob command failed: ${shellJoin(argv)}\n${how}\nstderr=${stderr}` };
  }
  return parseStartOutput(result.stdout);
}

/** Why orchesjob did not run; `hint` follows a missing executable's name. */
function cannotRunMessage(bin: string, error: NodeJS.ErrnoException, hint: string): string {
  return error.code === 'ENOENT' ? `orchesjob executable not found: ${bin}${hint}` : `cannot run orchesjob (${bin}): ${error.message}`;
}
