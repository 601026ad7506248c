import { defineCommand } from 'citty';
import { ReserverError } from '../errors.js';
import { callWithFallback, proxyOutcome } from '../orchesjob.js';
import { commonArgs, identity, identityArgs, orchesjobBin, parseOrHelp, resolveReservation, withLedger } from './shared.js';

export const command = defineCommand({
  meta: {
    name: 'result',
    description:
      "Print the job's result from orchesjob, unchanged: `orchesjob result --job-id`, or `orchesjob status --job-id` when orchesjob has no `result` subcommand (the real one has none). Stdout, stderr and exit code are orchesjob's.\n\n" +
      'Usage: orchesjob-reserver result (--run-key KEY | --reservation-id ID)\n' +
      "Exit codes: orchesjob's; 1 general error, 2 invalid arguments, 4 not found, 5 not dispatched yet.\n" +
      'Example: orchesjob-reserver result --run-key nightly-2026-05-04',
  },
  args: { ...identityArgs, ...commonArgs },
  async run(ctx) {
    const parsed = await parseOrHelp(ctx);
    if (parsed === null) return;
    const { flags } = parsed;
    const id = identity(flags);
    const reservation = await withLedger(flags, (ledger) => resolveReservation(ledger, id));
    if (reservation.jobId === null) {
      throw new ReserverError('NOT_DISPATCHED', 'Reservation has not been dispatched yet; job_id is not available.');
    }
    const jobId = reservation.jobId;
    proxyOutcome(
      await callWithFallback(orchesjobBin(flags), ['result', '--job-id', jobId], ['status', '--job-id', jobId]),
    );
  },
});
