import { defineCommand } from 'citty';
import { ReserverError } from '../errors.js';
import { IllegalTransitionError } from '../events/index.js';
import { transition } from '../ledger.js';
import { callWithFallback, proxyOutcome } from '../orchesjob.js';
import { printJson, reservationJson } from '../output.js';
import { commonArgs, identity, identityArgs, orchesjobBin, parseOrHelp, resolveReservation, withLedger } from './shared.js';

export const command = defineCommand({
  meta: {
    name: 'cancel',
    description:
      'Cancel a reservation before dispatch (RESERVED, DISPATCH_FAILED, EXPIRED -> CANCELLED), or stop its job once dispatched: `orchesjob cancel --job-id`, or `orchesjob abort --job-id` when orchesjob has no `cancel` subcommand (the real one has none), its output and exit code passed through.\n\n' +
      'Usage: orchesjob-reserver cancel (--run-key KEY | --reservation-id ID)\n' +
      'Exit codes: 0 ok (or orchesjob\'s), 1 general error, 2 invalid arguments, 4 not found, 6 cannot cancel in this state (DISPATCHING, CANCELLED).\n' +
      'Example: orchesjob-reserver cancel --run-key nightly-2026-05-04',
  },
  args: { ...identityArgs, ...commonArgs },
  async run(ctx) {
    const parsed = await parseOrHelp(ctx);
    if (parsed === null) return;
    const { flags } = parsed;
    const id = identity(flags);
    const dispatched = await withLedger(flags, async (ledger) => {
      const current = await resolveReservation(ledger, id);
      if (current.jobId !== null) return current;
      try {
        const { reservation } = await transition(
          ledger.db,
          { reservationId: current.reservationId },
          { type: 'Cancel' },
          { actor: 'cli:cancel' },
        );
        printJson({ cancelled: true, reservation: reservationJson(reservation) });
        return null;
      } catch (error) {
        if (error instanceof IllegalTransitionError) {
          throw new ReserverError(
            'CANNOT_CANCEL',
            `Cannot cancel reservation in status ${error.from} without job_id.`,
          );
        }
        throw error;
      }
    });
    if (dispatched === null) return;
    const jobId = dispatched.jobId as string;
    proxyOutcome(await callWithFallback(orchesjobBin(flags), ['cancel', '--job-id', jobId], ['abort', '--job-id', jobId]));
  },
});
