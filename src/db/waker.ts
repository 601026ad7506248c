import type { FSWatcher } from 'node:fs';
import { watch } from 'node:fs';
import { basename, dirname } from 'node:path';

/**
 * Sleeps that end early: when the database file changes (another process wrote: its main file or its
 * WAL changed) or when `wake()` is called. A wake that comes while nobody sleeps is kept, so the next
 * sleep returns at once and no change is missed. Without a watch (unsupported, failed), sleeps still
 * end at their timeout, which bounds the delay.
 */
export class LedgerWaker {
  private wakeUp: (() => void) | null = null;
  private pending = false;
  private watcher: FSWatcher | null = null;

  constructor(private readonly path: string) {}

  /** Start watching the database's folder. Call before the first read, so no write slips between. */
  watch(): void {
    const file = basename(this.path);
    try {
      this.watcher = watch(dirname(this.path), (_type, name) => {
        if (name === file || name === `${file}-wal`) this.wake();
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

  close(): void {
    this.watcher?.close();
    this.watcher = null;
  }
}
