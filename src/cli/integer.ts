import { invalidArgument } from '../errors.js';
import type { StringFlagName } from './argv.js';

/** Python's whitespace for `int()`: `\t\n\v\f\r`, space, U+0085, U+00A0 and the Unicode spaces. */
const SPACES = '[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*';
const INTEGER = `^${SPACES}([+-]?)(\\p{Nd}+(?:_\\p{Nd}+)*)${SPACES}$`;
/** Compiled when first needed: most runs give no integer flag, and a Unicode property costs start-up. */
let integerPattern: RegExp | undefined;

/**
 * What text is an integer, for every integer flag: the rule of the Python tool, whose argparse reads
 * them with `type=int`, i.e. Python's `int(text)`:
 * - optional whitespace around (Python's set, above);
 * - an optional sign, `+` or `-`;
 * - decimal digits (any script's, as Python's `str.isdecimal`), single underscores between them
 *   (`1_000`, not `_1`, `1_` or `1__0`).
 * Nothing else: no `0x10`, `1e3`, `1.0`, or space between the sign and the digits.
 *
 * Returns the integer, or null. Beyond `Number.MAX_SAFE_INTEGER` the value is approximate, which is
 * enough for a range check to refuse it.
 */
export function parseInteger(text: string): number | null {
  integerPattern ??= new RegExp(INTEGER, 'u');
  const match = integerPattern.exec(text);
  if (match === null) return null;
  const digits = (match[2] as string).replaceAll('_', '');
  const magnitude = Number(/^[0-9]+$/.test(digits) ? digits : Array.from(digits, digitValue).join(''));
  return match[1] === '-' && magnitude !== 0 ? -magnitude : magnitude;
}

/**
 * The value of a decimal digit of any script. Unicode assigns decimal digits only in runs of ten,
 * 0 to 9 in order (a stability policy), so a digit's value is its place in its run.
 */
function digitValue(digit: string): number {
  let codePoint = digit.codePointAt(0) as number;
  let place = 0;
  while (/\p{Nd}/u.test(String.fromCodePoint(codePoint - 1))) {
    codePoint--;
    place++;
  }
  return place % 10;
}

/** An integer flag's own range, and the words its error message uses for it. */
export interface IntegerRange {
  readonly min: number;
  /** Default: `Number.MAX_SAFE_INTEGER`. */
  readonly max?: number;
  /** What the flag takes, as the message says it: `Invalid --limit: "0" (a positive integer).` */
  readonly expected: string;
}

/** The range of counts and limits (`list --limit`, `events --limit`, `run --max-concurrent-starts`). */
export const POSITIVE_INTEGER: IntegerRange = { min: 1, expected: 'a positive integer' };

/**
 * An integer flag of a command: undefined when absent, else an integer of `range` (exit 2 otherwise,
 * with `Invalid --<name>: "<text>" (<expected>).`). The name is checked against the command's flags.
 */
export function integerFlag<F, K extends StringFlagName<F>>(flags: F, name: K, range: IntegerRange): number | undefined {
  const text = flags[name] as string | undefined;
  if (text === undefined) return undefined;
  const n = parseInteger(text);
  if (n === null || n < range.min || n > (range.max ?? Number.MAX_SAFE_INTEGER)) {
    throw invalidArgument(`Invalid --${name}: ${JSON.stringify(text)} (${range.expected}).`);
  }
  return n;
}
