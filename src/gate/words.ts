import { ReserverError } from '../errors.js';

/**
 * Splitting `SSH_ORIGINAL_COMMAND` into words as a POSIX shell would, without a shell, refusing
 * whatever a shell would treat specially.
 *
 * Written by hand rather than with `shell-quote`, which was evaluated (1.12) and cannot express the
 * refusals soundly: its `parse` substitutes `$VAR` and `"$(id)"` (it yields `x=<>(id)`: the `$` is gone,
 * so nothing is left to refuse), passes backticks and `[x]`, `~root` through as plain words, turns an
 * unquoted newline into a blank, and does not say whether the `=` of `NAME=value` was quoted (a shell
 * treats `'A=b' cmd` as a command named `A=b`, not an assignment). The rules here are few: the quoting
 * that Python's `shlex.quote` produces (single quotes, double quotes, backslashes), and a refusal for
 * every character that would make the shell do anything but split words.
 */

/** One word: its value once quotes are removed, and whether it is a `NAME=value` assignment to a shell. */
export interface Word {
  readonly value: string;
  /** The `NAME` of an assignment word (`NAME=` unquoted at its start, NAME a shell name), else null. */
  readonly assigns: string | null;
}

/** Unquoted, each of these makes a shell do more than split words: operators, subshells, globs. */
const SPECIAL = new Set([';', '|', '&', '<', '>', '(', ')', '*', '?', '[', ']']);
/**
 * Refused too, though the rules name only a leading `~`: bash expands `{a,b}`, and `~` after the `=` or
 * a `:` of an assignment; `shlex.quote` quotes all three, so a command line it built never has them bare.
 */
const ALSO_REFUSED = new Set(['{', '}', '~']);
const BLANK = new Set([' ', '\t']);

function refuse(reason: string): never {
  throw new ReserverError('NOT_PERMITTED', `not permitted: ${reason}`);
}

/** Inside double quotes a backslash quotes only these; before anything else it stays. */
const DOUBLE_QUOTE_ESCAPES = new Set(['"', '\\', '$', '`', '\n']);

/**
 * The words of `line`, or a `NOT_PERMITTED` error naming the first character a shell would treat
 * specially: `; | & < > ( ) * ? [ ] { } ~` or a newline outside quotes, `$` or a
 * backtick anywhere outside single quotes (a shell expands them inside double quotes too), `#` at the
 * start of a word (a comment), an unterminated quote or a trailing backslash.
 */
export function splitWords(line: string): Word[] {
  const words: Word[] = [];
  let i = 0;
  while (i < line.length) {
    const c = line[i] as string;
    if (BLANK.has(c)) {
      i++;
      continue;
    }
    // A line continuation between words joins nothing: it is not an (empty) word of its own.
    if (c === '\\' && line[i + 1] === '\n') {
      i += 2;
      continue;
    }
    const [word, next] = readWord(line, i);
    words.push(word);
    i = next;
  }
  return words;
}

/** The word starting at `start` (not a blank), and the index after it. */
function readWord(line: string, start: number): [Word, number] {
  let value = '';
  let i = start;
  /** The unquoted text at the start of the word, while nothing has been quoted yet: an assignment's `NAME=`. */
  let unquotedPrefix = '';
  let quoted = false;
  if (line[i] === '#') refuse('a word starting with # (the shell ignores the rest of the line)');
  while (i < line.length) {
    const c = line[i] as string;
    if (BLANK.has(c)) break;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end === -1) refuse('an unterminated single quote');
      value += line.slice(i + 1, end);
      i = end + 1;
      quoted = true;
    } else if (c === '"') {
      const [text, next] = readDoubleQuoted(line, i + 1);
      value += text;
      i = next;
      quoted = true;
    } else if (c === '\\') {
      if (i + 1 >= line.length) refuse('a backslash at the end of the line');
      // An escaped newline is a line continuation to a shell: it disappears.
      if (line[i + 1] !== '\n') value += line[i + 1];
      i += 2;
      quoted = true;
    } else {
      refuseUnquoted(c);
      value += c;
      if (!quoted) unquotedPrefix += c;
      i++;
    }
  }
  const assignment = /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(unquotedPrefix);
  return [{ value, assigns: assignment === null ? null : (assignment[1] as string) }, i];
}

function refuseUnquoted(c: string): void {
  if (SPECIAL.has(c)) refuse(`${JSON.stringify(c)} outside quotes (a shell would treat it specially)`);
  if (c === '\n' || c === '\r') refuse('a newline outside quotes (a second command to a shell)');
  if (c === '~') refuse('"~" outside quotes (a shell expands a home folder)');
  if (ALSO_REFUSED.has(c)) refuse(`${JSON.stringify(c)} outside quotes (bash expands braces)`);
  if (c === '$') refuse('"$" outside single quotes (a shell expands it)');
  if (c === '`') refuse('a backtick outside single quotes (a shell runs what it quotes)');
}

/** The text of a double-quoted string whose content starts at `start`, and the index after its closing quote. */
function readDoubleQuoted(line: string, start: number): [string, number] {
  let text = '';
  let i = start;
  for (;;) {
    if (i >= line.length) refuse('an unterminated double quote');
    const c = line[i] as string;
    if (c === '"') return [text, i + 1];
    if (c === '$') refuse('"$" inside double quotes (a shell expands it there too)');
    if (c === '`') refuse('a backtick inside double quotes (a shell runs what it quotes there too)');
    if (c === '\\' && i + 1 < line.length && DOUBLE_QUOTE_ESCAPES.has(line[i + 1] as string)) {
      if (line[i + 1] !== '\n') text += line[i + 1];
      i += 2;
      continue;
    }
    text += c;
    i++;
  }
}
