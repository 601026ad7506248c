/**
 * src/random.ts: the fractions ULIDs draw their random part from.
 */
import { monotonicFactory } from 'ulid';
import { describe, expect, it } from 'vitest';
import { urandomFractions } from '../../src/random.js';

describe('urandomFractions', () => {
  it('gives fractions in [0, 1), spread over the range, across refills of its 4 KiB buffer', () => {
    const next = urandomFractions();
    const draws = Array.from({ length: 10_000 }, () => next()); // ten refills
    expect(draws.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(draws).size).toBeGreaterThan(9_990);
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    expect(mean).toBeGreaterThan(0.48);
    expect(mean).toBeLessThan(0.52);
    // Each tenth of the range gets its share (10 % +- 2 %).
    const deciles = Array.from({ length: 10 }, (_, d) => draws.filter((x) => Math.floor(x * 10) === d).length);
    for (const n of deciles) expect(Math.abs(n - 1_000)).toBeLessThan(200);
  });

  it('makes ulid produce distinct, increasing ids', () => {
    const id = monotonicFactory(urandomFractions());
    const ids = Array.from({ length: 1_000 }, () => id(1_800_000_000_000));
    expect(new Set(ids).size).toBe(1_000);
    expect([...ids].sort()).toEqual(ids);
    for (const x of ids) expect(x).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
  });
});
