import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Waker } from '../db/waker.js';
import type { DispatcherObserver } from '../dispatcher/ports.js';
import { messageOf } from '../errors.js';
import type { Reservation } from '../events/index.js';
import { dueAtMs } from '../events/index.js';
import type { Notifier } from '../systemd/notify.js';
import { Histogram, LATENESS_BUCKETS, renderMetrics } from './exposition.js';
import type { LedgerMetrics } from './ledger.js';
import { readLedgerMetrics } from './ledger.js';
import { writeAtomically } from './textfile.js';

/** The metrics are read from the ledger, and the file written, at most this often. */
export const MIN_REFRESH_MS = 1000;

export interface MonitorOptions {
  readonly db: Kysely<Database>;
  readonly clock: () => number;
  /** `run --metrics-file`: where the metrics go, or null. */
  readonly metricsFile: string | null;
  /** systemd's notifications, or null (no `NOTIFY_SOCKET`). */
  readonly notifier: Notifier | null;
  readonly version: string;
  /** A failure of the monitor's own (the file cannot be written): reported once until it works again. */
  readonly reportError: (message: string) => void;
}

/**
 * `run`'s monitoring, one observer of the dispatcher's loop (src/dispatcher/ports.ts): the metrics file
 * for node_exporter's textfile collector, and systemd's notifications (`READY=1` once recovered,
 * `WATCHDOG=1` from the loop, `STATUS=`, `STOPPING=1`).
 *
 * The file is rewritten after a turn of the loop, which comes at least every poll interval and when
 * something happened (a commit by another process, a start that ended), at most once a second: a turn
 * within a second of the last write asks for one at the end of that second. Each write reads the
 * ledger's figures anew (a few rows and one index range: src/metrics/ledger.ts) and adds what only this
 * process knows (the lateness of its starts, its last pass). The watchdog is fed by the loop itself, so
 * a loop that is stuck stops feeding it and systemd restarts the dispatcher.
 */
export class Monitor implements DispatcherObserver {
  private readonly lateness = new Histogram(LATENESS_BUCKETS);
  private lastTickMs = 0;
  private lastRefreshMs = Number.NEGATIVE_INFINITY;
  private lastWatchdogMs = Number.NEGATIVE_INFINITY;
  private lastStatus: string | null = null;
  private lastError: string | null = null;
  private later: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly opts: MonitorOptions) {}

  ready(): void {
    this.opts.notifier?.send(['READY=1', 'STATUS=dispatching (recovery done)']);
  }

  starting(reservation: Reservation, atMs: number): void {
    this.lateness.observe(Math.max(0, atMs - dueAtMs(reservation)) / 1000);
  }

  async looped(atMs: number, ok: boolean): Promise<void> {
    if (ok) this.lastTickMs = atMs;
    this.feedWatchdog(atMs);
    if (atMs - this.lastRefreshMs >= MIN_REFRESH_MS) await this.refresh();
    else this.later ??= setTimeout(() => void this.refresh(), this.lastRefreshMs + MIN_REFRESH_MS - atMs).unref();
  }

  /** SIGTERM: systemd is told before the starts in flight are waited for. */
  stopping(): void {
    this.opts.notifier?.send(['STOPPING=1', 'STATUS=stopping: recording the starts in flight']);
  }

  /** The loop has ended: nothing is refreshed after this resolves (the ledger may then be closed). */
  async close(): Promise<void> {
    this.closed = true;
    this.cancelLater();
    await this.refreshing;
  }

  /** `WATCHDOG=1`, at most four times per watchdog interval and once a second. */
  private feedWatchdog(atMs: number): void {
    const interval = this.opts.notifier?.watchdogMs ?? null;
    if (interval === null || atMs - this.lastWatchdogMs < Math.min(MIN_REFRESH_MS, interval / 4)) return;
    this.lastWatchdogMs = atMs;
    this.opts.notifier?.send(['WATCHDOG=1']);
  }

  /** Read the figures, write the file, update systemd's status; one at a time. */
  private refresh(): Promise<void> {
    this.refreshing ??= this.readAndWrite().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private cancelLater(): void {
    if (this.later !== null) clearTimeout(this.later);
    this.later = null;
  }

  private async readAndWrite(): Promise<void> {
    const { db, clock, metricsFile, notifier, version } = this.opts;
    this.cancelLater(); // this refresh is the one it asked for
    if (this.closed || (metricsFile === null && notifier === null)) return;
    const nowMs = clock();
    this.lastRefreshMs = nowMs;
    try {
      const ledger = await readLedgerMetrics(db, nowMs);
      if (metricsFile !== null) writeAtomically(metricsFile, renderMetrics(ledger, { lateness: this.lateness, lastTickMs: this.lastTickMs }, version));
      const status = statusLine(ledger);
      if (notifier !== null && status !== this.lastStatus) notifier.send([`STATUS=${status}`]);
      this.lastStatus = status;
      this.lastError = null;
    } catch (error) {
      const message = `metrics ${metricsFile === null ? 'not read' : `file ${metricsFile} not written`}: ${messageOf(error)}`;
      if (message !== this.lastError) this.opts.reportError(message);
      this.lastError = message;
    }
  }
}

/**
 * Under a watchdog (`watchdogMs`, null: none) the loop must turn well within its interval whatever
 * `--poll-interval` and `--error-sleep` say: the sleeps of `waker` then end after a third of it at
 * most (a turn with nothing to do costs a few reads).
 */
export function wakeForWatchdog(waker: Waker, watchdogMs: number | null): Waker {
  if (watchdogMs === null) return waker;
  const cap = Math.max(1, Math.floor(watchdogMs / 3));
  return {
    watch: () => waker.watch(),
    wake: () => waker.wake(),
    clear: () => waker.clear(),
    close: () => waker.close(),
    sleep: (ms) => waker.sleep(Math.min(ms, cap)),
  };
}

/** systemd's one-line status (`systemctl status`): what waits, and where the ledger is. */
export function statusLine(m: LedgerMetrics): string {
  const due = m.due === 0 ? 'nothing due' : `${m.due} due (oldest waiting ${Math.floor(m.oldestDueAgeSeconds)} s)`;
  const reserved = m.reservations.get('RESERVED') ?? 0;
  const dispatching = m.reservations.get('DISPATCHING') ?? 0;
  return `${m.paused ? 'paused; ' : ''}${due}, ${reserved} reserved, ${dispatching} dispatching, ledger position ${m.position}`;
}
