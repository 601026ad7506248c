import { defineCommand } from 'citty';
import { ReserverError } from '../errors.js';
import { callOrchesjob } from '../orchesjob.js';
import { printJson, reservationJson, writeStdout } from '../output.js';
import { reservationDetail } from '../table.js';
import {
  commonArgs,
  formatArg,
  identity,
  identityArgs,
  orchesjobBin,
  outputFormat,
  parseOrHelp,
  resolveReservation,
  withLedger,
} from './shared.js';

export const command = defineCommand({
  meta: {
    name: 'status',
    description:
      'Show a reservation. With --include-job, also the job from `orchesjob status --job-id` once a job id exists.\n\n' +
      'Usage: orchesjob-reserver status (--run-key KEY | --reservation-id ID) [--include-job] [--format json|table]\n' +
      'Exit codes: 0 ok, 1 general error (orchesjob failed), 2 invalid arguments, 4 not found.\n' +
      'Example: orchesjob-reserver status --run-key nightly-2026-05-04 --include-job',
  },
  args: {
    ...identityArgs,
    'include-job': { type: 'boolean', description: 'Also call `orchesjob status --job-id <job_id>` if dispatched' },
    ...formatArg,
    ...commonArgs,
  },
  async run(ctx) {
    const parsed = await parseOrHelp(ctx);
    if (parsed === null) return;
    const { flags } = parsed;
    const id = identity(flags);
    const format = outputFormat(flags);
    const reservation = await withLedger(flags, (ledger) => resolveReservation(ledger, id));
    const output: Record<string, unknown> = { reservation: reservationJson(reservation) };
    if (flags['include-job'] === true && reservation.jobId !== null) {
      output['job'] = await jobStatus(orchesjobBin(flags), reservation.jobId);
    }
    if (format === 'table') {
      writeStdout(reservationDetail(reservation, Math.floor(Date.now() / 1000), output['job']));
    } else {
      printJson(output);
    }
  },
});

/** orchesjob's view of the job; its JSON as printed, or its raw output when it is not JSON. */
async function jobStatus(bin: string, jobId: string): Promise<unknown> {
  const outcome = await callOrchesjob(bin, ['status', '--job-id', jobId]);
  if (outcome.code !== 0) {
    throw new ReserverError(
      'GENERAL',
      `orchesjob status --job-id ${jobId} failed with exit code ${outcome.code ?? outcome.signal}: ${outcome.stderr.trim()}`,
    );
  }
  try {
    return JSON.parse(outcome.stdout);
  } catch {
    return { raw_stdout: outcome.stdout, raw_stderr: outcome.stderr };
  }
}
