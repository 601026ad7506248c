import type { Kysely } from 'kysely';
import { monotonicFactory } from 'ulid';
import type { Database } from './db/schema.js';
import type { Tx } from './db/transaction.js';
import { immediate } from './db/transaction.js';
import { ReserverError } from './errors.js';
import type { Reservation, ReservationCommand, ReservationState } from './events/index.js';
import { decide, evolve } from './events/index.js';
import type { StoredEvent } from './events/store.js';
import { appendEvents, stamp } from './events/store.js';
import type { ControlCommand, ControlEvent, DispatchControl } from './events/control.js';
import { decideControl, effectivePause, evolveControl } from './events/control.js';
import { CONTROL_STREAM } from './events/types.js';
import { readControl, writeControl } from './projections/control.js';
import { findById, findByRunKey, writeProjection } from './projections/reservations.js';
import { urandomFractions } from './random.js';

/**
 * The write path: the one way any state changes. `execute` runs one command in its own transaction;
 * `write` runs several in one (the dispatcher's group commit, `clean`). Either way each command is read
 * the state, `decide`, append the events, `evolve`, write the projection row, inside one
 * `BEGIN IMMEDIATE` transaction. Nothing else writes `reservations` or `reservation_events`.
 *
 * The clock is read once per transaction, after the write lock is held: every event of it carries that
 * time, and every decision that depends on time (is it due, has it expired, when is the retry) is
 * taken at it. Another writer cannot interleave (the lock is taken up front), so a decision is never
 * taken on a stale state and nothing needs retrying; `UNIQUE(reservation_id, version)` stays as the
 * ledger's last guard (`ConcurrencyError`).
 */

/** Who writes, and the clock they read. */
export interface WriteOptions {
  /** `cli:reserve`, `dispatcher:<id>` ... stored on every event. */
  readonly actor: string;
  /** Epoch milliseconds; read once per transaction, after the write lock is held. Default: `Date.now`. */
  readonly now?: () => number;
  /** Ids of new events and reservations. Default: ULIDs, monotonic within this process. */
  readonly newId?: () => string;
}

/**
 * Which reservation a command is for: by id or run key (read in the transaction), or a state this same
 * transaction already read (`{ state }`, for the dispatcher's batches). `null` for `Reserve`, which
 * finds the live reservation of its run key itself.
 */
export type Target = Locator | { readonly state: Reservation };

/** A reservation named by id or run key: read by the transaction that acts on it. */
export type Locator = { readonly reservationId: string } | { readonly runKey: string };

export interface Applied {
  readonly reservation: Reservation;
  /** The events appended; none when the command changed nothing (`reserve` of a live run key). */
  readonly events: StoredEvent[];
}

/** One write transaction: the lock is held and the clock was read. */
export interface WriteTx {
  /** For reads inside the transaction (they see its own writes). */
  readonly tx: Tx;
  /** The transaction's one clock reading, epoch milliseconds. */
  readonly nowMs: number;
  /** Apply `command` to `target`. Throws `IllegalTransitionError` (nothing appended) when forbidden. */
  execute(target: Target | null, command: ReservationCommand): Promise<Applied>;
  /** The reservation `target` names, as this transaction sees it. Throws `NOT_FOUND` when there is none. */
  read(target: Target): Promise<Reservation>;
  /** Apply a control command (`pause`, `resume`) to the dispatch control stream. */
  control(command: ControlCommand): Promise<AppliedControl>;
  /** The dispatch control state as stored (see `effectivePause` for the one in force). */
  readControl(): Promise<DispatchControl>;
}

export interface AppliedControl {
  readonly control: DispatchControl;
  /** The events appended; none when the command changed nothing (both controls are idempotent). */
  readonly events: StoredEvent[];
}

/** ULIDs of events and reservations, monotonic within this process. */
const newUlid = monotonicFactory(urandomFractions());

/**
 * Run `command` in a transaction of its own. Throws `NOT_FOUND` when `target` names no reservation. A
 * state read earlier cannot be passed here: only a transaction that read it may act on it (`write`).
 */
export function execute(
  db: Kysely<Database>,
  target: Locator | null,
  command: ReservationCommand,
  options: WriteOptions,
): Promise<Applied> {
  return write(db, options, (w) => w.execute(target, command));
}

/** Run `fn` in one write transaction: everything it executes commits together (one sync), or nothing. */
export function write<T>(db: Kysely<Database>, options: WriteOptions, fn: (w: WriteTx) => Promise<T>): Promise<T> {
  const clock = options.now ?? Date.now;
  const newId = options.newId ?? newUlid;
  return immediate(db, (tx) => {
    const nowMs = clock();
    const stamping = { nowMs, actor: options.actor, newId };
    return fn({
      tx,
      nowMs,
      execute: (target, command) => apply(tx, target, command, stamping),
      read: (target) => find(tx, target),
      control: (command) => applyControl(tx, command, stamping),
      readControl: () => readControl(tx),
    });
  });
}

async function apply(
  tx: Tx,
  target: Target | null,
  command: ReservationCommand,
  stamping: { nowMs: number; actor: string; newId: () => string },
): Promise<Applied> {
  const state = await stateOf(tx, target, command);
  // Every claim is decided on the control stream's state in the same transaction: a pause that
  // committed first holds every dispatcher on the file.
  const gate = command.type === 'Claim' ? effectivePause(await readControl(tx), stamping.nowMs) : undefined;
  const decided = decide(state, command, stamping.nowMs, gate);
  if (decided.length === 0) return { reservation: state as Reservation, events: [] };
  const stream = state === null ? { reservationId: stamping.newId(), runKey: runKeyOf(command), version: 0 } : state;
  const stored = await appendEvents(tx, stamp(decided, stream, stamping));
  let next: ReservationState = state;
  for (const event of stored) next = evolve(next, event);
  await writeProjection(tx, next as Reservation);
  return { reservation: next as Reservation, events: stored };
}

/** `pause` / `resume`: read the control state, decide, append, fold, write its row; one transaction. */
async function applyControl(
  tx: Tx,
  command: ControlCommand,
  stamping: { nowMs: number; actor: string; newId: () => string },
): Promise<AppliedControl> {
  const state = await readControl(tx);
  const decided = decideControl(state, command, stamping.nowMs);
  if (decided.length === 0) return { control: state, events: [] };
  const stored = await appendEvents(tx, stamp(decided, { ...CONTROL_STREAM, version: state.version }, stamping));
  let next = state;
  for (const event of stored) next = evolveControl(next, event as ControlEvent);
  await writeControl(tx, next);
  return { control: next, events: stored };
}

/** Run one control command in a transaction of its own. */
export function executeControl(db: Kysely<Database>, command: ControlCommand, options: WriteOptions): Promise<AppliedControl> {
  return write(db, options, (w) => w.control(command));
}

/** The state a command is decided on: the target's, or for `Reserve` its run key's live reservation. */
async function stateOf(tx: Tx, target: Target | null, command: ReservationCommand): Promise<ReservationState> {
  if (target === null) {
    if (command.type !== 'Reserve') throw new Error(`${command.type} needs a target reservation`);
    return findByRunKey(tx, command.runKey);
  }
  return find(tx, target);
}

async function find(tx: Tx, target: Target): Promise<Reservation> {
  if ('state' in target) return target.state;
  const found = 'reservationId' in target ? await findById(tx, target.reservationId) : await findByRunKey(tx, target.runKey);
  if (found === null) throw new ReserverError('NOT_FOUND', 'Reservation not found.');
  return found;
}

function runKeyOf(command: ReservationCommand): string {
  if (command.type !== 'Reserve') throw new Error(`${command.type} cannot start a reservation stream`);
  return command.runKey;
}
