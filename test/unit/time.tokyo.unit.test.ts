/**
 * parseTime of local times with TZ=Asia/Tokyo (UTC+9, no DST). Node re-reads TZ when
 * `process.env.TZ` is assigned; vitest's forks pool runs this file in its own process.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { parseTime } from '../../src/time.js';
import { epochAt, JST } from './support/civil.js';

const previousTz = process.env.TZ;
process.env.TZ = 'Asia/Tokyo';
afterAll(() => {
  if (previousTz === undefined) delete process.env.TZ;
  else process.env.TZ = previousTz;
});

const p = (value: string) => parseTime(value, 'not_before');

describe('TZ=Asia/Tokyo', () => {
  it('is in effect', () => {
    expect(new Date(2026, 0, 1).getTimezoneOffset()).toBe(-540);
    expect(new Date(2026, 6, 1).getTimezoneOffset()).toBe(-540);
  });

  it.each([
    ['2026-05-04T03:00:00', 1_777_831_200], // the spec's example, without its +09:00
    ['2026-05-04 03:00:00', 1_777_831_200],
    ['2026-05-04T03:00', 1_777_831_200],
    ['2026-05-04T03:00:00.999', 1_777_831_200],
    ['2026-05-04', epochAt(2026, 5, 4, 0, 0, 0, JST)], // a bare date is local midnight, not UTC
    ['2026-01-01', epochAt(2025, 12, 31, 15, 0, 0)],
    ['2026-07-15T12:00:00', epochAt(2026, 7, 15, 12, 0, 0, JST)],
    ['2026-03-08T02:30:00', epochAt(2026, 3, 8, 2, 30, 0, JST)], // New York's gap means nothing here
  ])('local %s', (text, expected) => {
    expect(p(text)).toBe(expected);
  });

  it('explicit offsets and epoch seconds ignore TZ', () => {
    expect(p('2026-05-04T03:00:00Z')).toBe(epochAt(2026, 5, 4, 3, 0, 0));
    expect(p('2026-05-04T03:00:00-05:00')).toBe(epochAt(2026, 5, 4, 3, 0, 0, -300));
    expect(p('1777831200')).toBe(1_777_831_200);
  });
});
