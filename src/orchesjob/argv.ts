import type { Reservation } from '../events/index.js';

/**
 * The command lines this program gives orchesjob, and how one is shown to a person. Nothing else
 * spells an orchesjob subcommand or option. This module loads nothing (no processes): `table.ts`
 * uses `shellJoin` on paths that never spawn.
 */

/** What of a reservation its start is made of. */
export type StartSpec = Pick<Reservation, 'runKey' | 'orchesjobStartOptions' | 'command'>;

/** The argv of one dispatch: `orchesjob start --run-key K <global...> <reservation...> -- CMD...`. */
export function startArgv(bin: string, globalOptions: readonly string[], r: StartSpec): string[] {
  return [bin, 'start', '--run-key', r.runKey, ...globalOptions, ...r.orchesjobStartOptions, '--', ...r.command];
}

/** orchesjob's view of one job. */
export function statusByJobArgs(jobId: string): string[] {
  return ['status', '--job-id', jobId];
}

/**
 * Every job of a run key, newest first (`--all`, orchesjob 1.1), or only its current one when `all` is
 * false (orchesjob 1.0 has no `--all`).
 */
export function statusByRunKeyArgs(runKey: string, all: boolean): string[] {
  return all ? ['status', '--run-key', runKey, '--all'] : ['status', '--run-key', runKey];
}

/**
 * A documented subcommand and what to call when orchesjob does not know it: the real orchesjob has no
 * `result` (its `status` says what there is) and no `cancel` (its `abort` stops a job).
 */
export interface WithFallback {
  readonly args: readonly string[];
  readonly fallback: readonly string[];
}

export function resultArgs(jobId: string): WithFallback {
  return { args: ['result', '--job-id', jobId], fallback: ['status', '--job-id', jobId] };
}

export function cancelArgs(jobId: string): WithFallback {
  return { args: ['cancel', '--job-id', jobId], fallback: ['abort', '--job-id', jobId] };
}

/** Quote an argv for a human reading an error message (not for a shell: nothing is run through one). */
export function shellJoin(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'"'"'`)}'`)).join(' ');
}
