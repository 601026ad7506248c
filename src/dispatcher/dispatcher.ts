import { ulid } from 'ulid';
import { committedElsewhere, LedgerWaker } from '../db/waker.js';
import { messageOf } from '../errors.js';
import { lastPosition } from '../events/store.js';
import { LedgerTail } from '../events/tail.js';
import { OrchesjobClient } from '../orchesjob/client.js';
import { nextWakeTimes } from '../projections/reservations.js';
import { FileGuard } from './guard.js';
import { eventLines, formatLine, lifecycleLine, startedLine } from './log.js';
import { selfOwner } from './owner.js';
import type { PassContext } from './pass.js';
import { notRecorded, writePass } from './pass.js';
import type { DispatcherOptions } from './ports.js';
import { freeSlots, recoveryDue, sleepMs } from './policy.js';
import { recoverStaleClaims } from './recovery.js';
import { Starts } from './starts.js';

const PRINT_PAGE = 500; // events read per query when printing

/**
 * The long-lived dispatcher (`orchesjob-reserver run`): a loop of passes. Each pass, in one write
 * transaction (pass.ts), expires due reservations, claims ready ones up to the free slots and records
 * the starts that finished; then it prints every new ledger event as a JSON line, each after the commit
 * that wrote it, and starts what it claimed (starts.ts). It sleeps until the earliest of its poll
 * interval and the next `not_before`/`expires_at` (policy.ts), and wakes early when another process
 * commits or a start finishes.
 */
export class Dispatcher {
  private readonly opts: Required<Omit<DispatcherOptions, 'policyPath'>>;
  private readonly id = ulid();
  private readonly pass: PassContext;
  private readonly starts: Starts;
  private tail = new LedgerTail(0);
  private guard: FileGuard | null = null;
  private lastRecoveryMs = 0;
  private stopping = false;
  /** Set when the database file was replaced: `run` then exits 1 so that its process manager restarts it. */
  replaced = false;

  constructor(options: DispatcherOptions) {
    const { ledger } = options;
    this.opts = {
      out: (line) => process.stdout.write(`${line}\n`),
      err: (line) => process.stderr.write(`${line}\n`),
      clock: Date.now,
      observer: {},
      ...options,
      client: options.client ?? new OrchesjobClient(options.orchesjobBin),
      waker: options.waker ?? new LedgerWaker(ledger.path, committedElsewhere(ledger.raw)),
    };
    const { clock, client, startOptions, startTimeoutMs, waker, observer } = this.opts;
    const actor = `dispatcher:${this.id}`;
    this.pass = { db: ledger.db, actor, clock, owner: selfOwner(this.id), client, startOptions, startTimeoutMs, policyPath: options.policyPath };
    this.starts = new Starts({ client, clock, startTimeoutMs, wake: () => waker.wake(), reportError: (e) => this.reportError(e), observer });
    this.starts.onEnded = () => this.stopping && waker.wake(); // the drain after stop() ends with the last one
  }

  /** Run until `stop()`; resolves once the starts in flight are recorded and `reserver_stopped` printed. */
  async run(): Promise<void> {
    const { ledger, clock, waker } = this.opts;
    const startedAt = clock();
    this.tail = new LedgerTail(await lastPosition(ledger.db)); // history before now is not printed
    this.guard = new FileGuard(ledger.path);
    this.opts.out(formatLine(startedLine({ ...this.opts, dispatcherId: this.id, spawner: await this.opts.client.spawner() }, startedAt)));
    await this.recover();
    const problem = await this.opts.client.checkCanStartChild(); // a child that cannot start says so now
    if (problem !== null) this.reportError(new Error(problem));
    waker.watch();
    this.opts.observer.ready?.();
    try {
      // After stop(), passes go on without claiming until every start in flight is recorded.
      while (!this.stopping || this.starts.unrecorded > 0) {
        let sleep: number | null = null;
        try {
          sleep = await this.tick();
        } catch (error) {
          this.reportError(error); // then --error-sleep
        }
        await this.opts.observer.looped?.(clock(), sleep !== null);
        if (!this.stopping || this.starts.unrecorded > 0) await waker.sleep(sleep ?? this.opts.errorSleepMs);
        // Let the I/O already waiting run first (starts that exited meanwhile queue their outcomes),
        // so that one pass records them all in one transaction: one sync for the burst.
        await new Promise((resolve) => setImmediate(resolve));
      }
      await this.print();
    } finally {
      waker.close();
    }
    this.opts.out(formatLine(lifecycleLine('reserver_stopped', { dispatcher_id: this.id }, clock())));
  }

  /** Ask the loop to stop: no new claims; starts in flight finish and are recorded. */
  stop(): void {
    this.stopping = true;
    this.opts.waker.wake();
  }

  /** One pass; returns how long to sleep before the next. */
  private async tick(): Promise<number> {
    const { clock, maxConcurrentStarts, pollIntervalMs, waker } = this.opts;
    waker.clear(); // this pass sees what every wake so far announced; a wake from here on is kept
    // A database moved away, deleted or replaced takes no new work; starts running are recorded, as on stop.
    const file = this.stopping || this.guard === null ? ({ ok: true } as const) : this.guard.check();
    if (!file.ok && file.replaced) {
      this.replaced = true;
      this.stop();
    }
    const claiming = !this.stopping && file.ok;
    if (claiming && recoveryDue(clock(), this.lastRecoveryMs, pollIntervalMs)) await this.recover();
    const batch = this.starts.queued();
    const slots = freeSlots(maxConcurrentStarts, this.starts.running, claiming);
    const { claimed, unrecorded, held, paused } = await writePass(this.pass, { claiming, slots, batch });
    this.starts.settle(batch.length);
    try {
      await this.print(); // orchesjob_start_call is printed before the spawn
    } finally {
      // Whatever printing does (lines print on a later pass), claims start and recorded starts end.
      for (const { reservation, argv } of claimed) this.starts.launch(reservation, argv);
      for (const item of batch) item.recorded();
      for (const why of [...unrecorded.map(notRecorded), ...(held === null ? [] : [held])]) this.reportError(new Error(why));
    }
    if (!file.ok) throw new Error(file.message); // one dispatcher_error, then errorSleepMs
    // Held gated reservations are due but passed over: the loop sleeps until the next time after now.
    const next = await nextWakeTimes(this.opts.ledger.db, held === null ? null : Math.floor(clock() / 1000));
    return sleepMs({ nowMs: clock(), ...next, pollIntervalMs, claiming, paused, slotFree: this.starts.running < maxConcurrentStarts });
  }

  /** Settle the claims of dispatchers that are gone; what it writes is printed like every event. */
  private async recover(): Promise<void> {
    const { ledger, clock, client, startTimeoutMs } = this.opts;
    this.lastRecoveryMs = clock();
    try {
      const context = { actor: this.pass.actor, clock, client, defaultStartTimeoutMs: startTimeoutMs, selfId: this.id };
      for (const error of (await recoverStaleClaims(ledger.db, context)).errors) this.reportError(new Error(error));
    } catch (error) {
      this.reportError(error);
    }
    await this.print();
  }

  /** Print the ledger events after the last printed, in order, once each: one write per page. */
  private async print(): Promise<void> {
    const { db } = this.opts.ledger;
    await this.tail.drain(db, async (events) => this.opts.out(await eventLines(db, events)), { pageSize: PRINT_PAGE });
  }

  private reportError(error: unknown): void {
    this.opts.err(formatLine(lifecycleLine('dispatcher_error', { error: messageOf(error) }, this.opts.clock())));
  }
}
