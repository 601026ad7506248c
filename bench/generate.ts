/**
 * Ledger generator for the scale bench: `generateLedger(path, events)` writes a ledger of exactly
 * `events` events through the ledger's one write call (`execute`/`write` of src/ledger.ts), one
 * transaction per simulated moment (its clock reading is that moment, and so are the ids' times), in
 * one process. The file is bench data: it is written with `synchronous = OFF`, and checkpointed and
 * closed before use.
 *
 * What it simulates, over ~6 months of explicit clocks (events appended in time order, streams
 * interleaved as a real dispatcher would write them):
 * - most reservations reserved -> claimed -> dispatched (some with a `not_before`, some with an
 *   `expires_at` that did not bite, metadata and start options as the Airflow provider sends them);
 * - some dispatch failed, some retried (`--max-attempts 3`) then dispatched, some claims released
 *   after a dispatcher crash then claimed again, some expired, some cancelled;
 * - a few still waiting, due next year (so that an idle `run` over the ledger stays idle);
 * - a nightly `clean` of most terminal reservations older than a week (the projection then holds far
 *   fewer rows than the ledger has streams), and some cleaned run keys re-reserved later.
 *
 * `cachedLedger(events)` keeps one generated file per size under dist-bench/ledgers/ (gitignored).
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { monotonicFactory } from 'ulid';
import { openLedger } from '../src/db/open.js';
import { startArgv } from '../src/orchesjob/argv.js';
import type { Reservation, ReservationCommand } from '../src/events/index.js';
import type { WriteOptions } from '../src/ledger.js';
import { execute, write } from '../src/ledger.js';

/** Bump when the generated mix changes: cached files of another version are not reused. */
export const GENERATOR_VERSION = 2;

const DAY_MS = 86_400_000;
const SPAN_MS = 180 * DAY_MS;
/** Terminal reservations become cleanable this long after their last event. */
const CLEAN_AGE_MS = 7 * DAY_MS;
const CLEAN_SHARE = 0.7;
/** Share of cleaned run keys that come back (a re-run of the same DAG date, a recurring key). */
const REUSE_SHARE = 0.3;

export interface GenerateResult {
  readonly path: string;
  readonly events: number;
  readonly streams: number;
  /** Rows left in the `reservations` projection. */
  readonly liveRows: number;
  readonly cleaned: number;
  readonly reReserved: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
}

type Kind = 'dispatched' | 'failed' | 'retried' | 'released' | 'expired' | 'cancelled' | 'pending';
/** Events each kind appends (without a later Clean). */
const KIND_EVENTS: Record<Kind, number> = {
  dispatched: 3,
  failed: 3,
  retried: 5,
  released: 5,
  expired: 2,
  cancelled: 2,
  pending: 1,
};
const KIND_WEIGHTS: [Kind, number][] = [
  ['dispatched', 0.78],
  ['failed', 0.05],
  ['retried', 0.03],
  ['released', 0.01],
  ['expired', 0.05],
  ['cancelled', 0.078],
  ['pending', 0.002],
];

/** Deterministic PRNG (mulberry32): the same size always gives the same ledger shape. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A min-heap of scheduled steps, by time then insertion order. */
class Schedule<T> {
  private readonly heap: { at: number; seq: number; item: T }[] = [];
  private seq = 0;
  get size(): number {
    return this.heap.length;
  }
  peekAt(): number {
    return this.heap.length === 0 ? Infinity : this.heap[0]!.at;
  }
  push(at: number, item: T): void {
    const h = this.heap;
    h.push({ at, seq: this.seq++, item });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  pop(): { at: number; item: T } {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return { at: top.at, item: top.item };
  }
  private less(a: { at: number; seq: number }, b: { at: number; seq: number }): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }
}

/** One reservation in flight: its kind, its current state, and what it does next. */
interface Stream {
  kind: Kind;
  state: Reservation;
  step: number;
}

const DAGS = ['nightly_backup', 'etl_orders', 'etl_customers', 'report_daily', 'sync_inventory', 'ml_features', 'vacuum_db'];
const TASKS = ['extract', 'transform', 'load', 'export', 'notify', 'run'];

/**
 * Write a ledger of exactly `events` events at `path` (which must not exist). Prints its throughput.
 */
export async function generateLedger(
  path: string,
  events: number,
  options: { log?: (line: string) => void; seed?: number } = {},
): Promise<GenerateResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  if (existsSync(path)) throw new Error(`${path} exists; generateLedger writes a new file`);
  const t0 = performance.now();
  const rand = prng(options.seed ?? 20_260_504);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const between = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo));
  const chooseKind = (): Kind => {
    let r = rand();
    for (const [kind, w] of KIND_WEIGHTS) {
      if ((r -= w) < 0) return kind;
    }
    return 'dispatched';
  };

  const ledger = await openLedger(path);
  const end = Math.floor(Date.now() / DAY_MS) * DAY_MS - DAY_MS;
  const start = end - SPAN_MS;
  // Mean gap between reservations so that `events` spread over the whole span (~3.4 events a stream).
  const meanGapMs = SPAN_MS / Math.max(1, events / 3.4);
  const ids = monotonicFactory();
  const schedule = new Schedule<Stream>();
  /** Terminal, not yet cleaned, in the order they became terminal. */
  const terminal: { at: number; state: Reservation }[] = [];
  let terminalHead = 0;
  const freedKeys: string[] = [];

  let appended = 0;
  /** Events appended plus events the streams in flight will still append: never above `events`. */
  let committed = 0;
  let streams = 0;
  let cleaned = 0;
  let reReserved = 0;
  let nextArrival = events > 0 ? start + Math.round(meanGapMs * rand()) : Infinity;
  let nextClean = start + DAY_MS + 3 * 3_600_000; // nightly clean at 03:00
  let dispatcher = { id: ids(start), pid: between(1000, 60000), since: start };
  let jobSeq = 0;

  const owner = () => ({ dispatcher_id: dispatcher.id, host: 'edge-7', pid: dispatcher.pid, process_start: `boot:${dispatcher.pid}` });
  const dispatcherActor = () => `dispatcher:${dispatcher.id}`;

  /** The write options of a step at `at` by `actor`: the simulated moment is its clock and its ids' time. */
  const at$ = (at: number, actor: string): WriteOptions => ({ actor, now: () => at, newId: () => ids(at) });
  const apply = async (stream: Stream, command: ReservationCommand, at: number, actor: string) => {
    const { reservation, events: stored } = await execute(ledger.db, { reservationId: stream.state.reservationId }, command, at$(at, actor));
    stream.state = reservation;
    appended += stored.length;
  };

  /** A new stream: `reserve` at `at`. */
  const arrive = async (at: number): Promise<void> => {
    let kind = chooseKind();
    const budget = events - committed;
    if (KIND_EVENTS[kind] > budget) kind = budget >= 2 ? 'cancelled' : 'pending';
    let runKey: string;
    if (freedKeys.length > 0 && rand() < 0.1) {
      runKey = freedKeys.shift() as string;
      reReserved++;
    } else {
      const day = new Date(at).toISOString().slice(0, 10);
      runKey = `${pick(DAGS)}.${pick(TASKS)}-${day}-${streams}`;
    }
    const withNotBefore = kind === 'pending' || kind === 'expired' || rand() < 0.4;
    const notBefore = kind === 'pending'
      ? Math.floor((end + 365 * DAY_MS) / 1000) + between(0, 30 * 86_400)
      : withNotBefore ? Math.floor(at / 1000) + between(10, 6 * 3600) : null;
    const expiresAt = kind === 'expired'
      ? (notBefore as number) + between(60, 3600)
      : kind !== 'pending' && rand() < 0.2 ? Math.floor(at / 1000) + 7 * 3600 + between(0, 3600) : null;
    const metadata = rand() < 0.6 ? { dag_id: runKey.split('.')[0], task_id: runKey.split('.')[1]?.split('-')[0], try_number: between(1, 3) } : null;
    const command: Extract<ReservationCommand, { type: 'Reserve' }> = {
      type: 'Reserve',
      runKey,
      command: ['/opt/jobs/run.sh', '--job', runKey.split('-')[0] as string, '--date', new Date(at).toISOString().slice(0, 10)],
      orchesjobStartOptions: rand() < 0.3 ? ['--strict'] : [],
      metadata,
      notBefore,
      expiresAt,
      ...(kind === 'retried' ? { maxAttempts: 3, retryDelay: 60 } : {}),
    };
    const { reservation: state, events: stored } = await execute(ledger.db, null, command, at$(at, 'cli:reserve'));
    if (stored.length === 0) throw new Error(`generator bug: run key ${runKey} is live`);
    appended += stored.length;
    committed += KIND_EVENTS[kind];
    streams++;
    const stream: Stream = { kind, state, step: 1 };
    if (kind === 'pending') return;
    if (kind === 'cancelled') {
      schedule.push(at + between(60_000, 2 * 3_600_000), stream);
    } else if (kind === 'expired') {
      schedule.push((expiresAt as number) * 1000 + between(1, 500), stream);
    } else {
      const due = notBefore === null ? at : notBefore * 1000;
      schedule.push(due + between(1, 40), stream); // claim: a few ms late
    }
  };

  /** The stream's next step at `at`. */
  const advance = async (stream: Stream, at: number): Promise<void> => {
    const { kind, step } = stream;
    const actor = dispatcherActor();
    const claim = () =>
      apply(stream, { type: 'Claim', owner: owner(), argv: startArgv('orchesjob', [], stream.state), startTimeoutMs: 60_000 }, at, actor);
    const startMs = () => between(150, 900); // how long orchesjob start takes
    let next: number | null = null;
    if (kind === 'cancelled') {
      await apply(stream, { type: 'Cancel' }, at, 'cli:cancel');
    } else if (kind === 'expired') {
      await apply(stream, { type: 'Expire' }, at, actor);
    } else if (step === 1) {
      await claim();
      next = at + startMs();
    } else if (kind === 'dispatched' || (kind === 'retried' && step === 4) || (kind === 'released' && step === 4)) {
      await apply(stream, { type: 'RecordDispatch', jobId: `job-${(jobSeq++).toString(36).padStart(8, '0')}` }, at, actor);
    } else if (kind === 'failed') {
      await apply(stream, { type: 'RecordFailure', error: 'orchesjob start exited 1: error: command not found', exitCode: 1 }, at, actor);
    } else if (kind === 'retried' && step === 2) {
      await apply(stream, { type: 'RecordFailure', error: 'orchesjob start exited 75: temporary failure', exitCode: 75 }, at, actor);
      next = (stream.state.retryAt as number) * 1000 + between(1, 40);
    } else if (kind === 'released' && step === 2) {
      await apply(stream, { type: 'ReleaseClaim', reason: 'owner gone; orchesjob knows no job started since the claim' }, at, actor);
      next = at + between(1000, 3000);
    } else if (step === 3) {
      await claim();
      next = at + startMs();
    } else {
      throw new Error(`generator bug: ${kind} step ${step}`);
    }
    stream.step++;
    if (next !== null) schedule.push(next, stream);
    else terminal.push({ at, state: stream.state });
  };

  /** The nightly `clean`: most terminal reservations older than a week, one transaction's worth. */
  const cleanNight = async (at: number): Promise<void> => {
    const cleaning: Reservation[] = [];
    while (terminalHead < terminal.length && (terminal[terminalHead] as { at: number }).at < at - CLEAN_AGE_MS) {
      const { state } = terminal[terminalHead++] as { state: Reservation };
      if (rand() >= CLEAN_SHARE || committed >= events) continue;
      committed++;
      cleaning.push(state);
      if (rand() < REUSE_SHARE) freedKeys.push(state.runKey);
    }
    await write(ledger.db, at$(at, 'cli:clean'), async (w) => {
      for (const { reservationId } of cleaning) appended += (await w.execute({ reservationId }, { type: 'Clean' })).events.length;
    });
    cleaned += cleaning.length;
    if (terminalHead > 100_000) {
      terminal.splice(0, terminalHead);
      terminalHead = 0;
    }
  };

  try {
    ledger.raw.pragma('synchronous = OFF'); // bench data: a power cut during generation loses nothing of value
    while (appended < events) {
      const arrivalAt = committed < events ? nextArrival : Infinity;
      const stepAt = schedule.peekAt();
      const at = Math.min(arrivalAt, stepAt, nextClean);
      if (at === Infinity || (committed >= events && schedule.size === 0)) {
        throw new Error(`generator bug: stuck at ${appended} of ${events} events`);
      }
      if (at === nextClean) {
        await cleanNight(at);
        nextClean += DAY_MS;
        if (at - dispatcher.since > 7 * DAY_MS) dispatcher = { id: ids(at), pid: between(1000, 60000), since: at }; // a restart
      } else if (at === stepAt) {
        const { item } = schedule.pop();
        await advance(item, at);
      } else {
        await arrive(at);
        nextArrival = at + Math.max(1, Math.round(-Math.log(1 - rand()) * meanGapMs));
      }
    }
    const liveRows = Number(ledger.raw.prepare('SELECT count(*) AS n FROM reservations').pluck().get());
    ledger.raw.pragma('wal_checkpoint(TRUNCATE)');
    await ledger.close();
    const seconds = (performance.now() - t0) / 1000;
    const result: GenerateResult = {
      path,
      events: appended,
      streams,
      liveRows,
      cleaned,
      reReserved,
      seconds,
      eventsPerSecond: appended / seconds,
    };
    log(
      `generated ${appended} events (${streams} reservations, ${cleaned} cleaned, ${reReserved} run keys re-reserved, ` +
        `${liveRows} rows in the projection) in ${seconds.toFixed(1)} s: ${Math.round(result.eventsPerSecond)} events/s, ` +
        `${(statSync(path).size / 2 ** 20).toFixed(0)} MiB`,
    );
    return result;
  } catch (error) {
    await ledger.close().catch(() => undefined);
    throw error;
  }
}

const root = join(new URL('.', import.meta.url).pathname, '..');
export const LEDGER_CACHE = join(root, 'dist-bench/ledgers');

/**
 * The cached ledger of `events` events, generated on first use (in a temporary file renamed into
 * place, so an interrupted run leaves no half ledger). Treat it as read-only: copy it before writing.
 */
export async function cachedLedger(events: number, log?: (line: string) => void): Promise<string> {
  const path = join(LEDGER_CACHE, `ledger-v${GENERATOR_VERSION}-${events}.sqlite3`);
  if (existsSync(path)) return path;
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  for (const suffix of ['', '-wal', '-shm']) rmSync(tmp + suffix, { force: true });
  await generateLedger(tmp, events, log === undefined ? {} : { log });
  for (const suffix of ['-wal', '-shm']) rmSync(tmp + suffix, { force: true });
  renameSync(tmp, path);
  return path;
}
