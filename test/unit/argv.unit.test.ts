/**
 * parseArgv: the argv rules citty cannot express (DESIGN.md "Commands", STYLE.md "Know the parser").
 */
import { describe, expect, it } from 'vitest';
import { parseArgv } from '../../src/cli/argv.js';
import type { ArgvOptions, FlagsDef } from '../../src/cli/argv.js';
import { EXIT_CODES, ReserverError } from '../../src/errors.js';

/** Shaped like reserve's definition (plus `--limit`, a numeric flag as `list` has). */
const DEF = {
  'run-key': { type: 'string' },
  'not-before': { type: 'string' },
  'expires-at': { type: 'string' },
  'metadata-json': { type: 'string' },
  limit: { type: 'string' },
  db: { type: 'string' },
  'orchesjob-bin': { type: 'string' },
  'orchesjob-start-option': { type: 'string', repeatable: true },
  verbose: { type: 'boolean' },
  target: { type: 'positional' },
} as const satisfies FlagsDef;

const RESERVE: ArgvOptions = { takesCommand: true };
const STATUS: ArgvOptions = {};

const parse = (args: string[], options: ArgvOptions = RESERVE) => parseArgv(args, DEF, options);

/** The error parseArgv throws, checked to be a usage error (exit 2). */
function usageError(args: string[], options: ArgvOptions = RESERVE): ReserverError {
  let caught: unknown;
  try {
    parse(args, options);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ReserverError);
  const e = caught as ReserverError;
  expect(e.code).toBe('INVALID_ARGUMENT');
  expect(EXIT_CODES[e.code].status).toBe(2);
  return e;
}

describe('the target command', () => {
  it('everything after `--` is the command, even our own flags', () => {
    expect(parse(['--run-key', 'k', '--', 'prog', '--run-key', 'x', '--db', 'y', '--help', '--'])).toEqual({
      flags: { 'run-key': 'k', 'orchesjob-start-option': [], verbose: false },
      help: false,
      command: ['prog', '--run-key', 'x', '--db', 'y', '--help', '--'],
    });
  });

  it('without `--`, the first positional starts the command', () => {
    expect(parse(['--run-key', 'k', 'echo', '--db', 'x'])).toEqual({
      flags: { 'run-key': 'k', 'orchesjob-start-option': [], verbose: false },
      help: false,
      command: ['echo', '--db', 'x'],
    });
  });

  it('a lone `-` is a positional (stdin), so it starts the command', () => {
    expect(parse(['--run-key', 'k', '-', 'a']).command).toEqual(['-', 'a']);
  });

  it('no command at all is null; `--` with nothing after is []', () => {
    expect(parse(['--run-key', 'k']).command).toBeNull();
    expect(parse(['--run-key', 'k', '--']).command).toEqual([]);
  });

  it('`-- prog --help` does not ask for help', () => {
    expect(parse(['--run-key', 'k', '--', 'prog', '--help']).help).toBe(false);
    expect(parse(['--run-key', 'k', 'prog', '-h']).help).toBe(false);
  });

  it('a positional is an error when the subcommand takes no command', () => {
    expect(() => parse(['--run-key', 'k', 'extra'], STATUS)).toThrowErrorMatchingInlineSnapshot(
      `[ReserverError: unexpected argument: "extra"]`,
    );
    usageError(['extra'], STATUS);
  });

  // BUG (src/argv.ts, the `arg === '--'` branch): when takesCommand is false, `--` swallows the rest
  // silently: `status --run-key k -- extra` succeeds and `extra` is ignored. The Python tool
  // (argparse) exits 2 with "unrecognized arguments: extra".
  it('arguments after `--` are an error when the subcommand takes no command', () => {
    expect(() => parse(['--run-key', 'k', '--', 'extra'], STATUS)).toThrow(ReserverError);
  });
});

describe('--orchesjob-start-option', () => {
  it('takes a value that starts with `--`, after `=` or as the next argument', () => {
    expect(parse(['--orchesjob-start-option=--strict']).flags['orchesjob-start-option']).toEqual(['--strict']);
    expect(parse(['--orchesjob-start-option', '--strict']).flags['orchesjob-start-option']).toEqual(['--strict']);
  });

  it('repeated, it keeps every value in order', () => {
    const { flags, command } = parse([
      '--orchesjob-start-option',
      '--strict',
      '--run-key',
      'k',
      '--orchesjob-start-option=--sync',
      '--orchesjob-start-option',
      '-v',
      '--',
      'prog',
    ]);
    expect(flags['orchesjob-start-option']).toEqual(['--strict', '--sync', '-v']);
    expect(command).toEqual(['prog']);
  });

  it('is [] when not given, and `=` keeps everything after the first `=`', () => {
    expect(parse([]).flags['orchesjob-start-option']).toEqual([]);
    expect(parse(['--orchesjob-start-option=--label=a=b']).flags['orchesjob-start-option']).toEqual(['--label=a=b']);
  });

  it('without a value is an error', () => {
    expect(() => parse(['--orchesjob-start-option'])).toThrowErrorMatchingInlineSnapshot(
      `[ReserverError: option --orchesjob-start-option requires a value]`,
    );
  });
});

describe('values', () => {
  it('string flags take the next argument or the text after `=` (which may be empty)', () => {
    expect(parse(['--run-key', 'k', '--db=/tmp/x.sqlite3', '--metadata-json={"a": 1}']).flags).toEqual({
      'run-key': 'k',
      db: '/tmp/x.sqlite3',
      'metadata-json': '{"a": 1}',
      'orchesjob-start-option': [],
      verbose: false,
    });
    expect(parse(['--run-key=']).flags['run-key']).toBe('');
  });

  it('a negative number is a value, not a flag', () => {
    expect(parse(['--limit', '-5']).flags['limit']).toBe('-5');
    expect(parse(['--not-before', '-86400']).flags['not-before']).toBe('-86400');
  });

  it('a missing value is an error', () => {
    expect(() => parse(['--run-key'])).toThrowErrorMatchingInlineSnapshot(
      `[ReserverError: option --run-key requires a value]`,
    );
    usageError(['--run-key']);
  });

  it('a flag-like value is an error: `--run-key --db`', () => {
    expect(() => parse(['--run-key', '--db', 'x'])).toThrowErrorMatchingInlineSnapshot(
      `[ReserverError: option --run-key requires a value]`,
    );
    usageError(['--run-key', '-h']);
  });

  it('a boolean flag is true, and `=value` on it is an error', () => {
    expect(parse(['--verbose']).flags['verbose']).toBe(true);
    expect(() => parse(['--verbose=yes'])).toThrowErrorMatchingInlineSnapshot(
      `[ReserverError: option --verbose takes no value]`,
    );
    usageError(['--verbose=']);
  });
});

describe('unknown and repeated flags', () => {
  it('an unknown long flag is an error', () => {
    expect(() => parse(['--run-key', 'k', '--nope', 'x'])).toThrowErrorMatchingInlineSnapshot(
      `[ReserverError: unknown option: --nope]`,
    );
    usageError(['--nope=1']);
  });

  it('an unknown short flag is an error', () => {
    expect(() => parse(['-x'])).toThrowErrorMatchingInlineSnapshot(`[ReserverError: unknown option: -x]`);
  });

  it('a positional slot of the definition is not a flag', () => {
    expect(() => parse(['--target', 'x'])).toThrowErrorMatchingInlineSnapshot(
      `[ReserverError: unknown option: --target]`,
    );
  });

  it('a non-repeatable flag given twice is an error, booleans too', () => {
    expect(() => parse(['--run-key', 'a', '--run-key=b'])).toThrowErrorMatchingInlineSnapshot(
      `[ReserverError: option --run-key given more than once]`,
    );
    expect(() => parse(['--verbose', '--verbose'])).toThrowErrorMatchingInlineSnapshot(
      `[ReserverError: option --verbose given more than once]`,
    );
  });

  // BUG (src/argv.ts, `def[name]` and `flags[name] !== undefined`): names of Object.prototype
  // members are looked up on plain objects, so `--constructor x` is rejected, but with the wrong
  // message "option --constructor given more than once" instead of "unknown option: --constructor".
  it('a flag named like an Object.prototype member is an unknown option', () => {
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const e = usageError([`--${name}`, 'x']);
      expect(e.message).toBe(`unknown option: --${name}`);
    }
  });
});

describe('help', () => {
  it('`--help` and `-h` ask for help, anywhere before the command', () => {
    expect(parse(['--help']).help).toBe(true);
    expect(parse(['--run-key', 'k', '-h', '--', 'prog']).help).toBe(true);
    expect(parse(['-h'], STATUS).help).toBe(true);
    expect(parse([]).help).toBe(false);
  });
});

describe('typed flags: the definition is the only declaration', () => {
  it('each flag reads as declared: string | undefined, every value when repeatable, boolean (false when absent)', () => {
    const { flags } = parse(['--run-key', 'k', '--orchesjob-start-option=--strict']);
    const runKey: string | undefined = flags['run-key'];
    const startOptions: readonly string[] = flags['orchesjob-start-option'];
    const verbose: boolean = flags.verbose;
    expect({ runKey, startOptions, verbose, db: flags.db }).toEqual({
      runKey: 'k',
      startOptions: ['--strict'],
      verbose: false,
      db: undefined,
    });
  });

  it('a name the definition does not declare, or a value read as the wrong type, does not compile', () => {
    const { flags } = parse([]);
    // @ts-expect-error a misspelt flag name
    expect(flags['run-kye']).toBeUndefined();
    // @ts-expect-error a positional slot of the definition is not a flag
    expect(flags.target).toBeUndefined();
    // @ts-expect-error a string flag may be absent
    const runKey: string = flags['run-key'];
    expect(runKey).toBeUndefined();
  });
});
