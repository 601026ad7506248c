import type { DispatchGate } from './decide.js';
import { InvalidLedgerError } from './evolve.js';
import type { EventOf, NewEvent } from './types.js';

/**
 * The dispatch control stream: `pause` and `resume`, obeyed by every dispatcher on the file. Its
 * events live in the ledger beside the reservations' (`CONTROL_STREAM`), decided and folded here as
 * a reservation's are by `decide` and `evolve`; the `dispatch_control` projection row holds the fold.
 */

/** The control stream's state: what the `dispatch_control` row holds. */
export interface DispatchControl {
  /** Paused by the last event (`until` may have passed since: see `effectivePause`). */
  readonly paused: boolean;
  readonly reason: string | null;
  /** Epoch seconds at which the pause ends by itself, or null. */
  readonly until: number | null;
  /** When the current pause began (epoch seconds): a second `pause` changing its reason keeps it. */
  readonly since: number | null;
  /** Who paused (`cli:pause` ...), or null while not paused. */
  readonly actor: string | null;
  /** Version of the last event folded in, 0 before the first. */
  readonly version: number;
}

export const NOT_PAUSED: DispatchControl = { paused: false, reason: null, until: null, since: null, actor: null, version: 0 };

export type ControlCommand =
  | { readonly type: 'Pause'; readonly reason: string | null; readonly until: number | null }
  /** `untilPassed`: the dispatcher records that a pause's `until` passed. */
  | { readonly type: 'Resume'; readonly untilPassed?: boolean };

export type ControlEvent = EventOf<'DispatchPaused'> | EventOf<'DispatchResumed'>;

/** Thrown by `decideControl` for values a pause cannot take (exit 2). */
export class RejectedControlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RejectedControlError';
  }
}

/**
 * What a control command appends. Both are idempotent: a pause that changes nothing (paused already,
 * same reason and until) and a resume while not paused append nothing. A pause whose `until` passed
 * is not in force, so `pause` then starts a new one.
 */
export function decideControl(state: DispatchControl, command: ControlCommand, nowMs: number): NewEvent[] {
  const inForce = effectivePause(state, nowMs).paused;
  if (command.type === 'Resume') {
    if (!state.paused) return [];
    return [{ type: 'DispatchResumed', data: command.untilPassed === true ? { until_passed: true } : {} }];
  }
  if (command.until !== null && command.until * 1000 <= nowMs) {
    throw new RejectedControlError(`--until ${command.until} has passed: a pause must end in the future`);
  }
  if (inForce && state.reason === command.reason && state.until === command.until) return [];
  return [{ type: 'DispatchPaused', data: { reason: command.reason, until: command.until } }];
}

/** Apply one control event. Pure: every time comes from the event. */
export function evolveControl(state: DispatchControl, event: ControlEvent): DispatchControl {
  if (event.version !== state.version + 1) {
    throw new InvalidLedgerError(event, 'NONE', `expected version ${state.version + 1} of the dispatch control stream`);
  }
  if (event.type === 'DispatchResumed') return { ...NOT_PAUSED, version: event.version };
  const continues = state.paused && (state.until === null || state.until > event.recordedAt);
  return {
    paused: true,
    reason: event.data.reason,
    until: event.data.until,
    since: continues ? state.since : event.recordedAt,
    actor: continues ? state.actor : event.actor,
    version: event.version,
  };
}

/** The control state in force at `nowMs`: a pause whose `until` has passed is over, recorded or not. */
export function effectivePause(state: DispatchControl, nowMs: number): DispatchControl & DispatchGate {
  if (!state.paused || (state.until !== null && state.until * 1000 <= nowMs)) return { ...NOT_PAUSED, version: state.version };
  return state;
}

/** A stored pause whose `until` passed: the dispatcher records its end (`DispatchResumed`, `until_passed`). */
export function pauseOutlived(state: DispatchControl, nowMs: number): boolean {
  return state.paused && state.until !== null && state.until * 1000 <= nowMs;
}

/** Fold the control stream's events, oldest first. */
export function foldControl(events: Iterable<ControlEvent>): DispatchControl {
  let state = NOT_PAUSED;
  for (const event of events) state = evolveControl(state, event);
  return state;
}

export function isControlEvent(event: { readonly type: string }): event is ControlEvent {
  return event.type === 'DispatchPaused' || event.type === 'DispatchResumed';
}
