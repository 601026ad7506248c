import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { identity, identityArgs, resolveReservation } from '../cli/identity.js';
import { orchesjobBin, withLedger } from '../cli/paths.js';
import type { Scope } from '../cli/scope.js';
import { localScope } from '../cli/scope.js';
import { ReserverError } from '../errors.js';
import { OrchesjobClient } from '../orchesjob/client.js';
import { passThrough } from './proxy.js';

export const args = { ...identityArgs, ...commonArgs } as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'result',
    description:
      "Print the job's result from orchesjob, unchanged: `orchesjob result --job-id`, or `orchesjob status --job-id` when orchesjob has no `result` subcommand (the real one has none). Stdout, stderr and exit code are orchesjob's.\n\n" +
      'Usage: orchesjob-reserver result (--run-key KEY | --reservation-id ID)\n' +
      "Exit codes: orchesjob's; 1 general error, 2 invalid arguments, 4 not found, 5 not dispatched yet.\n" +
      'Example: orchesjob-reserver result --run-key nightly-2026-05-04',
  },
  args,
  run: runParsed((parsed) => result(parsed, localScope('result'))),
});

/** `result`, of a reservation visible in `scope`. */
export async function result({ flags }: ParsedArgv<typeof args>, scope: Scope): Promise<void> {
  const id = identity(flags);
  const reservation = await withLedger(flags, (ledger) => resolveReservation(ledger, id, scope));
  if (reservation.jobId === null) {
    throw new ReserverError('NOT_DISPATCHED', 'Reservation has not been dispatched yet; job_id is not available.');
  }
  passThrough(await new OrchesjobClient(orchesjobBin(flags)).result(reservation.jobId));
}
