import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReserverError } from '../../src/errors.js';
import { splitWords } from '../../src/gate/words.js';

/** Python's shlex.quote of each argv (one JSON array per line in, one command line per line out). */
function pythonQuote(argvs: readonly (readonly string[])[]): string[] {
  const script = 'import json, shlex, sys\nfor line in sys.stdin:\n    print(json.dumps(" ".join(shlex.quote(w) for w in json.loads(line))))\n';
  const r = spawnSync('python3', ['-c', script], { input: argvs.map((a) => JSON.stringify(a)).join('\n') + '\n', encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as string);
}

function refusal(line: string): string {
  try {
    splitWords(line);
  } catch (error) {
    if (error instanceof ReserverError && error.code === 'NOT_PERMITTED') return error.message;
    throw error;
  }
  throw new Error(`accepted: ${JSON.stringify(line)}`);
}

describe('splitWords', () => {
  it('gives back every argv that shlex.quote quoted (2000 generated argvs, every character a shell treats specially)', () => {
    const char = fc.constantFrom(...'ab/=-_.:,@%+ \t\n\'"\\$`;|&<>()*?[]{}~#!^é😀\u0001'.split(''), ...['\u00a0']);
    const word = fc.array(char, { maxLength: 8 }).map((cs) => cs.join(''));
    const argvs = fc.sample(fc.array(word, { minLength: 1, maxLength: 6 }), 2000);
    const lines = pythonQuote(argvs);
    argvs.forEach((argv, i) => {
      expect(splitWords(lines[i] as string).map((w) => w.value), lines[i]).toEqual(argv);
    });
  });

  it('reads the provider-built assignments: NAME= unquoted is an assignment, quoted it is not', () => {
    expect(splitWords("ORCHESJOB_HOME='/a b' orchesjob-reserver list")).toEqual([
      { value: 'ORCHESJOB_HOME=/a b', assigns: 'ORCHESJOB_HOME' },
      { value: 'orchesjob-reserver', assigns: null },
      { value: 'list', assigns: null },
    ]);
    expect(splitWords("'A=b' x")[0]).toEqual({ value: 'A=b', assigns: null });
    expect(splitWords('1A=b x')[0]?.assigns).toBeNull();
  });

  it('splits the quoting forms a person types too', () => {
    expect(splitWords(`a "b c" d\\ e 'f"g' "h\\"i\\\\j\\k" ''`).map((w) => w.value)).toEqual(['a', 'b c', 'd e', 'f"g', 'h"i\\j\\k', '']);
    expect(splitWords('a\\\nb').map((w) => w.value)).toEqual(['ab']);
    // sh: a line continuation between blanks is no word; at the start of a word it leaves the word as it was.
    expect(splitWords('a \\\n b').map((w) => w.value)).toEqual(['a', 'b']);
    expect(splitWords('a \\\n\\\n b \\\n').map((w) => w.value)).toEqual(['a', 'b']);
    expect(splitWords('a \\\nb').map((w) => w.value)).toEqual(['a', 'b']);
    expect(splitWords('\\\nA=b x')[0]).toEqual({ value: 'A=b', assigns: 'A' });
    expect(splitWords("a \\\n'' b").map((w) => w.value)).toEqual(['a', '', 'b']);
    expect(splitWords("'a\nb'").map((w) => w.value)).toEqual(['a\nb']);
    expect(splitWords('a#b').map((w) => w.value)).toEqual(['a#b']);
  });

  it.each([
    ['x; id', '";" outside quotes'],
    ['x && id', '"&" outside quotes'],
    ['x | id', '"|" outside quotes'],
    ['x > /tmp/f', '">" outside quotes'],
    ['x < /etc/passwd', '"<" outside quotes'],
    ['x $(id)', '"$" outside single quotes'],
    ['x "$(id)"', '"$" inside double quotes'],
    ['x "${HOME}"', '"$" inside double quotes'],
    ['x $HOME', '"$" outside single quotes'],
    ['x `id`', 'a backtick outside single quotes'],
    ['x "`id`"', 'a backtick inside double quotes'],
    ['x\nid', 'a newline outside quotes'],
    ['x *', '"*" outside quotes'],
    ['x /etc/pass?d', '"?" outside quotes'],
    ['x [ab]', '"[" outside quotes'],
    ['x (id)', '"(" outside quotes'],
    ['x ~root', '"~" outside quotes'],
    ['A=~/x y', '"~" outside quotes'],
    ['x {a,b}', '"{" outside quotes'],
    ['x # rest', 'a word starting with #'],
    ["x 'open", 'an unterminated single quote'],
    ['x "open', 'an unterminated double quote'],
    ['x \\', 'a backslash at the end of the line'],
  ])('refuses %j', (line, reason) => {
    expect(refusal(line)).toContain(reason);
    expect(refusal(line)).toMatch(/^not permitted: /);
  });

  it("keeps $ and backticks inside single quotes as text", () => {
    expect(splitWords("x '$(id) `id` ; | *'").map((w) => w.value)).toEqual(['x', '$(id) `id` ; | *']);
  });
});
