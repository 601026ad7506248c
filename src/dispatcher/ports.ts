import type { Ledger } from '../db/handle.js';
import type { Waker } from '../db/waker.js';
import type { Reservation } from '../events/index.js';
import type { DispatchClient } from '../orchesjob/client.js';

/**
 * What a dispatcher is given: its settings, and the ports through which it meets the world. `run`
 * passes the real ones; an in-process test passes a fake clock, a fake orchesjob and sleeps it ends
 * itself (test/int/dispatcher-*.int.test.ts).
 */
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
  /** `run --policy`: the gate's policy, re-checked for each reservation made through the gate when it is due. */
  readonly policyPath?: string | undefined;
  /** JSON Lines (stdout) and `dispatcher_error` lines (stderr): lines joined by newlines, without the last. */
  readonly out?: (lines: string) => void;
  readonly err?: (line: string) => void;
  /** Epoch milliseconds. Default: `Date.now`. */
  readonly clock?: () => number;
  /** How orchesjob is started and asked. Default: the real one, at `orchesjobBin`. */
  readonly client?: DispatchClient;
  /** The sleeps between passes. Default: woken by other processes' commits to the ledger. */
  readonly waker?: Waker;
  /** Who watches the loop (`run`: the metrics file, systemd's notifications). Default: nobody. */
  readonly observer?: DispatcherObserver;
}

/**
 * What the loop tells whoever watches it, as it happens; it never prints. Each method is optional; an
 * observer reports its own failures and never throws into the loop.
 */
export interface DispatcherObserver {
  /** Start-up recovery is done and the loop begins (systemd's `READY=1`). */
  ready?(): void;
  /** `orchesjob start` is called for `reservation` (just claimed), at `atMs`. */
  starting?(reservation: Reservation, atMs: number): void;
  /**
   * One turn of the loop ended at `atMs`, before its sleep; `ok` unless its pass failed (reported as a
   * `dispatcher_error`). The loop waits for it: the metrics it writes are read between two passes.
   */
  looped?(atMs: number, ok: boolean): Promise<void> | void;
}

