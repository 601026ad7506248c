/** parseTime of local times with TZ=UTC: a naive time and a bare date are UTC. */
import { afterAll, describe, expect, it } from 'vitest';
import { parseTime } from '../../src/time.js';
import { epochAt } from './support/civil.js';

const previousTz = process.env.TZ;
process.env.TZ = 'UTC';
afterAll(() => {
  if (previousTz === undefined) delete process.env.TZ;
  else process.env.TZ = previousTz;
});

const p = (value: string) => parseTime(value, 'not_before');

describe('TZ=UTC', () => {
  it('is in effect', () => {
    expect(new Date(2026, 0, 1).getTimezoneOffset()).toBe(0);
    expect(new Date(2026, 6, 1).getTimezoneOffset()).toBe(0);
  });

  it.each([
    ['2026-05-04T10:00:00', epochAt(2026, 5, 4, 10, 0, 0)],
    ['2026-05-04 10:00', epochAt(2026, 5, 4, 10, 0, 0)],
    ['2026-05-04', epochAt(2026, 5, 4)],
    ['2026-03-08T02:30:00', epochAt(2026, 3, 8, 2, 30, 0)],
    ['2026-11-01T01:30:00', epochAt(2026, 11, 1, 1, 30, 0)],
    ['1970-01-01', 0],
    ['0050-01-01', epochAt(50, 1, 1)], // years 1..99 are not 1900..1999
    ['0001-01-01T00:00:00', -62_135_596_800],
    ['9999-12-31T23:59:59.999', 253_402_300_799],
  ])('local %s', (text, expected) => {
    expect(p(text)).toBe(expected);
  });
});
