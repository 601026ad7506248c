import { basename, join, resolve } from 'node:path';
import { ReserverError } from '../errors.js';
import type { Word } from './words.js';

/**
 * What a gated command line asks for, read from its words: the assignments before the program are
 * checked and dropped, the program must be this tool (or orchesjob, for `orchesjob status`), then
 * the verb and its arguments. The rule for every override is one: one that changes nothing is
 * accepted, one that changes anything is refused.
 */

/** What the gate uses whatever the command line says: the policy's database and the host's runner. */
export interface GateTarget {
  /** Absolute. */
  readonly db: string;
  readonly orchesjobBin: string;
}

export interface GateRequest {
  /** `reserve`, `status` ..., or `orchesjob status`. */
  readonly verb: string;
  /** The words after the verb. */
  readonly args: readonly string[];
}

/** The home variables whose database is `<value>/reserver.sqlite3`: the only assignments accepted. */
const HOME_VARIABLES = ['ORCHESJOB_HOME', 'ORCHESJOB_RESERVER_HOME'];

export function notPermitted(reason: string): ReserverError {
  return new ReserverError('NOT_PERMITTED', `not permitted: ${reason}`);
}

/** The request in `words`, or a `NOT_PERMITTED` error. */
export function readRequest(words: readonly Word[], target: GateTarget): GateRequest {
  let i = 0;
  for (; i < words.length && (words[i] as Word).assigns !== null; i++) {
    const { value, assigns } = words[i] as Word;
    const setting = value.slice((assigns as string).length + 1);
    if (!HOME_VARIABLES.includes(assigns as string)) {
      throw notPermitted(`the variable ${assigns} may not be set (only ${HOME_VARIABLES.join(' or ')}, naming the gate's database)`);
    }
    if (setting === '' || resolve(join(setting, 'reserver.sqlite3')) !== target.db) {
      throw notPermitted(`${assigns}=${setting} names another database than the gate's (${target.db})`);
    }
  }
  const program = words[i]?.value;
  if (program === undefined) throw notPermitted('no command');
  const verb = words[i + 1]?.value;
  const name = basename(program);
  if ((name !== 'orchesjob-reserver' && name !== 'orchesjob') || program.endsWith('/')) {
    throw notPermitted(`the program must be orchesjob-reserver (or orchesjob for "orchesjob status"), not ${JSON.stringify(program)}`);
  }
  if (verb === undefined) throw notPermitted(`${name} without a verb`);
  // Else `orchesjob-reserver 'orchesjob status'` would pass for the sensor's verb.
  if (name === 'orchesjob-reserver' && /\s/.test(verb)) throw notPermitted(`the verb ${JSON.stringify(verb)} contains a blank`);
  if (name === 'orchesjob' && verb !== 'status') throw notPermitted(`orchesjob ${JSON.stringify(verb)}: only "orchesjob status" goes through the gate`);
  return { verb: name === 'orchesjob' ? 'orchesjob status' : verb, args: words.slice(i + 2).map((w) => w.value) };
}

/** `--db` and `--orchesjob-bin` as the command line gave them: each must change nothing. */
export function checkOverrides(flags: { readonly db?: string | undefined; readonly 'orchesjob-bin'?: string | undefined }, target: GateTarget): void {
  const db = flags.db;
  if (db !== undefined && resolve(db) !== target.db) throw notPermitted(`--db ${db} is not the gate's database (${target.db})`);
  const bin = flags['orchesjob-bin'];
  if (bin !== undefined && bin !== target.orchesjobBin) {
    throw notPermitted(`--orchesjob-bin ${bin} is not the host's orchesjob (${target.orchesjobBin})`);
  }
}

/** The lookup of `orchesjob status` through the gate: exactly `--run-key K` or `--job-id ID`, as the provider's sensor sends it. */
export function orchesjobStatusLookup(args: readonly string[]): { readonly runKey: string } | { readonly jobId: string } {
  const [flag, value, ...extra] = args;
  if (extra.length === 0 && value !== undefined && value !== '') {
    if (flag === '--run-key') return { runKey: value };
    if (flag === '--job-id') return { jobId: value };
  }
  throw notPermitted('"orchesjob status" takes exactly --run-key KEY or --job-id ID through the gate');
}
