import type { FSWatcher } from 'node:fs';
import { watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Ledger } from './handle.js';

/** Delays (ms) of the checks after a change of the file, until another connection's commit shows. */
const FOLLOW_UP_MS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** Sleeps that end early: what a loop waits on between two passes. */
export interface Waker {
  /** Start noticing other processes' commits. */
  watch(): void;
  /** Resolves after `ms`, or at once on a wake (one that came while nobody slept is kept). */
  sleep(ms: number): Promise<void>;
  wake(): void;
  /**
   * Forget a kept wake: the caller is about to look at everything a wake so far announced (a pass
   * begins). Without it, two wakes close together (two starts exiting in one turn of the event loop)
   * would leave the second kept after the pass that saw both, and cost a pass with nothing to do.
   */
  clear(): void;
  close(): void;
}

/**
 * Sleeps that end early: when another connection commits to the database (its main file or its WAL
 * changed, and PRAGMA data_version says a commit shows) or when `wake()` is called. A wake that comes while nobody sleeps is kept, so the next
 * sleep returns at once and no change is missed. Without a watch (unsupported, failed), sleeps still
 * end at their timeout, which bounds the delay.
 *
 * A writer's WAL frames change the file before its commit is visible: with `synchronous = FULL` the
 * commit waits for its fsync first (src/db/open.ts), and no file event follows it (the commit shows
 * in the shared memory). So after each change `committed` is asked at once and then again with growing
 * delays for about two seconds; the sleep ends when it says yes.
 */
export class LedgerWaker implements Waker {
  private wakeUp: (() => void) | null = null;
  private pending = false;
  private watcher: FSWatcher | null = null;
  private followUp: NodeJS.Timeout | null = null;

  constructor(
    private readonly path: string,
    private readonly committed: () => boolean,
  ) {}

  /** Start watching the database's folder. Call before the first read, so no write slips between. */
  watch(): void {
    const file = basename(this.path);
    try {
      this.watcher = watch(dirname(this.path), (_type, name) => {
        if (name !== file && name !== `${file}-wal`) return;
        // This process's own writes change the file too: only another connection's commit wakes. The
        // change may also be a commit that is not visible yet: the follow-ups start again either way.
        if (this.check()) this.wake();
        this.watchForCommit(0);
      });
      this.watcher.on('error', () => this.close());
    } catch {
      this.watcher = null;
    }
  }

  sleep(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    }).finally(() => {
      this.wakeUp = null;
    });
  }

  wake(): void {
    if (this.wakeUp === null) this.pending = true;
    else this.wakeUp();
  }

  clear(): void {
    this.pending = false;
  }

  close(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.followUp !== null) clearTimeout(this.followUp);
    this.followUp = null;
  }

  /** `committed`, and yes when it cannot tell (the woken loop then meets the error and reports it). */
  private check(): boolean {
    try {
      return this.committed();
    } catch {
      return true;
    }
  }

  /** Ask `committed` after each delay from `step` on, until it says yes; a new change starts again. */
  private watchForCommit(step: number): void {
    if (this.followUp !== null) clearTimeout(this.followUp);
    this.followUp = null;
    const delay = FOLLOW_UP_MS[step];
    if (delay === undefined) return;
    this.followUp = setTimeout(() => {
      this.followUp = null;
      if (this.check()) this.wake();
      else this.watchForCommit(step + 1);
    }, delay);
    this.followUp.unref();
  }
}

/** True when another connection committed to the database since the last call (PRAGMA data_version). */
export function committedElsewhere(raw: Ledger['raw']): () => boolean {
  let seen = raw.pragma('data_version', { simple: true });
  return () => {
    const now = raw.pragma('data_version', { simple: true });
    const changed = now !== seen;
    seen = now;
    return changed;
  };
}
