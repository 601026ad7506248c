import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { StoredEvent } from './store.js';
import { readEventsAfter } from './store.js';

/** How far one `drain` goes. */
export interface DrainLimits {
  /** Events read per query: a backlog of millions never sits in memory at once. */
  readonly pageSize: number;
  /** Deliver at most this many events. Default: no cap. */
  readonly limit?: number;
  /** Deliver nothing after this position. Default: up to the last committed event. */
  readonly until?: number | null;
  /** Asked before each page: false stops the drain (the reader went away). */
  readonly more?: () => boolean;
}

/**
 * The ledger from a position on, each event once, in ledger order: what the dispatcher prints as JSON
 * Lines and what `events --follow` prints. SQLite makes positions visible in order (one writer at a
 * time assigns and commits them), so reading after the last position delivered misses nothing.
 *
 * Drains run one after another (a call made while one runs waits for it). A page that `deliver`
 * fails on fails that call only: the position stays before it, and the next drain starts there.
 */
export class LedgerTail {
  private at: number;
  private running: Promise<unknown> = Promise.resolve();

  constructor(position: number) {
    this.at = position;
  }

  /** The last position delivered. */
  get position(): number {
    return this.at;
  }

  /** Hand every event after the position to `deliver`, a page at a time; returns how many it was given. */
  drain(db: Kysely<Database>, deliver: (events: StoredEvent[]) => void | Promise<void>, limits: DrainLimits): Promise<number> {
    const run = this.running.catch(() => undefined).then(() => this.pages(db, deliver, limits));
    this.running = run;
    return run;
  }

  private async pages(db: Kysely<Database>, deliver: (events: StoredEvent[]) => void | Promise<void>, limits: DrainLimits): Promise<number> {
    const until = limits.until ?? Number.POSITIVE_INFINITY;
    let remaining = limits.limit ?? Number.POSITIVE_INFINITY;
    let delivered = 0;
    while (remaining > 0 && this.at < until && (limits.more?.() ?? true)) {
      const want = Math.min(limits.pageSize, remaining);
      const page = await readEventsAfter(db, this.at, want);
      const events = page.filter((e) => e.position <= until);
      const last = events.at(-1);
      if (last === undefined) break;
      await deliver(events);
      this.at = last.position;
      delivered += events.length;
      remaining -= events.length;
      if (events.length < page.length || page.length < want) break; // caught up
    }
    return delivered;
  }
}
