import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { identity, identityArgs } from '../cli/identity.js';
import { newTimesArgs, newTimesOf, retime } from '../cli/retime.js';
import type { Scope } from '../cli/scope.js';
import { localScope } from '../cli/scope.js';
import { invalidArgument } from '../errors.js';
import { printJson, reservationJson } from '../output.js';

export const args = { ...identityArgs, ...newTimesArgs, ...commonArgs } as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'reschedule',
    description:
      'Give a RESERVED reservation new times (event Rescheduled, with the old and the new values). A running dispatcher goes by the new times at once. A new not_before replaces a pending retry\'s time.\n\n' +
      'Usage: orchesjob-reserver reschedule (--run-key KEY | --reservation-id ID) [--not-before T] [--expires-at T | --no-expiry]\n' +
      'Exit codes: 0 ok, 1 general error, 2 invalid arguments (also an expires_at before not_before), 4 not found, 6 not RESERVED (EXPIRED and DISPATCH_FAILED: see requeue).\n' +
      'Example: orchesjob-reserver reschedule --run-key nightly-2026-05-04 --not-before 2026-05-04T03:00:00+09:00',
  },
  args,
  run: runParsed((parsed) => reschedule(parsed, localScope('reschedule'))),
});

export async function reschedule({ flags }: ParsedArgv<typeof args>, scope: Scope): Promise<void> {
  const id = identity(flags);
  const times = newTimesOf(flags);
  if (Object.keys(times).length === 0) throw invalidArgument('Nothing to reschedule: give --not-before, --expires-at or --no-expiry.');
  const reservation = await retime(flags, id, { type: 'Reschedule', ...times }, scope);
  printJson({ rescheduled: true, reservation: reservationJson(reservation) });
}
