import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import { runParsed } from '../cli/help.js';
import { identity, identityArgs } from '../cli/identity.js';
import { withLedger } from '../cli/paths.js';
import { ReserverError } from '../errors.js';
import { readReservationHistory, readRunKeyHistory } from '../events/queries.js';
import { eventJson, printJson } from '../output.js';

export const command = defineCommand({
  meta: {
    name: 'history',
    description:
      'Show every ledger event of a reservation, or of every reservation that ever held a run key (across clean and re-reserve), in ledger order: {"events": [...]}. Each event has position, event_id, reservation_id, run_key, version, type, data, recorded_at, recorded_at_iso, recorded_at_ms and actor.\n\n' +
      'Usage: orchesjob-reserver history (--run-key KEY | --reservation-id ID)\n' +
      'Exit codes: 0 ok, 1 general error, 2 invalid arguments, 4 not found (no event for that run key or reservation ID).\n' +
      'Example: orchesjob-reserver history --run-key nightly-2026-05-04',
  },
  args: {
    ...identityArgs,
    ...commonArgs,
  },
  run: runParsed(async ({ flags }) => {
    const id = identity(flags);
    const events = await withLedger(flags, (ledger) =>
      'runKey' in id ? readRunKeyHistory(ledger.db, id.runKey) : readReservationHistory(ledger.db, id.reservationId),
    );
    if (events.length === 0) {
      throw new ReserverError('NOT_FOUND', 'Reservation not found.');
    }
    printJson({ events: events.map(eventJson) });
  }),
});
