import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import type { Identity } from '../cli/identity.js';
import { identity, identityArgs, resolveReservation } from '../cli/identity.js';
import { dbPath, orchesjobBin } from '../cli/paths.js';
import type { Scope } from '../cli/scope.js';
import { localScope } from '../cli/scope.js';
import type { Ledger } from '../db/open.js';
import { openLedger } from '../db/open.js';
import { committedElsewhere, LedgerWaker } from '../db/waker.js';
import type { ExitName } from '../errors.js';
import { EXIT_CODES, invalidArgument } from '../errors.js';
import type { Reservation } from '../events/index.js';
import type { JobStatus } from '../orchesjob/client.js';
import { OrchesjobClient } from '../orchesjob/client.js';
import { errorLine, printJson } from '../output.js';
import { readControl } from '../projections/control.js';
import { jobJson, statusDocument } from './status.js';

/** The longest sleep on the ledger when no change was noticed (as `events --follow`): a missed wake costs 1 s at worst. */
const LEDGER_CHECK_MS = 1000;
/** The shortest time between the starts of two `orchesjob status` calls. */
const JOB_CHECK_MS = 1000;
/** The job statuses orchesjob never leaves. */
const FINAL_JOB_STATUSES: ReadonlySet<string> = new Set(['SUCCEEDED', 'FAILED', 'LOST', 'CANCELLED', 'ABORTED']);
/** setTimeout's longest delay; a longer timeout is not raced against a call (the loop still ends it). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const args = {
  ...identityArgs,
  for: {
    type: 'string',
    valueHint: 'dispatched|finished',
    description: 'dispatched (default): until the reservation is DISPATCHED; finished: until orchesjob reports its job in a final state',
  },
  timeout: {
    type: 'string',
    valueHint: 'SECONDS',
    description: 'Give up after this many seconds (a positive number, fractions allowed; exit 124). Default: no timeout',
  },
  ...commonArgs,
} as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'wait',
    description:
      'Block until a reservation is dispatched (default) or, with --for finished, until orchesjob reports its job in a final state (SUCCEEDED, FAILED, LOST, CANCELLED, ABORTED); then print the `status` document ({"reservation", "dispatch"}, plus "job" once orchesjob answered with --for finished). ' +
      'The document is printed whenever the reservation exists: on exits 6, 8, 124, 130 and 143 too, with one {"error": "..."} line on stderr saying why. ' +
      'Woken by ledger changes (as the dispatcher is; at worst it reads again after 1 s); with --for finished, `orchesjob status --job-id` at most once a second, and a call that fails or prints no JSON is retried the next second (the first such failure prints one {"warning": "..."} line on stderr). ' +
      'DISPATCHING, and RESERVED awaiting a retry, are "not yet"; DISPATCH_FAILED is exit 6, although `requeue` could put it back in the queue. wait writes nothing: EXPIRED is what a dispatcher (`run`) records. --run-key names the reservation that holds the key when wait starts; cleaned while waiting, it is exit 4. ' +
      'SIGINT/SIGTERM: print the document, exit 130/143.\n\n' +
      'Usage: orchesjob-reserver wait (--run-key KEY | --reservation-id ID) [--for dispatched|finished] [--timeout SECONDS]\n' +
      'Exit codes: 0 reached (dispatched; with --for finished, the job SUCCEEDED), 1 general error, 2 invalid arguments, 4 not found (also: cleaned while waiting), 6 the reservation ended where it cannot get there (EXPIRED, CANCELLED, DISPATCH_FAILED), 8 the job ended other than SUCCEEDED, 124 --timeout passed, 130/143 SIGINT/SIGTERM.\n' +
      'Example: orchesjob-reserver wait --run-key nightly-2026-05-04 --for finished --timeout 3600 && next-step',
  },
  args,
  run: runParsed((parsed) => wait(parsed, localScope('wait'))),
});

type Target = 'dispatched' | 'finished';

/** How a wait ended: its exit status, and why when it is not success (the `{"error"}` line). */
interface Ending {
  readonly exit: ExitName;
  readonly error: string | null;
}

/** What a wait is for, read from its flags before anything is opened (bad input writes nothing). */
interface WaitSpec {
  readonly target: Target;
  /** `performance.now()` at which --timeout passes; Infinity without one. */
  readonly deadline: number;
  /** --timeout in seconds (for the message). */
  readonly timeoutSeconds: number;
  readonly scope: Scope;
}

/** `wait`, for a reservation visible in `scope`. */
export async function wait({ flags }: ParsedArgv<typeof args>, scope: Scope): Promise<void> {
  const startedAt = performance.now();
  const id = identity(flags);
  const target = waitTarget(flags.for);
  const timeoutMs = timeoutOf(flags.timeout);
  const client = new OrchesjobClient(orchesjobBin(flags));
  const spec: WaitSpec = { target, deadline: startedAt + timeoutMs, timeoutSeconds: timeoutMs / 1000, scope };
  const path = dbPath(flags);
  // Installed before the database opens: a signal during start-up ends the wait as cleanly.
  const stop = new StopSignals('orchesjob-reserver wait');
  const job = new JobWatch(client, stop);
  try {
    const ledger = await openLedger(path);
    let result: { document: Record<string, unknown>; ending: Ending };
    try {
      result = await waitLoop(ledger, id, spec, { stop, job });
    } finally {
      await ledger.close();
    }
    printJson(result.document);
    if (result.ending.error !== null) process.stderr.write(`${errorLine(result.ending.error)}\n`);
    process.exitCode = EXIT_CODES[result.ending.exit].status;
  } finally {
    stop.remove();
  }
  // An `orchesjob status` that hangs must not hold a timed-out wait: the answer is printed, exit now.
  if (job.inFlight) process.exit(process.exitCode);
}

function waitTarget(value: string | undefined): Target {
  const target = value ?? 'dispatched';
  if (target !== 'dispatched' && target !== 'finished') throw invalidArgument(`Invalid --for: ${JSON.stringify(target)} (dispatched or finished).`);
  return target;
}

/** --timeout in ms (Infinity when absent): a positive number of seconds, read as `run` reads its intervals. */
function timeoutOf(value: string | undefined): number {
  if (value === undefined) return Number.POSITIVE_INFINITY;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw invalidArgument(`Invalid --timeout: ${JSON.stringify(value)} (a positive number of seconds).`);
  }
  return n * 1000;
}

/**
 * Read the reservation, judge it, sleep until the ledger changes (or the job is due to be asked
 * again), until it ends one way or another. The waker watches before the first read, so that a
 * change landing between that read and the first sleep still wakes it.
 */
async function waitLoop(ledger: Ledger, id: Identity, spec: WaitSpec, on: { stop: StopSignals; job: JobWatch }): Promise<{ document: Record<string, unknown>; ending: Ending }> {
  const waker = new LedgerWaker(ledger.path, committedElsewhere(ledger.raw));
  waker.watch();
  on.stop.onStop(() => waker.wake());
  let lookup = id;
  try {
    for (;;) {
      const reservation = await resolveReservation(ledger, lookup, spec.scope); // exit 4, also once cleaned
      lookup = { reservationId: reservation.reservationId };
      const control = await readControl(ledger.db);
      const progress = await judge(reservation, spec, on.job);
      const document = statusDocument(reservation, control, Date.now(), spec.target === 'finished' ? on.job.last : undefined);
      if (progress.kind === 'ended') return { document, ending: progress.ending };
      const ending = cutShort(progress.where, spec, on.stop);
      if (ending !== null) return { document, ending };
      const next = progress.asking ? on.job.dueInMs() : LEDGER_CHECK_MS;
      await waker.sleep(Math.min(next, spec.deadline - performance.now()));
    }
  } finally {
    waker.close();
  }
}

/** Where a reservation stands: still waiting (`where` says on what; `asking`: on orchesjob), or ended. */
type Progress = { readonly kind: 'waiting'; readonly where: string; readonly asking: boolean } | { readonly kind: 'ended'; readonly ending: Ending };

/** Judge a reservation against the target; for `finished`, ask orchesjob about its job when a call is due. */
async function judge(reservation: Reservation, spec: WaitSpec, job: JobWatch): Promise<Progress> {
  const status = reservation.status;
  switch (status) {
    case 'RESERVED':
    case 'DISPATCHING':
      return { kind: 'waiting', where: `reservation ${status}`, asking: false };
    case 'CANCELLED':
    case 'EXPIRED':
    case 'DISPATCH_FAILED':
      return { kind: 'ended', ending: { exit: 'WRONG_STATE', error: `reservation ended ${status}: it cannot be dispatched` } };
    case 'DISPATCHED':
      if (spec.target === 'dispatched') return { kind: 'ended', ending: { exit: 'OK', error: null } };
      return jobProgress(reservation.jobId ?? '', spec, job);
    default: {
      const unhandled: never = status;
      return unhandled;
    }
  }
}

/** A dispatched reservation's job, for `--for finished`: asked when a call is due, else as last answered. */
async function jobProgress(jobId: string, spec: WaitSpec, job: JobWatch): Promise<Progress> {
  if (job.dueInMs() <= 0) await job.ask(jobId, spec.deadline - performance.now());
  const final = job.lastStatus !== null && FINAL_JOB_STATUSES.has(job.lastStatus) ? job.lastStatus : null;
  if (final === 'SUCCEEDED') return { kind: 'ended', ending: { exit: 'OK', error: null } };
  if (final !== null) return { kind: 'ended', ending: { exit: 'JOB_NOT_SUCCEEDED', error: `job ended ${final}` } };
  const where = job.lastFailure ?? (job.lastStatus === null ? 'job not reported yet' : `job ${job.lastStatus}`);
  return { kind: 'waiting', where, asking: true };
}

/** A wait not there yet ends anyway on a stop signal, or once --timeout passed; `where` says what it waited on. */
function cutShort(where: string, spec: WaitSpec, stop: StopSignals): Ending | null {
  if (stop.signal !== null) {
    const exit = stop.signal === 'SIGINT' ? 'INTERRUPTED' : 'TERMINATED';
    return { exit, error: `stopped by ${stop.signal} while waiting for ${spec.target}: ${where}` };
  }
  if (performance.now() < spec.deadline) return null;
  return { exit: 'TIMED_OUT', error: `timed out after ${spec.timeoutSeconds} s waiting for ${spec.target}: ${where}` };
}

/**
 * `orchesjob status --job-id` for `--for finished`: at most one call a second, its last answer kept
 * (as the document's "job"). A call that fails or prints no JSON is retried; the first such failure
 * is reported once, as a `{"warning"}` line on stderr.
 */
class JobWatch {
  /** orchesjob's last answer, as `status --include-job` prints it; undefined until it answered. */
  last: unknown = undefined;
  /** The `status` field of the last JSON answer. */
  lastStatus: string | null = null;
  /** Why the last call told nothing, or null when it answered. */
  lastFailure: string | null = null;
  /** A call is running that the wait stopped waiting for (a timeout or a signal came first). */
  inFlight = false;
  private nextAt = 0;
  private warned = false;
  /** Ends the call being waited for, on a stop. */
  private giveUp: (() => void) | null = null;

  constructor(
    private readonly client: OrchesjobClient,
    private readonly stop: StopSignals,
  ) {
    stop.onStop(() => this.giveUp?.());
  }

  /** ms until the next call may start. */
  dueInMs(): number {
    return Math.max(0, this.nextAt - performance.now());
  }

  /** One call, given up after `withinMs` or on a stop (it is then left running: `inFlight`). */
  async ask(jobId: string, withinMs: number): Promise<void> {
    this.nextAt = performance.now() + JOB_CHECK_MS;
    this.inFlight = true;
    const call = this.client.jobStatus(jobId);
    const settled = () => {
      this.inFlight = false;
    };
    call.then(settled, settled);
    const answer = await this.firstOf(call, withinMs);
    if (answer !== null) this.record(answer);
  }

  private record(answer: JobStatus): void {
    if (answer.kind !== 'failed') this.last = jobJson(answer);
    const status = answer.kind === 'json' ? statusField(answer.value) : null;
    this.lastStatus = status ?? this.lastStatus;
    this.lastFailure = answer.kind === 'failed' ? answer.message : status === null ? 'orchesjob status printed no job status' : null;
    if (this.lastFailure !== null && !this.warned) {
      this.warned = true;
      process.stderr.write(`${JSON.stringify({ warning: `${this.lastFailure} (retrying every second)` })}\n`);
    }
  }

  /** The call's answer, or null when `withinMs` passed or a stop came first. */
  private async firstOf(call: Promise<JobStatus>, withinMs: number): Promise<JobStatus | null> {
    if (this.stop.signal !== null) return null;
    let timer: NodeJS.Timeout | undefined;
    const giveUp = new Promise<null>((resolve) => {
      if (withinMs <= MAX_TIMER_MS) timer = setTimeout(() => resolve(null), Math.max(0, withinMs));
      this.giveUp = () => resolve(null);
    });
    try {
      return await Promise.race([call, giveUp]);
    } finally {
      clearTimeout(timer);
      this.giveUp = null;
    }
  }
}

/** The `status` of a job as orchesjob prints it (both formats name it so), or null. */
function statusField(value: unknown): string | null {
  if (value === null || typeof value !== 'object') return null;
  const status = (value as Record<string, unknown>)['status'];
  return typeof status === 'string' ? status : null;
}

/**
 * SIGINT/SIGTERM while waiting: the first ends the wait (the document is printed, exit 130/143); a
 * second exits at once, as `run` and `events --follow` do (src/cli/signals.ts), which tell no signal apart.
 */
class StopSignals {
  signal: NodeJS.Signals | null = null;
  private readonly listeners: (() => void)[] = [];
  private readonly handler = (signal: NodeJS.Signals) => {
    if (this.signal !== null) {
      process.stderr.write(`${this.label}: second ${signal}, exiting now\n`);
      process.exit(EXIT_CODES[signal === 'SIGINT' ? 'INTERRUPTED' : 'TERMINATED'].status);
    }
    this.signal = signal;
    for (const listener of this.listeners) listener();
  };

  constructor(private readonly label: string) {
    process.on('SIGTERM', this.handler);
    process.on('SIGINT', this.handler);
  }

  onStop(listener: () => void): void {
    this.listeners.push(listener);
  }

  remove(): void {
    process.off('SIGTERM', this.handler);
    process.off('SIGINT', this.handler);
  }
}
