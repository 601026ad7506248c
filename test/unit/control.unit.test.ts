/**
 * The dispatch control stream (`pause`, `resume`): decideControl / evolveControl / effectivePause /
 * pauseOutlived / foldControl, given/when/then. Expectations come from DESIGN.md ("Operator
 * controls") and the commands' help: both controls are idempotent, a pause may end by itself at
 * `until`, a second pause that only changes the reason or until keeps `since`.
 */
import { InvalidLedgerError } from '../../src/events/evolve.js';
import { describe, expect, it } from 'vitest';
import type { ControlCommand, ControlEvent, DispatchControl } from '../../src/events/control.js';
import {
  decideControl,
  effectivePause,
  evolveControl,
  foldControl,
  isControlEvent,
  NOT_PAUSED,
  pauseOutlived,
  RejectedControlError,
} from '../../src/events/control.js';
import type { NewEvent } from '../../src/events/index.js';
import { CONTROL_STREAM } from '../../src/events/index.js';
import { stamp } from '../../src/events/store.js';

const T0 = 1_777_830_000; // epoch seconds
const sec = (s: number, ms = 0): number => s * 1000 + ms;

let idCounter = 0;
const newId = () => `CTL${String(++idCounter).padStart(6, '0')}`;

const pause = (reason: string | null, until: number | null = null): ControlCommand => ({ type: 'Pause', reason, until });
const resume: ControlCommand = { type: 'Resume' };

/** One step: a control command decided at a clock reading (epoch ms), by an actor. */
type Step = readonly [ControlCommand, number, string?];

/** Stamp what decideControl returned onto the control stream after `state`, as the ledger does. */
function stamped(state: DispatchControl, decided: readonly NewEvent[], nowMs: number, actor = 'cli:pause'): ControlEvent[] {
  return stamp(decided, { ...CONTROL_STREAM, version: state.version }, { nowMs, actor, newId }) as ControlEvent[];
}

/** Decide, stamp and evolve each step in turn, as `executeControl` does; returns the stream. */
function history(...steps: Step[]): ControlEvent[] {
  const events: ControlEvent[] = [];
  let state = NOT_PAUSED;
  for (const [command, nowMs, actor] of steps) {
    const next = stamped(state, decideControl(state, command, nowMs), nowMs, actor);
    for (const event of next) state = evolveControl(state, event);
    events.push(...next);
  }
  return events;
}

/** given(events).when(command, nowMs).then(expected events | error class) */
function given(events: readonly ControlEvent[]) {
  const state = foldControl(events);
  return {
    state,
    when(command: ControlCommand, nowMs: number) {
      return {
        then(expected: readonly NewEvent[] | (new (...args: never[]) => Error)): NewEvent[] {
          if (typeof expected === 'function') {
            expect(() => decideControl(state, command, nowMs)).toThrow(expected);
            return [];
          }
          const out = decideControl(state, command, nowMs);
          expect(out).toEqual(expected);
          return out;
        },
      };
    },
  };
}

describe('decideControl: pause', () => {
  it('given no events, when Pause, then [DispatchPaused] with the reason and until', () => {
    given([]).when(pause('storage maintenance', T0 + 3600), sec(T0)).then([
      { type: 'DispatchPaused', data: { reason: 'storage maintenance', until: T0 + 3600 } },
    ]);
    given([]).when(pause(null), sec(T0)).then([{ type: 'DispatchPaused', data: { reason: null, until: null } }]);
  });

  it('pausing again with the same reason and until appends nothing (idempotent), with or without them', () => {
    given(history([pause('m', T0 + 3600), sec(T0)])).when(pause('m', T0 + 3600), sec(T0 + 10)).then([]);
    given(history([pause(null), sec(T0)])).when(pause(null), sec(T0 + 10)).then([]);
    given(history([pause('m'), sec(T0)])).when(pause('m'), sec(T0 + 86_400)).then([]);
  });

  it('pausing again with another reason or another until appends one: since and actor stay those of the first pause', () => {
    const first = history([pause('m', T0 + 3600), sec(T0), 'cli:pause']);
    const [reason] = stamped(foldControl(first), given(first).when(pause('m, extended', T0 + 3600), sec(T0 + 10)).then([
      { type: 'DispatchPaused', data: { reason: 'm, extended', until: T0 + 3600 } },
    ]), sec(T0 + 10), 'gate:ops');
    const afterReason = foldControl([...first, reason!]);
    expect(afterReason).toEqual({ paused: true, reason: 'm, extended', until: T0 + 3600, since: T0, actor: 'cli:pause', version: 2 });
    const longer = history([pause('m', T0 + 3600), sec(T0)], [pause('m', T0 + 7200), sec(T0 + 20)], [pause('m', null), sec(T0 + 30)]);
    expect(longer.map((e) => e.data)).toEqual([
      { reason: 'm', until: T0 + 3600 },
      { reason: 'm', until: T0 + 7200 },
      { reason: 'm', until: null },
    ]);
    expect(foldControl(longer)).toEqual({ paused: true, reason: 'm', until: null, since: T0, actor: 'cli:pause', version: 3 });
  });

  it('an until that has passed (or is now) is a RejectedControlError; one later second is accepted', () => {
    given([]).when(pause('m', T0 - 1), sec(T0)).then(RejectedControlError);
    given([]).when(pause('m', T0), sec(T0)).then(RejectedControlError);
    given([]).when(pause('m', T0 + 1), sec(T0, 999)).then([{ type: 'DispatchPaused', data: { reason: 'm', until: T0 + 1 } }]);
    expect(() => decideControl(NOT_PAUSED, pause('m', T0), sec(T0, 1))).toThrowErrorMatchingInlineSnapshot(
      `[RejectedControlError: --until 1777830000 has passed: a pause must end in the future]`,
    );
    // Also while paused: the same reason with a passed until is refused, not taken for "no change".
    given(history([pause('m'), sec(T0)])).when(pause('m', T0 + 5), sec(T0 + 10)).then(RejectedControlError);
  });

  it('a pause after one whose until passed (its end not recorded) starts a new pause: new since, new actor', () => {
    const outlived = history([pause('m', T0 + 60), sec(T0), 'cli:pause']);
    expect(foldControl(outlived)).toMatchObject({ paused: true, until: T0 + 60, since: T0 });
    // The same reason is a new pause too: the old one is no longer in force.
    const decided = given(outlived).when(pause('m', T0 + 600), sec(T0 + 60)).then([
      { type: 'DispatchPaused', data: { reason: 'm', until: T0 + 600 } },
    ]);
    const state = foldControl([...outlived, ...stamped(foldControl(outlived), decided, sec(T0 + 60), 'gate:ops')]);
    expect(state).toEqual({ paused: true, reason: 'm', until: T0 + 600, since: T0 + 60, actor: 'gate:ops', version: 2 });
    // ...and so is a pause without until after it, with the outlived pause's very reason and until gone.
    given(outlived).when(pause('m'), sec(T0 + 61)).then([{ type: 'DispatchPaused', data: { reason: 'm', until: null } }]);
  });

  it('decide and evolve agree on when a pause is still in force, to the millisecond', () => {
    const until = T0 + 60;
    const first = history([pause('a', until), sec(T0)]);
    for (const nowMs of [sec(until - 1), sec(until - 1, 999), sec(until), sec(until, 1), sec(until + 1)]) {
      const state = foldControl(first);
      const inForce = effectivePause(state, nowMs).paused;
      expect(inForce, `at ${nowMs}`).toBe(nowMs < sec(until));
      const [event] = stamped(state, decideControl(state, pause('b'), nowMs), nowMs);
      expect(evolveControl(state, event!).since, `at ${nowMs}`).toBe(inForce ? T0 : Math.floor(nowMs / 1000));
    }
  });
});

describe('decideControl: resume', () => {
  it('resume while not paused appends nothing: never paused, or resumed already', () => {
    given([]).when(resume, sec(T0)).then([]);
    given(history([pause('m'), sec(T0)], [resume, sec(T0 + 5)])).when(resume, sec(T0 + 10)).then([]);
  });

  it('given a pause, when Resume, then [DispatchResumed]; the state is not paused again, its version counted', () => {
    const events = history([pause('m', T0 + 3600), sec(T0)]);
    const decided = given(events).when(resume, sec(T0 + 5)).then([{ type: 'DispatchResumed', data: {} }]);
    const state = foldControl([...events, ...stamped(foldControl(events), decided, sec(T0 + 5), 'cli:resume')]);
    expect(state).toEqual({ ...NOT_PAUSED, version: 2 });
  });

  it('the dispatcher records the end of an outlived pause with until_passed; a resume after it changes nothing', () => {
    const events = history([pause('m', T0 + 60), sec(T0)]);
    given(events).when({ type: 'Resume', untilPassed: true }, sec(T0 + 60)).then([{ type: 'DispatchResumed', data: { until_passed: true } }]);
    const ended = history([pause('m', T0 + 60), sec(T0)], [{ type: 'Resume', untilPassed: true }, sec(T0 + 60), 'dispatcher:D1']);
    expect(foldControl(ended)).toEqual({ ...NOT_PAUSED, version: 2 });
    given(ended).when(resume, sec(T0 + 61)).then([]);
  });

  it('a resume of a pause whose until passed unrecorded still appends (the stored state is paused)', () => {
    given(history([pause('m', T0 + 60), sec(T0)])).when(resume, sec(T0 + 600)).then([{ type: 'DispatchResumed', data: {} }]);
  });
});

describe('effectivePause and pauseOutlived', () => {
  const paused = foldControl(history([pause('m', T0 + 60), sec(T0), 'cli:pause']));

  it('a pause is in force until its until, then over whether or not its end is recorded', () => {
    expect(effectivePause(paused, sec(T0 + 59, 999))).toEqual(paused);
    expect(effectivePause(paused, sec(T0 + 60))).toEqual({ ...NOT_PAUSED, version: 1 });
    expect(effectivePause(paused, sec(T0 + 99_999)).paused).toBe(false);
    expect(pauseOutlived(paused, sec(T0 + 59, 999))).toBe(false);
    expect(pauseOutlived(paused, sec(T0 + 60))).toBe(true);
  });

  it('a pause without until is in force until resume, and never outlived', () => {
    const forever = foldControl(history([pause('m'), sec(T0)]));
    expect(effectivePause(forever, Number.MAX_SAFE_INTEGER)).toEqual(forever);
    expect(pauseOutlived(forever, Number.MAX_SAFE_INTEGER)).toBe(false);
  });

  it('not paused is not paused, and not outlived', () => {
    expect(effectivePause(NOT_PAUSED, sec(T0))).toEqual(NOT_PAUSED);
    expect(pauseOutlived(NOT_PAUSED, sec(T0))).toBe(false);
    const resumed = foldControl(history([pause('m', T0 + 60), sec(T0)], [resume, sec(T0 + 1)]));
    expect(effectivePause(resumed, sec(T0 + 2))).toEqual({ ...NOT_PAUSED, version: 2 });
    expect(pauseOutlived(resumed, sec(T0 + 600))).toBe(false);
  });
});

describe('evolveControl and foldControl', () => {
  it('fold of no events is NOT_PAUSED, and equals evolving one event at a time', () => {
    expect(foldControl([])).toEqual(NOT_PAUSED);
    expect(NOT_PAUSED).toEqual({ paused: false, reason: null, until: null, since: null, actor: null, version: 0 });
    const events = history([pause('a'), sec(T0)], [pause('b', T0 + 60), sec(T0 + 1)], [resume, sec(T0 + 2)], [pause('c'), sec(T0 + 3)]);
    let state = NOT_PAUSED;
    for (const event of events) state = evolveControl(state, event);
    expect(foldControl(events)).toEqual(state);
    expect(state).toEqual({ paused: true, reason: 'c', until: null, since: T0 + 3, actor: 'cli:pause', version: 4 });
  });

  it('every time comes from the event: since is its recorded_at (whole seconds)', () => {
    const events = history([pause('a'), sec(T0, 750)]);
    expect(events[0]).toMatchObject({ reservationId: '@dispatch', runKey: '', version: 1, recordedAt: T0, recordedAtMs: sec(T0, 750) });
    expect(foldControl(events).since).toBe(T0);
  });

  it('an event out of order (a gap, a repeat) is refused, naming its id and the version expected', () => {
    const events = history([pause('a'), sec(T0)], [resume, sec(T0 + 1)], [pause('b'), sec(T0 + 2)]);
    expect(() => foldControl([events[0]!, events[2]!])).toThrow(InvalidLedgerError);
    expect(() => foldControl([events[0]!, events[2]!])).toThrow(`ledger event ${events[2]!.eventId} (DispatchPaused, version 3)`);
    expect(() => foldControl([events[0]!, events[2]!])).toThrow(/expected version 2 of the dispatch control stream/);
    expect(() => foldControl([events[0]!, events[0]!])).toThrow(/version 1\) .*expected version 2/);
    expect(() => evolveControl(NOT_PAUSED, events[1]!)).toThrow(/expected version 1/);
  });

  it('does not mutate its inputs', () => {
    const events = history([pause('a', T0 + 60), sec(T0)], [pause('b'), sec(T0 + 1)]);
    const state = Object.freeze(foldControl(events.slice(0, 1)));
    const event = Object.freeze({ ...events[1]!, data: Object.freeze({ ...events[1]!.data }) }) as ControlEvent;
    const before = structuredClone(state);
    evolveControl(state, event);
    decideControl(state, pause('c'), sec(T0 + 2));
    effectivePause(state, sec(T0 + 99));
    expect(state).toEqual(before);
  });

  it('isControlEvent tells the control stream’s types from the reservations’', () => {
    expect(isControlEvent({ type: 'DispatchPaused' })).toBe(true);
    expect(isControlEvent({ type: 'DispatchResumed' })).toBe(true);
    for (const type of ['Reserved', 'DispatchClaimed', 'Rescheduled', 'Requeued', 'Cleaned']) expect(isControlEvent({ type })).toBe(false);
  });
});
