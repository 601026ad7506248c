import { statSync } from 'node:fs';
import { ulid } from 'ulid';
import type { Ledger } from '../db/open.js';
import { messageOf } from '../db/open.js';
import type { Reservation, ReservationState } from '../events/index.js';
import { fold, IllegalTransitionError } from '../events/index.js';
import type { StoredEvent } from '../events/store.js';
import { lastPosition, readEventsAfter, readStream } from '../events/store.js';
import { applyCommand, write } from '../ledger.js';
import { anyExpiring, findById, findExpiring, findReady, nextDueAt } from '../projections/reservations.js';
import type { LogLine } from './log.js';
import { committedElsewhere, LedgerWaker } from '../db/waker.js';
import { eventLine, formatLine, lifecycleLine } from './log.js';
import { selfOwner } from './owner.js';
import { findJobStartedSince, recoverStaleClaims } from './recovery.js';
import type { StartOutcome } from './start.js';
import { runStart, startArgv } from './start.js';

/** Events read per query when printing. */
const PRINT_PAGE = 500;

/** How long the start-up check's child may take (`node --version` takes milliseconds). */
const CHILD_CHECK_TIMEOUT_MS = 10_000;

export interface DispatcherOptions {
  readonly ledger: Ledger;
  /** The database path as given, for `reserver_started`. */
  readonly dbLabel: string;
  readonly orchesjobBin: string;
  /** Global options, before each reservation's own. */
  readonly startOptions: readonly string[];
  readonly pollIntervalMs: number;
  readonly errorSleepMs: number;
  readonly startTimeoutMs: number;
  readonly maxConcurrentStarts: number;
  /**
   * Where JSON Lines go (stdout) and `dispatcher_error` lines go (stderr): one or more lines per call,
   * joined by newlines, without the last one (a page of ledger events is one write).
   */
  readonly out?: (lines: string) => void;
  readonly err?: (line: string) => void;
  readonly clock?: () => number;
}

/** A claim made by this pass, and the argv its start runs. */
interface Claimed {
  readonly reservation: Reservation;
  readonly argv: string[];
}

/** A finished start whose outcome is not committed yet. */
interface PendingRecord {
  readonly reservation: Reservation;
  readonly outcome: StartOutcome;
  readonly recorded: () => void;
}

/**
 * The long-lived dispatcher (`orchesjob-reserver run`).
 *
 * Each wake: in one transaction, expire due reservations, claim ready ones (up to `maxConcurrentStarts`
 * starts in flight) and record the starts that finished; then print every new ledger event as a JSON
 * line and start what it claimed. It sleeps until the earliest of its poll interval and the next
 * `not_before`/`expires_at`, and wakes early when another process commits or a start finishes. Starts
 * run concurrently; lines print in ledger order, each after the commit that wrote its event.
 */
export class Dispatcher {
  private readonly opts: Required<DispatcherOptions>;
  private readonly id = ulid();
  private readonly owner = selfOwner(this.id);
  private readonly actor = `dispatcher:${this.id}`;
  /** Every dispatch not yet recorded and printed (a stop waits for them). */
  private readonly inFlight = new Set<Promise<void>>();
  /** `orchesjob start` processes running now: what `--max-concurrent-starts` bounds. */
  private startsRunning = 0;
  /** Finished starts waiting for the loop's next write transaction. */
  private readonly toRecord: PendingRecord[] = [];
  private printedPosition = 0;
  private printing: Promise<void> = Promise.resolve();
  private lastRecoveryMs = 0;
  private stopping = false;
  private waker: LedgerWaker;
  /** The database file this dispatcher opened (device and inode), to notice it moved or was replaced. */
  private fileIdentity: { dev: number; ino: number } | null = null;
  /** Set when the database file was replaced: `run` then exits 1 so that its process manager restarts it. */
  replaced = false;

  constructor(options: DispatcherOptions) {
    this.opts = {
      out: (line) => process.stdout.write(`${line}\n`),
      err: (line) => process.stderr.write(`${line}\n`),
      clock: Date.now,
      ...options,
    };
    this.waker = new LedgerWaker(options.ledger.path, committedElsewhere(options.ledger.raw));
  }

  /** Run until `stop()`; resolves once the starts in flight are recorded and `reserver_stopped` printed. */
  async run(): Promise<void> {
    const { ledger } = this.opts;
    const runStartedAt = this.opts.clock();
    // History before this point is not printed; what recovery writes from here on is.
    this.printedPosition = await lastPosition(ledger.db);
    this.fileIdentity = this.databaseFile();
    this.emit(
      lifecycleLine(
        'reserver_started',
        {
          db: this.opts.dbLabel,
          orchesjob_bin: this.opts.orchesjobBin,
          orchesjob_start_options: this.opts.startOptions,
          poll_interval: this.opts.pollIntervalMs / 1000,
          run_started_at: Math.floor(runStartedAt / 1000),
          dispatcher_id: this.id,
          pid: process.pid,
          max_concurrent_starts: this.opts.maxConcurrentStarts,
          start_timeout: this.opts.startTimeoutMs / 1000,
        },
        runStartedAt,
      ),
    );
    await this.recover();
    await this.checkChildStart();
    this.waker.watch();
    try {
      // After stop(), ticks go on without claiming until every start in flight is recorded.
      while (!this.stopping || this.inFlight.size > 0) {
        let sleepMs: number;
        try {
          sleepMs = await this.tick();
        } catch (error) {
          this.reportError(error);
          sleepMs = this.opts.errorSleepMs;
        }
        if (!this.stopping || this.inFlight.size > 0) await this.waker.sleep(sleepMs);
        // Let the I/O that is already waiting run first (starts that exited meanwhile queue their
        // outcomes), so that one pass records them all in one transaction: one sync for the burst.
        await new Promise((resolve) => setImmediate(resolve));
      }
      await this.printNewEvents();
    } finally {
      this.waker.close();
    }
    this.emit(lifecycleLine('reserver_stopped', { dispatcher_id: this.id }, this.opts.clock()));
  }

  /** Ask the loop to stop: no new claims; starts in flight finish and are recorded. */
  stop(): void {
    this.stopping = true;
    this.waker.wake();
  }

  /** One pass; returns how long to sleep before the next. */
  private async tick(): Promise<number> {
    const { ledger } = this.opts;
    // A database moved away, deleted or replaced takes no new work (others would not see it), but the
    // starts already running are recorded through the open connection, as stopping records them.
    let fileError: unknown = null;
    try {
      if (!this.stopping) this.checkDatabaseFile();
    } catch (error) {
      fileError = error;
    }
    const claiming = !this.stopping && fileError === null;
    if (claiming && this.opts.clock() - this.lastRecoveryMs >= this.opts.pollIntervalMs) await this.recover();
    const { claimed, recorded } = await this.writeDue(claiming);
    try {
      await this.printNewEvents(); // orchesjob_start_call is printed before the spawn
    } finally {
      // Committed claims are started whatever printing did (their lines print on a later pass), so
      // that no claim is left without its start and no recorded start waits for ever.
      for (const { reservation, argv } of claimed) this.track(this.dispatch(reservation, argv));
      for (const item of recorded) item.recorded();
    }
    if (fileError !== null) throw fileError;
    const now = this.opts.clock();
    const next = await nextDueAt(ledger.db);
    let sleepMs = this.opts.pollIntervalMs;
    if (next !== null) sleepMs = Math.min(sleepMs, next * 1000 - now);
    if ((this.stopping || this.startsRunning >= this.opts.maxConcurrentStarts) && sleepMs <= 0) {
      // Ready work waits for a free slot (or for nothing, when stopping): a finishing start wakes the loop.
      return this.opts.pollIntervalMs;
    }
    return Math.max(1, sleepMs);
  }

  /**
   * The pass's one write transaction (group commit: one sync for all of it): expire what is due, claim
   * up to the free slots in queue order, and record the starts that finished. Each claim is a
   * conditional transition (only from RESERVED, only once due), so two dispatchers never hold one.
   * With no start to record, reads first: the write lock is taken only when there is work.
   * When not `claiming` (stopping, or the database file is not where it was opened), it only records.
   */
  private async writeDue(claiming: boolean): Promise<{ claimed: Claimed[]; recorded: PendingRecord[] }> {
    const db = this.opts.ledger.db;
    const slots = claiming ? this.opts.maxConcurrentStarts - this.startsRunning : 0;
    const batch = this.toRecord.slice();
    if (batch.length === 0) {
      if (!claiming) return { claimed: [], recorded: [] };
      const nowSec = Math.floor(this.opts.clock() / 1000);
      const work =
        (await anyExpiring(db, nowSec)) || (slots > 0 && (await findReady(db, nowSec, 1)).length > 0);
      if (!work) return { claimed: [], recorded: [] };
    }
    const { claimed, unrecorded } = await write(db, async (tx) => {
      const nowMs = this.opts.clock();
      const claimed: Claimed[] = [];
      if (claiming) {
        const nowSec = Math.floor(nowMs / 1000);
        for (const reservation of (await anyExpiring(tx, nowSec)) ? await findExpiring(tx, nowSec) : []) {
          await applyCommand(tx, reservation, { type: 'Expire', nowMs }, { nowMs, actor: this.actor });
        }
        // Claims first: a freed slot's next claim stands in the ledger before the record of the
        // start that freed it, as when they were separate transactions.
        if (slots > 0) claimed.push(...(await this.claim(tx, slots, nowMs)));
      }
      return { claimed, unrecorded: await this.recordBatch(tx, batch, nowMs) };
    });
    this.toRecord.splice(0, batch.length);
    for (const { reservation, outcome } of unrecorded) {
      this.reportError(
        new Error(
          `reservation ${reservation.reservationId} (${reservation.runKey}) left DISPATCHING while its start ran; ` +
            `outcome not recorded: ${outcome.ok ? `job_id=${outcome.jobId}` : outcome.error}`,
        ),
      );
    }
    return { claimed, recorded: batch };
  }

  /** Claim up to `limit` ready reservations in the caller's transaction. */
  private async claim(tx: Ledger['db'], limit: number, nowMs: number): Promise<Claimed[]> {
    const claimed: Claimed[] = [];
    for (const ready of await findReady(tx, Math.floor(nowMs / 1000), limit)) {
      const argv = startArgv(this.opts.orchesjobBin, this.opts.startOptions, ready);
      try {
        const { reservation } = await applyCommand(
          tx,
          ready,
          { type: 'Claim', owner: this.owner, argv, nowMs, startTimeoutMs: this.opts.startTimeoutMs },
          { nowMs, actor: this.actor },
        );
        claimed.push({ reservation, argv });
      } catch (error) {
        // Due by the second but not yet by the millisecond: a later wake takes it.
        if (!(error instanceof IllegalTransitionError)) throw error;
      }
    }
    return claimed;
  }

  /**
   * Settle the claims of dispatchers that are gone (at start, then at most once per poll interval,
   * since a dispatcher may die while this one runs). Printed like every other ledger event.
   */
  private async recover(): Promise<void> {
    this.lastRecoveryMs = this.opts.clock();
    try {
      const result = await recoverStaleClaims(this.opts.ledger.db, {
        actor: this.actor,
        clock: this.opts.clock,
        orchesjobBin: this.opts.orchesjobBin,
        defaultStartTimeoutMs: this.opts.startTimeoutMs,
        selfId: this.id,
      });
      for (const error of result.errors) this.reportError(new Error(error));
    } catch (error) {
      this.reportError(error);
    }
    await this.printNewEvents();
  }

  /**
   * Before the first claim, start one child as orchesjob is started (`runStart`: its own process group,
   * piped output, exit and close): `node --version`, whose output is dropped. A dispatcher that cannot
   * start a child says so now, not when the first reservation is due. And the first start of a process
   * is its slowest: V8 compiles and tunes the spawn, pipe and exit code on first use, which delayed the
   * first dispatch after a (re)start by about 6 ms in the median (docs/performance.md, firing lag).
   * Reservations already due at start wait for the check, a few milliseconds.
   */
  private async checkChildStart(): Promise<void> {
    const argv = [process.execPath, '--version'];
    try {
      const outcome = await runStart(argv, CHILD_CHECK_TIMEOUT_MS);
      // `node --version` prints no JSON, so its outcome is never ok; no exit code means it could not
      // be started (runStart's message, written for orchesjob, carries the reason) or was killed.
      if (!outcome.ok && outcome.exitCode === null) {
        this.reportError(new Error(`start-up check: cannot start a child process (${argv.join(' ')}): ${outcome.error}`));
      }
    } catch (error) {
      this.reportError(new Error(`start-up check: cannot start a child process (${argv.join(' ')}): ${messageOf(error)}`));
    }
  }

  private async dispatch(reservation: Reservation, argv: string[]): Promise<void> {
    this.startsRunning++;
    let outcome: StartOutcome;
    try {
      outcome = await runStart(argv, this.opts.startTimeoutMs);
    } finally {
      // The slot is free once orchesjob exited: the next claim need not wait for this recording.
      this.startsRunning--;
    }
    if (!outcome.ok) {
      this.waker.wake(); // the freed slot need not wait for orchesjob's answer below
      outcome = await this.checkFailedStart(reservation, outcome);
    }
    // Recorded by the loop's next write, with its claims (one sync); resolved once committed and printed.
    // A job id must never be lost: on a database error the outcome stays queued and is written again.
    const settled = outcome;
    await new Promise<void>((recorded) => {
      this.toRecord.push({ reservation, outcome: settled, recorded });
      this.waker.wake();
    });
  }

  /**
   * A start that failed may still have created the job (killed after creating it, timed out, died
   * before printing). Ask orchesjob before recording a failure; a job started since the claim is ours.
   */
  private async checkFailedStart(
    reservation: Reservation,
    failed: Extract<StartOutcome, { ok: false }>,
  ): Promise<StartOutcome> {
    const claimedAtMs = reservation.claim?.claimedAtMs ?? this.opts.clock();
    try {
      const lookup = await findJobStartedSince(this.opts.orchesjobBin, reservation.runKey, claimedAtMs);
      if (lookup.kind === 'found') return { ok: true, jobId: lookup.jobId, recovered: true };
      if (lookup.kind === 'none') return failed;
      return { ...failed, error: `${failed.error}\n(could not ask orchesjob whether the job started: ${lookup.error})` };
    } catch (error) {
      return { ...failed, error: `${failed.error}\n(could not ask orchesjob whether the job started: ${messageOf(error)})` };
    }
  }

  /** Apply each outcome in one transaction; returns those whose reservation is no longer DISPATCHING. */
  private async recordBatch(tx: Ledger['db'], batch: readonly PendingRecord[], nowMs: number): Promise<PendingRecord[]> {
    const unrecorded: PendingRecord[] = [];
    for (const item of batch) {
      const { outcome } = item;
      const command = outcome.ok
        ? ({ type: 'RecordDispatch', jobId: outcome.jobId, recovered: outcome.recovered === true } as const)
        : ({ type: 'RecordFailure', error: outcome.error, exitCode: outcome.exitCode, nowMs } as const);
      try {
        // decide() throws before anything is appended, so the other outcomes of the batch still commit.
        await applyCommand(tx, await this.current(tx, item.reservation.reservationId), command, { nowMs, actor: this.actor });
      } catch (error) {
        if (!(error instanceof IllegalTransitionError)) throw error;
        unrecorded.push(item);
      }
    }
    return unrecorded;
  }

  private async current(tx: Ledger['db'], reservationId: string): Promise<Reservation> {
    const state = await findById(tx, reservationId);
    if (state === null) throw new IllegalTransitionError('RecordDispatch', 'NONE', `reservation ${reservationId} is gone`);
    return state;
  }

  private track(task: Promise<void>): void {
    const tracked = task
      .catch((error: unknown) => this.reportError(error))
      .finally(() => {
        this.inFlight.delete(tracked);
        if (this.stopping) this.waker.wake(); // the drain after stop() ends with the last one
      });
    this.inFlight.add(tracked);
  }

  /** Print the ledger events after the last printed position, in order, once each. */
  private printNewEvents(): Promise<void> {
    // A failed print (a read error) fails this call only; the next one starts from the last line printed.
    this.printing = this.printing.catch(() => undefined).then(async () => {
      for (;;) {
        const events = await readEventsAfter(this.opts.ledger.db, this.printedPosition, PRINT_PAGE);
        const lines: string[] = [];
        for (const event of events) lines.push(formatLine(eventLine(event, event.type === 'Expired' ? await this.stateAt(event) : null)));
        if (lines.length > 0) this.opts.out(lines.join('\n')); // one write for the page
        this.printedPosition = events.at(-1)?.position ?? this.printedPosition;
        if (events.length < PRINT_PAGE) return;
      }
    });
    return this.printing;
  }

  /** A reservation as it was right after `event` (the fold of its stream up to that version). */
  private async stateAt(event: StoredEvent): Promise<ReservationState> {
    const stream = await readStream(this.opts.ledger.db, event.reservationId);
    return fold(stream.filter((e) => e.version <= event.version));
  }

  private emit(line: LogLine): void {
    this.opts.out(formatLine(line));
  }

  private reportError(error: unknown): void {
    this.opts.err(formatLine(lifecycleLine('dispatcher_error', { error: messageOf(error) }, this.opts.clock())));
  }

  private databaseFile(): { dev: number; ino: number } | null {
    try {
      const { dev, ino } = statSync(this.opts.ledger.path);
      return { dev, ino };
    } catch {
      return null;
    }
  }

  /**
   * The database must still be the file this dispatcher opened, at its path. Moved away or deleted:
   * pause with a `dispatcher_error` each error sleep (other processes would create a new, empty
   * database there) and resume when it is back. Replaced by another file: stop, so that the process
   * manager restarts the dispatcher on the new one.
   */
  private checkDatabaseFile(): void {
    const current = this.databaseFile();
    const path = this.opts.ledger.path;
    if (current === null) {
      throw new Error(`database ${path} is missing (moved or deleted); waiting for it to come back`);
    }
    const opened = this.fileIdentity;
    if (opened !== null && (current.dev !== opened.dev || current.ino !== opened.ino)) {
      this.replaced = true;
      this.stop();
      throw new Error(`database ${path} was replaced by another file; stopping so that the dispatcher is restarted on it`);
    }
  }
}
