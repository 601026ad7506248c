import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { identity, identityArgs } from '../cli/identity.js';
import { newTimesArgs, newTimesOf, retime } from '../cli/retime.js';
import type { Scope } from '../cli/scope.js';
import { localScope } from '../cli/scope.js';
import { printJson, reservationJson } from '../output.js';

export const args = { ...identityArgs, ...newTimesArgs, ...commonArgs } as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'requeue',
    description:
      'Put a DISPATCH_FAILED or EXPIRED reservation back in the queue: RESERVED again under the same run key and reservation id (event Requeued), attempts counted from 0; the earlier errors stay in its history. `list --status DISPATCH_FAILED` is the dead-letter view, requeue its replay. An expires_at that has passed would expire it again at once: give a new --expires-at or --no-expiry.\n\n' +
      'Usage: orchesjob-reserver requeue (--run-key KEY | --reservation-id ID) [--not-before T] [--expires-at T | --no-expiry]\n' +
      'Exit codes: 0 ok, 1 general error, 2 invalid arguments (also an expires_at that has passed, or before not_before), 4 not found, 6 not DISPATCH_FAILED or EXPIRED.\n' +
      'Example: orchesjob-reserver requeue --run-key nightly-2026-05-04 --no-expiry',
  },
  args,
  run: runParsed((parsed) => requeue(parsed, localScope('requeue'))),
});

export async function requeue({ flags }: ParsedArgv<typeof args>, scope: Scope): Promise<void> {
  const reservation = await retime(flags, identity(flags), { type: 'Requeue', ...newTimesOf(flags) }, scope);
  printJson({ requeued: true, reservation: reservationJson(reservation) });
}
