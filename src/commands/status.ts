import { defineCommand } from 'citty';
import { commonArgs, formatArg, outputFormat } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { identity, identityArgs, resolveReservation } from '../cli/identity.js';
import { orchesjobBin, withLedger } from '../cli/paths.js';
import type { Scope } from '../cli/scope.js';
import { localScope } from '../cli/scope.js';
import { ReserverError } from '../errors.js';
import type { DispatchControl } from '../events/control.js';
import type { Reservation } from '../events/index.js';
import type { JobStatus } from '../orchesjob/client.js';
import { OrchesjobClient } from '../orchesjob/client.js';
import { dispatchJson, printJson, reservationJson, writeStdout } from '../output.js';
import { readControl } from '../projections/control.js';
import { reservationDetail } from '../table.js';

export const args = {
  ...identityArgs,
  'include-job': { type: 'boolean', description: 'Also call `orchesjob status --job-id <job_id>` if dispatched' },
  ...formatArg,
  ...commonArgs,
} as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'status',
    description:
      'Show a reservation, and beside it whether dispatching is paused ("dispatch"). With --include-job, also the job from `orchesjob status --job-id` once a job id exists.\n\n' +
      'Usage: orchesjob-reserver status (--run-key KEY | --reservation-id ID) [--include-job] [--format json|table]\n' +
      'Exit codes: 0 ok, 1 general error (orchesjob failed), 2 invalid arguments, 4 not found.\n' +
      'Example: orchesjob-reserver status --run-key nightly-2026-05-04 --include-job',
  },
  args,
  run: runParsed((parsed) => status(parsed, localScope('status'))),
});

/** `status`, of a reservation visible in `scope`. */
export async function status({ flags }: ParsedArgv<typeof args>, scope: Scope): Promise<void> {
  const id = identity(flags);
  const format = outputFormat(flags);
  const [reservation, control] = await withLedger(flags, async (ledger) => [await resolveReservation(ledger, id, scope), await readControl(ledger.db)] as const);
  const job = flags['include-job'] && reservation.jobId !== null ? await jobStatus(orchesjobBin(flags), reservation.jobId) : undefined;
  const output = statusDocument(reservation, control, Date.now(), job);
  if (format === 'table') {
    writeStdout(reservationDetail(reservation, Math.floor(Date.now() / 1000), output['job'], control));
  } else {
    printJson(output);
  }
}

/**
 * The document `status` prints, and `wait` too, so that a script reads both alike: the reservation,
 * whether dispatching is paused at `nowMs`, and orchesjob's view of the job when there is one.
 */
export function statusDocument(reservation: Reservation, control: DispatchControl, nowMs: number, job?: unknown): Record<string, unknown> {
  const output: Record<string, unknown> = { reservation: reservationJson(reservation), dispatch: dispatchJson(control, nowMs) };
  if (job !== undefined) output['job'] = job;
  return output;
}

/** orchesjob's view of the job: its JSON as printed, or its raw output when it is not JSON. */
async function jobStatus(bin: string, jobId: string): Promise<unknown> {
  const status = await new OrchesjobClient(bin).jobStatus(jobId);
  if (status.kind === 'failed') throw new ReserverError('GENERAL', status.message);
  return jobJson(status);
}

/** An answer of `orchesjob status --job-id` as the document's `"job"`: its JSON, or its raw output when it is not JSON. */
export function jobJson(status: Exclude<JobStatus, { readonly kind: 'failed' }>): unknown {
  switch (status.kind) {
    case 'json':
      return status.value;
    case 'raw':
      return { raw_stdout: status.stdout, raw_stderr: status.stderr };
    default: {
      const unhandled: never = status;
      return unhandled;
    }
  }
}
