import { messageOf } from '../errors.js';
import type { Reservation } from '../events/index.js';
import type { DispatchClient, StartOutcome } from '../orchesjob/client.js';
import { outcomeOfFailedStart } from './policy.js';
import type { DispatcherObserver } from './ports.js';

/** A finished start whose outcome is not committed yet. */
export interface PendingRecord {
  readonly reservation: Reservation;
  readonly outcome: StartOutcome;
  /** Called once the outcome is committed and printed: the start is then over. */
  readonly recorded: () => void;
}

/**
 * The starts this dispatcher runs: how many `orchesjob start` processes run now (what
 * `--max-concurrent-starts` bounds), which dispatches are not yet recorded (a stop waits for them), and
 * the outcomes waiting for the loop's next write transaction (group commit: one sync for a burst).
 */
export class Starts {
  /** `orchesjob start` processes running now. */
  running = 0;
  /** Called when a dispatch ended (recorded, or failed with `reportError`). */
  onEnded: () => void = () => undefined;
  /** Every dispatch not yet recorded and printed. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Finished starts, in the order they finished. */
  private readonly finished: PendingRecord[] = [];

  constructor(
    private readonly ports: {
      readonly client: DispatchClient;
      readonly clock: () => number;
      readonly startTimeoutMs: number;
      /** Wake the loop: an outcome is queued, or a slot was freed. */
      readonly wake: () => void;
      readonly reportError: (error: unknown) => void;
      /** Told of each start call (the metrics' dispatch lateness). */
      readonly observer?: DispatcherObserver;
    },
  ) {}

  /** Dispatches not yet recorded. */
  get unrecorded(): number {
    return this.inFlight.size;
  }

  /** Start a claimed reservation; its outcome is queued for the loop to record. */
  launch(reservation: Reservation, argv: readonly string[]): void {
    const tracked = this.dispatch(reservation, argv)
      .catch((error: unknown) => this.ports.reportError(error))
      .finally(() => {
        this.inFlight.delete(tracked);
        this.onEnded();
      });
    this.inFlight.add(tracked);
  }

  /** The outcomes queued now (the loop records them, then calls `settle` with as many). */
  queued(): PendingRecord[] {
    return this.finished.slice();
  }

  /** The first `count` queued outcomes are committed. */
  settle(count: number): void {
    this.finished.splice(0, count);
  }

  private async dispatch(reservation: Reservation, argv: readonly string[]): Promise<void> {
    this.running++;
    let outcome: StartOutcome;
    try {
      this.ports.observer?.starting?.(reservation, this.ports.clock());
      outcome = await this.ports.client.start(argv, this.ports.startTimeoutMs);
    } finally {
      // The slot is free once orchesjob exited: the next claim need not wait for this recording.
      this.running--;
    }
    if (!outcome.ok) {
      this.ports.wake(); // the freed slot need not wait for orchesjob's answer below
      outcome = await this.checkFailedStart(reservation, outcome);
    }
    // Recorded by the loop's next write, with its claims (one sync); resolved once committed and printed.
    // A job id must never be lost: on a database error the outcome stays queued and is written again.
    const settled = outcome;
    await new Promise<void>((recorded) => {
      this.finished.push({ reservation, outcome: settled, recorded });
      this.ports.wake();
    });
  }

  /** A failed start may still have created the job: ask orchesjob before recording a failure. */
  private async checkFailedStart(reservation: Reservation, failed: Extract<StartOutcome, { ok: false }>): Promise<StartOutcome> {
    const claimedAtMs = reservation.claim?.claimedAtMs ?? this.ports.clock();
    try {
      return outcomeOfFailedStart(failed, await this.ports.client.jobStartedSince(reservation.runKey, claimedAtMs));
    } catch (error) {
      return outcomeOfFailedStart(failed, { kind: 'error', error: messageOf(error) });
    }
  }
}
