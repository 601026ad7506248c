import type { Kysely } from 'kysely';
import { monotonicFactory } from 'ulid';
import type { Database } from './db/schema.js';
import type { Tx } from './db/transaction.js';
import { immediate } from './db/transaction.js';
import { ReserverError } from './errors.js';
import type { Reservation, ReservationCommand, ReservationState } from './events/index.js';
import { decide, evolve } from './events/index.js';
import type { StoredEvent } from './events/store.js';
import { appendEvents, ConcurrencyError, stamp } from './events/store.js';
import { findById, findByRunKey, writeProjection } from './projections/reservations.js';
import { urandomFractions } from './random.js';

/**
 * The write path. Every state change goes through `applyCommand`, inside one `BEGIN IMMEDIATE`
 * transaction: read the state, `decide`, append the events, `evolve`, write the projection row.
 * Nothing else writes `reservations`.
 */

/** Who writes, and the clock they read. */
export interface WriteContext {
  /** `cli:reserve`, `dispatcher:<id>` ... stored on every event. */
  readonly actor: string;
  /** Epoch milliseconds; read once per transaction, after the write lock is held. */
  readonly clock?: () => number;
}

export interface Applied {
  readonly reservation: Reservation;
  readonly events: StoredEvent[];
}

/** A command, or a function building it from the locked state and the clock reading. */
export type CommandInput = ReservationCommand | ((state: Reservation, nowMs: number) => ReservationCommand);

/** ULIDs of events and reservations, monotonic within this process. */
const newId = monotonicFactory(urandomFractions());
const MAX_ATTEMPTS = 3;

/**
 * Apply a command to one reservation in the caller's transaction. `state` must be what the
 * transaction read. Throws `IllegalTransitionError` when the state machine forbids it.
 */
export async function applyCommand(
  tx: Tx,
  state: Reservation,
  command: ReservationCommand,
  ctx: { nowMs: number; actor: string },
): Promise<Applied> {
  const events = stamp(decide(state, command), state, { ...ctx, newId });
  const stored = await appendEvents(tx, events);
  let next = state;
  for (const event of stored) next = evolve(next, event);
  if (stored.length > 0) await writeProjection(tx, next);
  return { reservation: next, events: stored };
}

/** Run a write transaction, retrying only when another writer won a stream version. */
export async function write<T>(db: Kysely<Database>, fn: (tx: Tx) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await immediate(db, fn);
    } catch (error) {
      if (!(error instanceof ConcurrencyError) || attempt >= MAX_ATTEMPTS) throw error;
    }
  }
}

/**
 * Transition the reservation `reservationId` (or the one holding `runKey`).
 * Throws `NOT_FOUND` when there is none.
 */
export async function transition(
  db: Kysely<Database>,
  target: { reservationId: string } | { runKey: string },
  command: CommandInput,
  ctx: WriteContext,
): Promise<Applied> {
  const clock = ctx.clock ?? Date.now;
  return write(db, async (tx) => {
    const state = 'reservationId' in target ? await findById(tx, target.reservationId) : await findByRunKey(tx, target.runKey);
    if (state === null) throw new ReserverError('NOT_FOUND', 'Reservation not found.');
    const nowMs = clock();
    const resolved = typeof command === 'function' ? command(state, nowMs) : command;
    return applyCommand(tx, state, resolved, { nowMs, actor: ctx.actor });
  });
}

export interface ReserveResult {
  readonly created: boolean;
  readonly reservation: Reservation;
  readonly events: StoredEvent[];
}

/**
 * Reserve a run key: a new stream when the run key is free, else the live reservation unchanged
 * (`decide` returns no event), whatever this call's command or times.
 */
export async function reserve(
  db: Kysely<Database>,
  runKey: string,
  command: Extract<ReservationCommand, { type: 'Reserve' }>,
  ctx: WriteContext,
): Promise<ReserveResult> {
  const clock = ctx.clock ?? Date.now;
  return write(db, async (tx) => {
    const existing: ReservationState = await findByRunKey(tx, runKey);
    const decided = decide(existing, command);
    if (existing !== null || decided.length === 0) {
      return { created: false, reservation: existing as Reservation, events: [] };
    }
    const events = stamp(decided, { reservationId: newId(), runKey, version: 0 }, {
      nowMs: clock(),
      actor: ctx.actor,
      newId,
    });
    const stored = await appendEvents(tx, events);
    let next: ReservationState = null;
    for (const event of stored) next = evolve(next, event);
    await writeProjection(tx, next as Reservation);
    return { created: true, reservation: next as Reservation, events: stored };
  });
}
