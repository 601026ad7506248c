import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { identity, identityArgs } from '../cli/identity.js';
import { orchesjobBin, withLedger } from '../cli/paths.js';
import type { Scope } from '../cli/scope.js';
import { inScope, localScope, notFound } from '../cli/scope.js';
import { ReserverError } from '../errors.js';
import type { Reservation } from '../events/index.js';
import { IllegalTransitionError } from '../events/index.js';
import { write } from '../ledger.js';
import { OrchesjobClient } from '../orchesjob/client.js';
import { printJson, reservationJson } from '../output.js';
import { passThrough } from './proxy.js';

export const args = { ...identityArgs, ...commonArgs } as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'cancel',
    description:
      'Cancel a reservation before dispatch (RESERVED, DISPATCH_FAILED, EXPIRED -> CANCELLED), or stop its job once dispatched: `orchesjob cancel --job-id`, or `orchesjob abort --job-id` when orchesjob has no `cancel` subcommand (the real one has none), its output and exit code passed through.\n\n' +
      'Usage: orchesjob-reserver cancel (--run-key KEY | --reservation-id ID)\n' +
      'Exit codes: 0 ok (or orchesjob\'s), 1 general error, 2 invalid arguments, 4 not found, 6 cannot cancel in this state (DISPATCHING, CANCELLED).\n' +
      'Example: orchesjob-reserver cancel --run-key nightly-2026-05-04',
  },
  args,
  run: runParsed((parsed) => cancel(parsed, localScope('cancel'))),
});

/** `cancel`, of a reservation visible in `scope`, written as its actor. */
export async function cancel({ flags }: ParsedArgv<typeof args>, scope: Scope): Promise<void> {
  const id = identity(flags);
  // One transaction reads the state and cancels it, so that a dispatch committed in between cannot
  // be cancelled as RESERVED: a reservation with a job id is its job's to cancel.
  const done = await withLedger(flags, (ledger) =>
    write(ledger.db, { actor: scope.actor }, async (w): Promise<{ cancelled: Reservation } | { jobId: string }> => {
      if ('runKey' in id && !inScope(scope, id.runKey)) throw notFound();
      const current = await w.read(id);
      if (!inScope(scope, current.runKey)) throw notFound();
      if (current.jobId !== null) return { jobId: current.jobId };
      try {
        return { cancelled: (await w.execute({ state: current }, { type: 'Cancel' })).reservation };
      } catch (error) {
        if (error instanceof IllegalTransitionError) {
          throw new ReserverError('WRONG_STATE', `Cannot cancel reservation in status ${error.from} without job_id.`);
        }
        throw error;
      }
    }),
  );
  if ('cancelled' in done) {
    printJson({ cancelled: true, reservation: reservationJson(done.cancelled) });
    return;
  }
  passThrough(await new OrchesjobClient(orchesjobBin(flags)).cancel(done.jobId));
}
