/**
 * The one integer rule of every integer flag: Python's `int(text)`, as the Python tool's argparse
 * (`type=int`) applies it; each flag adds its own range and message.
 */
import { describe, expect, it } from 'vitest';
import { parseArgv } from '../../src/cli/argv.js';
import type { FlagsDef } from '../../src/cli/argv.js';
import { integerFlag, parseInteger, POSITIVE_INTEGER } from '../../src/cli/integer.js';
import { ReserverError } from '../../src/errors.js';

describe('parseInteger: what Python 3 int() accepts', () => {
  // Each pair was checked against `python3 -c 'print(int(text))'` (3.11).
  it.each([
    ['5', 5],
    ['0', 0],
    ['+5', 5],
    ['-5', -5],
    ['-0', 0],
    ['007', 7],
    [' 5 ', 5],
    ['\t5\n', 5],
    ['\u00a05\u3000', 5],
    ['\u20285\u0085', 5],
    ['1_000', 1000],
    ['-1_2_3', -123],
    ['٣', 3], // ARABIC-INDIC DIGIT THREE
    ['５_０', 50], // FULLWIDTH DIGITS
    ['१२', 12], // DEVANAGARI
    ['9007199254740991', Number.MAX_SAFE_INTEGER],
  ])('%j is %d', (text, value) => {
    expect(parseInteger(text)).toBe(value);
  });

  it.each([
    '',
    ' ',
    '+',
    '-',
    '+-5',
    '- 5',
    '1 000',
    '_1',
    '1_',
    '1__0',
    '1.5',
    '1.0',
    '1e3',
    '0x10',
    '0b1',
    'abc',
    '5a',
    '\u001c5', // Python's str.isspace() says yes, int() does not strip it
    '\ufeff5', // JavaScript's \s says yes, Python does not
    '²', // a superscript is a digit, not a decimal digit
    'Ⅻ',
  ])('%j is not an integer', (text) => {
    expect(parseInteger(text)).toBeNull();
  });

  it('never returns -0', () => {
    expect(Object.is(parseInteger('-0'), 0)).toBe(true);
  });
});

describe('integerFlag: the rule, then the flag range, with the flag message', () => {
  const def = { limit: { type: 'string' }, position: { type: 'string' }, verbose: { type: 'boolean' } } as const satisfies FlagsDef;
  const flagsOf = (args: string[]) => parseArgv(args, def).flags;

  function message(fn: () => unknown): string {
    try {
      fn();
    } catch (error) {
      expect(error).toBeInstanceOf(ReserverError);
      expect((error as ReserverError).code).toBe('INVALID_ARGUMENT');
      return (error as Error).message;
    }
    throw new Error('expected a usage error');
  }

  it('is undefined when the flag is absent, the integer when in range', () => {
    expect(integerFlag(flagsOf([]), 'limit', POSITIVE_INTEGER)).toBeUndefined();
    expect(integerFlag(flagsOf(['--limit', '+5']), 'limit', POSITIVE_INTEGER)).toBe(5);
    expect(integerFlag(flagsOf(['--limit= 1_0 ']), 'limit', POSITIVE_INTEGER)).toBe(10);
    expect(integerFlag(flagsOf(['--position', '-0']), 'position', { min: 0, expected: 'x' })).toBe(0);
    expect(integerFlag(flagsOf(['--limit', '100']), 'limit', { min: 1, max: 100, expected: 'x' })).toBe(100);
  });

  it('refuses a non-integer and an integer out of range with the same message, naming the flag', () => {
    for (const text of ['0', '-1', 'abc', '2.5', '', '9007199254740992', '1'.repeat(400)]) {
      expect(message(() => integerFlag(flagsOf(['--limit', text]), 'limit', POSITIVE_INTEGER))).toBe(
        `Invalid --limit: ${JSON.stringify(text)} (a positive integer).`,
      );
    }
    expect(
      message(() => integerFlag(flagsOf(['--limit', '101']), 'limit', { min: 1, max: 100, expected: 'a whole number from 1 to 100' })),
    ).toMatchInlineSnapshot(`"Invalid --limit: "101" (a whole number from 1 to 100)."`);
  });

  it('takes only a declared single-valued string flag (checked when compiled)', () => {
    const flags = flagsOf([]);
    // @ts-expect-error a misspelt flag name
    expect(integerFlag(flags, 'limt', POSITIVE_INTEGER)).toBeUndefined();
    // @ts-expect-error a boolean flag is no integer
    expect(() => integerFlag(flags, 'verbose', POSITIVE_INTEGER)).toThrow();
  });
});
