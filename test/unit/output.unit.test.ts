/**
 * The contract's output (DESIGN.md "Commands"): JSON formatting, the 18-key reservation object, the
 * error line, and the pure flag/env helpers of src/cli/ (identity.ts, paths.ts).
 */
import { describe, expect, it } from 'vitest';
import { identity, validRunKey } from '../../src/cli/identity.js';
import { dbPath, orchesjobBin } from '../../src/cli/paths.js';
import { ReserverError } from '../../src/errors.js';
import { decide, evolve } from '../../src/events/index.js';
import type { Reservation, ReservationCommand, ReservationState } from '../../src/events/index.js';
import { stamp } from '../../src/events/store.js';
import { errorLine, formatJson, isoUtc, reservationJson } from '../../src/output.js';

/** What a usage error looks like: a ReserverError with code INVALID_ARGUMENT; returns its message. */
function invalidMessage(fn: () => unknown): string {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ReserverError);
  expect((caught as ReserverError).code).toBe('INVALID_ARGUMENT');
  return (caught as Error).message;
}

describe('formatJson', () => {
  it('sorts keys recursively, inside arrays too, with a 2-space indent', () => {
    const value = { b: 1, a: { d: [{ z: 1, y: { q: 1, p: 2 } }, 3], c: null }, A: [], e: {} };
    expect(formatJson(value)).toBe(
      [
        '{',
        '  "A": [],',
        '  "a": {',
        '    "c": null,',
        '    "d": [',
        '      {',
        '        "y": {',
        '          "p": 2,',
        '          "q": 1',
        '        },',
        '        "z": 1',
        '      },',
        '      3',
        '    ]',
        '  },',
        '  "b": 1,',
        '  "e": {}',
        '}',
      ].join('\n'),
    );
  });

  it('leaves non-ASCII text unescaped', () => {
    expect(formatJson({ city: '東京', emoji: '💥' })).toBe('{\n  "city": "東京",\n  "emoji": "💥"\n}');
  });

  it('keeps a `__proto__` key of user metadata as an ordinary key', () => {
    const metadata = JSON.parse('{"z": 1, "__proto__": {"polluted": true}, "a": 2}') as unknown;
    const out = formatJson({ metadata });
    expect(out).toBe(
      '{\n  "metadata": {\n    "__proto__": {\n      "polluted": true\n    },\n    "a": 2,\n    "z": 1\n  }\n}',
    );
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('does not change its input', () => {
    const value = { b: [{ d: 1, c: 2 }], a: 1 };
    formatJson(value);
    expect(Object.keys(value)).toEqual(['b', 'a']);
    expect(Object.keys(value.b[0] as object)).toEqual(['d', 'c']);
  });

  // BUG (src/projections/reservations.ts `sortKeys`, used by formatJson): keys are inserted in
  // sorted order, but JavaScript enumerates integer-like keys ("9", "10") first, in numeric order,
  // so metadata {"9": 1, "10": 2} prints "9" first; Python's sort_keys prints "10" first.
  it('sorts integer-like keys as strings, as Python sort_keys does', () => {
    expect(formatJson({ '9': 1, '10': 2, a: 3 })).toBe('{\n  "10": 2,\n  "9": 1,\n  "a": 3\n}');
  });

  // BUG (same function): `Object.keys(...).sort()` compares UTF-16 code units, not code points as
  // its comment says: an astral key ("😀", U+1F600) sorts before "！" (U+FF01); Python puts it after.
  it('sorts keys by code point, as Python sort_keys does', () => {
    expect(formatJson({ '\u{1F600}': 1, '\uFF01': 2 })).toBe('{\n  "！": 2,\n  "😀": 1\n}');
  });
});

describe('isoUtc', () => {
  it.each([
    [0, '1970-01-01T00:00:00+00:00'],
    [1_777_831_200, '2026-05-03T18:00:00+00:00'],
    [1_777_888_800, '2026-05-04T10:00:00+00:00'],
    [-1, '1969-12-31T23:59:59+00:00'],
    [951_782_400, '2000-02-29T00:00:00+00:00'],
    [253_402_300_799, '9999-12-31T23:59:59+00:00'],
  ])('%d -> %s', (seconds, iso) => {
    expect(isoUtc(seconds)).toBe(iso);
    expect(iso).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$/);
  });

  it('null stays null', () => {
    expect(isoUtc(null)).toBeNull();
  });
});

describe('reservationJson', () => {
  /** DESIGN.md's 18 keys, written out. */
  const KEYS = [
    'reservation_id',
    'run_key',
    'reservation_status',
    'job_id',
    'command',
    'orchesjob_start_options',
    'metadata',
    'not_before',
    'not_before_iso',
    'expires_at',
    'expires_at_iso',
    'created_at',
    'created_at_iso',
    'updated_at',
    'updated_at_iso',
    'dispatched_at',
    'dispatched_at_iso',
    'last_error',
  ];

  const T0 = 1_777_888_800; // 2026-05-04T10:00:00Z
  let n = 0;
  function build(...steps: [ReservationCommand, number][]): Reservation {
    let state: ReservationState = null;
    for (const [command, nowMs] of steps) {
      const events = stamp(
        decide(state, command, nowMs),
        { reservationId: 'R1', runKey: 'k', version: state?.version ?? 0 },
        { nowMs, actor: 'test', newId: () => `E${++n}` },
      );
      for (const e of events) state = evolve(state, e);
    }
    return state as Reservation;
  }
  const reserve = (notBefore: number | null, expiresAt: number | null): ReservationCommand => ({
    type: 'Reserve',
    runKey: 'k',
    command: ['/bin/echo', '東京'],
    orchesjobStartOptions: [],
    metadata: null,
    notBefore,
    expiresAt,
  });

  it('a fresh reservation has exactly the 18 keys, null where unset', () => {
    const json = reservationJson(build([reserve(null, null), T0 * 1000 + 500]));
    expect(Object.keys(json).sort()).toEqual([...KEYS].sort());
    expect(json).toEqual({
      reservation_id: 'R1',
      run_key: 'k',
      reservation_status: 'RESERVED',
      job_id: null,
      command: ['/bin/echo', '東京'],
      orchesjob_start_options: [],
      metadata: null,
      not_before: null,
      not_before_iso: null,
      expires_at: null,
      expires_at_iso: null,
      created_at: T0,
      created_at_iso: '2026-05-04T10:00:00+00:00',
      updated_at: T0,
      updated_at_iso: '2026-05-04T10:00:00+00:00',
      dispatched_at: null,
      dispatched_at_iso: null,
      last_error: null,
    });
  });

  it('a dispatched reservation fills job_id, dispatched_at and every *_iso', () => {
    const r = build(
      [reserve(T0 + 60, T0 + 3600), T0 * 1000],
      [{ type: 'Claim', owner: { dispatcher_id: 'd', host: 'h', pid: 1 }, argv: ['orchesjob'] }, (T0 + 61) * 1000],
      [{ type: 'RecordDispatch', jobId: 'job-1' }, (T0 + 62) * 1000],
    );
    const json = reservationJson(r);
    expect(Object.keys(json).sort()).toEqual([...KEYS].sort());
    expect(json).toMatchObject({
      reservation_status: 'DISPATCHED',
      job_id: 'job-1',
      not_before: T0 + 60,
      not_before_iso: '2026-05-04T10:01:00+00:00',
      expires_at: T0 + 3600,
      expires_at_iso: '2026-05-04T11:00:00+00:00',
      updated_at: T0 + 62,
      updated_at_iso: '2026-05-04T10:01:02+00:00',
      dispatched_at: T0 + 62,
      dispatched_at_iso: '2026-05-04T10:01:02+00:00',
      last_error: null,
    });
  });

  it('prints through formatJson with the keys sorted', () => {
    const text = formatJson({ reservation: reservationJson(build([reserve(null, null), T0 * 1000])) });
    const keys = [...text.matchAll(/^ {4}"([a-z_]+)":/gm)].map((m) => m[1]);
    expect(keys).toEqual([...KEYS].sort());
  });
});

describe('errorLine', () => {
  it('is {"error": "..."} with a space after the colon', () => {
    expect(errorLine('Reservation not found.')).toBe('{"error": "Reservation not found."}');
  });

  it('escapes quotes, backslashes and newlines, and stays valid JSON', () => {
    const message = 'bad "x"\\y\nnext 東京';
    const line = errorLine(message);
    expect(line).not.toContain('\n');
    expect(JSON.parse(line)).toEqual({ error: message });
  });
});

describe('validRunKey', () => {
  it('accepts 1..512 characters of printable text, unicode included', () => {
    expect(validRunKey('k')).toBe('k');
    expect(validRunKey('x'.repeat(512))).toBe('x'.repeat(512));
    expect(validRunKey('東京-夜間-2026-05-04')).toBe('東京-夜間-2026-05-04');
    expect(validRunKey('💥'.repeat(512))).toBe('💥'.repeat(512)); // 512 characters, 1024 UTF-16 units
    expect(validRunKey('a b/c:d=e')).toBe('a b/c:d=e');
  });

  it('rejects empty, over 512 characters, and control characters', () => {
    expect(invalidMessage(() => validRunKey(''))).toMatchInlineSnapshot(`"Invalid --run-key: empty value."`);
    expect(invalidMessage(() => validRunKey('x'.repeat(513)))).toMatchInlineSnapshot(`"Invalid --run-key: longer than 512 characters."`);
    expect(invalidMessage(() => validRunKey('💥'.repeat(513)))).toBe(invalidMessage(() => validRunKey('x'.repeat(513))));
    expect(invalidMessage(() => validRunKey('a\nb'))).toMatchInlineSnapshot(`"Invalid --run-key: contains a control character."`);
    for (const c of ['\t', '\x7f', '\0', '\r', '\x1b', '\u0085', '\u009f']) {
      expect(invalidMessage(() => validRunKey(`a${c}b`))).toContain('control character');
    }
  });
});

describe('dbPath', () => {
  const env = {
    ORCHESJOB_RESERVER_HOME: '/srv/reserver',
    ORCHESJOB_HOME: '/srv/orchesjob',
  };

  it('--db wins over every environment variable', () => {
    expect(dbPath({ db: '/tmp/x.sqlite3' }, env)).toBe('/tmp/x.sqlite3');
    expect(dbPath({ db: 'rel/x.sqlite3' }, env)).toBe('rel/x.sqlite3');
  });

  it('then $ORCHESJOB_RESERVER_HOME, then $ORCHESJOB_HOME, then /var/lib/orchesjob', () => {
    expect(dbPath({}, env)).toBe('/srv/reserver/reserver.sqlite3');
    expect(dbPath({}, { ORCHESJOB_HOME: '/srv/orchesjob' })).toBe('/srv/orchesjob/reserver.sqlite3');
    expect(dbPath({}, {})).toBe('/var/lib/orchesjob/reserver.sqlite3');
  });

  it('an empty environment variable counts as unset', () => {
    expect(dbPath({}, { ORCHESJOB_RESERVER_HOME: '', ORCHESJOB_HOME: '/srv/o' })).toBe('/srv/o/reserver.sqlite3');
    expect(dbPath({}, { ORCHESJOB_RESERVER_HOME: '', ORCHESJOB_HOME: '' })).toBe(
      '/var/lib/orchesjob/reserver.sqlite3',
    );
  });

  it('a trailing slash in a home does not double the separator', () => {
    expect(dbPath({}, { ORCHESJOB_HOME: '/srv/o/' })).toBe('/srv/o/reserver.sqlite3');
  });

  it('an empty --db is a usage error', () => {
    expect(invalidMessage(() => dbPath({ db: '' }, env))).toMatchInlineSnapshot(`"Invalid --db: empty path."`);
  });
});

describe('orchesjobBin', () => {
  it('--orchesjob-bin, else $ORCHESJOB_BIN, else orchesjob', () => {
    expect(orchesjobBin({ 'orchesjob-bin': '/opt/oj' }, { ORCHESJOB_BIN: '/usr/bin/oj' })).toBe('/opt/oj');
    expect(orchesjobBin({}, { ORCHESJOB_BIN: '/usr/bin/oj' })).toBe('/usr/bin/oj');
    expect(orchesjobBin({}, { ORCHESJOB_BIN: '' })).toBe('orchesjob');
    expect(orchesjobBin({}, {})).toBe('orchesjob');
  });

  it('an empty --orchesjob-bin is a usage error', () => {
    expect(invalidMessage(() => orchesjobBin({ 'orchesjob-bin': '' }, {}))).toMatchInlineSnapshot(`"Invalid --orchesjob-bin: empty path."`);
  });
});

describe('identity', () => {
  it('exactly one of --run-key / --reservation-id', () => {
    expect(identity({ 'run-key': 'k' })).toEqual({ runKey: 'k' });
    expect(identity({ 'reservation-id': 'R1' })).toEqual({ reservationId: 'R1' });
    expect(invalidMessage(() => identity({}))).toMatchInlineSnapshot(`"Specify exactly one of --run-key or --reservation-id."`);
    expect(invalidMessage(() => identity({ 'run-key': 'k', 'reservation-id': 'R1' }))).toMatchInlineSnapshot(`"Specify exactly one of --run-key or --reservation-id."`);
  });

  it('validates the run key and rejects an empty reservation id', () => {
    expect(invalidMessage(() => identity({ 'run-key': '' }))).toContain('--run-key');
    expect(invalidMessage(() => identity({ 'reservation-id': '' }))).toMatchInlineSnapshot(`"Invalid --reservation-id: empty value."`);
  });
});
