import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import { runParsed } from '../cli/help.js';
import { integerFlag, POSITIVE_INTEGER } from '../cli/integer.js';
import { dbPath } from '../cli/paths.js';
import { onStopSignals } from '../cli/signals.js';
import type { Ledger } from '../db/open.js';
import { openLedger } from '../db/open.js';
import { committedElsewhere, LedgerWaker } from '../db/waker.js';
import { lastPosition } from '../events/store.js';
import { LedgerTail } from '../events/tail.js';
import { stringifySorted } from '../json.js';
import { eventJson } from '../output.js';

/** Events read per query: a backlog of millions never sits in memory at once. */
const BATCH_SIZE = 1000;
/** With --follow, the longest wait between two reads when no database change was noticed. */
const POLL_INTERVAL_MS = 1000;

export const command = defineCommand({
  meta: {
    name: 'events',
    description:
      'Print ledger events as JSON Lines (one compact object per line, keys sorted), ascending by position: position, event_id, reservation_id, run_key, version, type, data, recorded_at, recorded_at_iso, recorded_at_ms, actor. ' +
      '--since is exclusive: resume with the last position printed. ' +
      'With --follow, keep printing events as any process appends them (woken by database changes, at worst after 1 s); with --follow --limit N, exit once N events are printed, waiting for them as needed. ' +
      'SIGTERM/SIGINT: print the events appended before the signal, then exit 0; a second signal exits at once.\n\n' +
      'Usage: orchesjob-reserver events [--since POSITION] [--limit N] [--follow]\n' +
      'Exit codes: 0 ok (also when stopped by a signal), 1 general error, 2 invalid arguments.\n' +
      'Example: orchesjob-reserver events --since 1200 --follow',
  },
  args: {
    since: {
      type: 'string',
      valueHint: 'POSITION',
      description: 'Print only events after this ledger position (exclusive). Default: 0, from the start',
    },
    limit: {
      type: 'string',
      valueHint: 'N',
      description: 'Print at most N events (with --follow: exit once N are printed). Default: no limit',
    },
    follow: { type: 'boolean', description: 'Keep printing new events until SIGTERM/SIGINT' },
    ...commonArgs,
  },
  run: runParsed(async ({ flags }) => {
    const since = integerFlag(flags, 'since', { min: 0, expected: 'a ledger position: an integer >= 0' }) ?? 0;
    const limit = integerFlag(flags, 'limit', POSITIVE_INTEGER) ?? null;
    const follow = flags.follow;
    const path = dbPath(flags);

    const tail = new EventTail({ since, limit, follow });
    // Installed before the database opens: a signal during start-up is a clean stop too.
    const removeSignalHandlers = onStopSignals(() => tail.stop(), 'orchesjob-reserver events');
    try {
      const ledger = await openLedger(path);
      try {
        await tail.run(ledger);
      } finally {
        await ledger.close();
      }
    } finally {
      removeSignalHandlers();
    }
  }),
});

interface TailOptions {
  /** Print events after this position (exclusive). */
  readonly since: number;
  /** Stop after this many events; null: no cap. */
  readonly limit: number | null;
  readonly follow: boolean;
  readonly out?: NodeJS.WriteStream;
}

/**
 * Prints the ledger from a position on (the dispatcher's `LedgerTail`), and with `follow` keeps doing
 * so as other processes append, until a stop, the limit, or the reader going away.
 */
class EventTail {
  private readonly tail: LedgerTail;
  private remaining: number;
  private readonly follow: boolean;
  private readonly out: NodeJS.WriteStream;
  private stopRequested = false;
  /** Set on the first read after a stop request: print through this position, then exit. */
  private stopAt: number | null = null;
  /** The reader went away (EPIPE) or stdout failed: nothing more can be delivered. */
  private outputClosed = false;
  private outputError: Error | null = null;
  private waker: LedgerWaker | null = null;

  constructor(options: TailOptions) {
    this.tail = new LedgerTail(options.since);
    this.remaining = options.limit ?? Number.POSITIVE_INFINITY;
    this.follow = options.follow;
    this.out = options.out ?? process.stdout;
  }

  /** Ask a following tail to finish: events appended up to now are still printed. */
  stop(): void {
    this.stopRequested = true;
    this.wake();
  }

  async run(ledger: Ledger): Promise<void> {
    // Left attached: a failed write may report after run() returns. A reader that went away (EPIPE,
    // `events --follow | head -n 3`) ends the tail quietly; any other output error fails the command.
    this.out.on('error', (error: NodeJS.ErrnoException) => {
      this.outputClosed = true;
      if (error.code !== 'EPIPE') this.outputError ??= error;
      this.wake();
    });
    // Watch before the first read, so a write landing between that read and the watch still wakes us.
    this.waker = new LedgerWaker(ledger.path, committedElsewhere(ledger.raw));
    if (this.follow) this.waker.watch();
    try {
      for (;;) {
        await this.catchUp(ledger);
        if (!this.follow || this.done()) break;
        await this.waker.sleep(POLL_INTERVAL_MS);
      }
    } finally {
      this.waker.close();
    }
    if (this.outputError !== null) throw this.outputError;
  }

  private done(): boolean {
    return this.remaining <= 0 || this.outputClosed || this.stopAt !== null;
  }

  /** Print every event visible now (or up to `stopAt`, once a stop was asked), a bounded page at a time. */
  private async catchUp(ledger: Ledger): Promise<void> {
    const stopPending = () => this.stopRequested && this.stopAt === null;
    do {
      if (stopPending()) this.stopAt = await lastPosition(ledger.db);
      this.remaining -= await this.tail.drain(ledger.db, (events) => this.write(events.map((e) => `${stringifySorted(eventJson(e))}\n`).join('')), {
        pageSize: BATCH_SIZE,
        limit: this.remaining,
        until: this.stopAt,
        more: () => !this.outputClosed && !stopPending(),
      });
    } while (stopPending() && !this.outputClosed);
  }

  /** Write complete lines, waiting for the reader when the pipe is full (memory stays bounded). */
  private write(text: string): Promise<void> {
    if (this.out.write(text)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.out.off('drain', done);
        this.out.off('error', done);
        this.out.off('close', done);
        resolve();
      };
      this.out.once('drain', done);
      this.out.once('error', done);
      this.out.once('close', done);
    });
  }

  /** End a sleep early: a stop, or the reader went away. (Before `run`, `catchUp` sees the stop.) */
  private wake(): void {
    this.waker?.wake();
  }
}
