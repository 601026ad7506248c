/**
 * parseTime of local times with TZ=America/New_York, across both DST changes of 2026
 * (2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST). Expected values are the
 * Python tool's (naive `datetime.timestamp()`, fold=0): a skipped time moves forward by the gap, a
 * repeated one is its first (EDT) occurrence.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { parseTime } from '../../src/time.js';
import { EDT, epochAt, EST } from './support/civil.js';

const previousTz = process.env.TZ;
process.env.TZ = 'America/New_York';
afterAll(() => {
  if (previousTz === undefined) delete process.env.TZ;
  else process.env.TZ = previousTz;
});

const p = (value: string) => parseTime(value, 'not_before');

describe('TZ=America/New_York', () => {
  it('is in effect', () => {
    expect(new Date(2026, 0, 1).getTimezoneOffset()).toBe(300);
    expect(new Date(2026, 6, 1).getTimezoneOffset()).toBe(240);
  });

  it.each([
    ['2026-01-15T12:00:00', epochAt(2026, 1, 15, 12, 0, 0, EST)],
    ['2026-07-15T12:00:00', epochAt(2026, 7, 15, 12, 0, 0, EDT)],
    ['2026-07-15', epochAt(2026, 7, 15, 0, 0, 0, EDT)],
    ['2026-01-15', epochAt(2026, 1, 15, 0, 0, 0, EST)],
    ['2026-05-04 03:00:00.5', epochAt(2026, 5, 4, 3, 0, 0, EDT)],
  ])('local %s', (text, expected) => {
    expect(p(text)).toBe(expected);
  });

  describe('spring forward, 2026-03-08', () => {
    it.each([
      ['2026-03-08', epochAt(2026, 3, 8, 5, 0, 0)], // 00:00 EST
      ['2026-03-08T01:59:59', epochAt(2026, 3, 8, 6, 59, 59)], // last EST second
      ['2026-03-08T02:00:00', epochAt(2026, 3, 8, 7, 0, 0)], // skipped: = 03:00 EDT
      ['2026-03-08T02:30:00', epochAt(2026, 3, 8, 7, 30, 0)], // skipped: = 03:30 EDT
      ['2026-03-08T03:30:00', epochAt(2026, 3, 8, 7, 30, 0)], // the same instant, written as EDT
      ['2026-03-08T03:00:00', epochAt(2026, 3, 8, 7, 0, 0)],
    ])('%s', (text, expected) => {
      expect(p(text)).toBe(expected);
    });
  });

  describe('fall back, 2026-11-01', () => {
    it.each([
      ['2026-11-01', epochAt(2026, 11, 1, 4, 0, 0)], // 00:00 EDT
      ['2026-11-01T00:59:59', epochAt(2026, 11, 1, 4, 59, 59)],
      ['2026-11-01T01:00:00', epochAt(2026, 11, 1, 5, 0, 0)], // ambiguous: first (EDT)
      ['2026-11-01T01:30:00', epochAt(2026, 11, 1, 5, 30, 0)], // ambiguous: first (EDT)
      ['2026-11-01T01:59:59', epochAt(2026, 11, 1, 5, 59, 59)],
      ['2026-11-01T02:00:00', epochAt(2026, 11, 1, 7, 0, 0)], // EST again
    ])('%s', (text, expected) => {
      expect(p(text)).toBe(expected);
    });
  });

  it('explicit offsets ignore TZ, even inside the gap', () => {
    expect(p('2026-03-08T02:30:00Z')).toBe(epochAt(2026, 3, 8, 2, 30, 0));
    expect(p('2026-03-08T02:30:00-05:00')).toBe(epochAt(2026, 3, 8, 7, 30, 0));
    expect(p('2026-11-01T01:30:00-05:00')).toBe(epochAt(2026, 11, 1, 6, 30, 0)); // the second 01:30
  });
});
