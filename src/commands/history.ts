import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { identity, identityArgs } from '../cli/identity.js';
import { withLedger } from '../cli/paths.js';
import type { Scope } from '../cli/scope.js';
import { inScope, localScope, notFound } from '../cli/scope.js';
import { readReservationHistory, readRunKeyHistory } from '../events/queries.js';
import { eventJson, printJson } from '../output.js';

export const args = { ...identityArgs, ...commonArgs } as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'history',
    description:
      'Show every ledger event of a reservation, or of every reservation that ever held a run key (across clean and re-reserve), in ledger order: {"events": [...]}. Each event has position, event_id, reservation_id, run_key, version, type, data, recorded_at, recorded_at_iso, recorded_at_ms and actor.\n\n' +
      'Usage: orchesjob-reserver history (--run-key KEY | --reservation-id ID)\n' +
      'Exit codes: 0 ok, 1 general error, 2 invalid arguments, 4 not found (no event for that run key or reservation ID).\n' +
      'Example: orchesjob-reserver history --run-key nightly-2026-05-04',
  },
  args,
  run: runParsed((parsed) => history(parsed, localScope('history'))),
});

/** `history` of a run key or reservation visible in `scope` (every event of one stream has its run key). */
export async function history({ flags }: ParsedArgv<typeof args>, scope: Scope): Promise<void> {
  const id = identity(flags);
  if ('runKey' in id && !inScope(scope, id.runKey)) throw notFound();
  const events = await withLedger(flags, (ledger) =>
    'runKey' in id ? readRunKeyHistory(ledger.db, id.runKey) : readReservationHistory(ledger.db, id.reservationId),
  );
  if (events.length === 0 || !events.every((e) => inScope(scope, e.runKey))) throw notFound();
  printJson({ events: events.map(eventJson) });
}
