import { defineCommand } from 'citty';
import { commonArgs, formatArg, outputFormat } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { integerFlag, POSITIVE_INTEGER } from '../cli/integer.js';
import { withLedger } from '../cli/paths.js';
import type { Scope } from '../cli/scope.js';
import { localScope } from '../cli/scope.js';
import { invalidArgument } from '../errors.js';
import type { ReservationStatus } from '../events/index.js';
import { RESERVATION_STATUSES } from '../events/index.js';
import { dispatchJson, printJson, reservationJson, writeStdout } from '../output.js';
import { readControl } from '../projections/control.js';
import { listReservations } from '../projections/reservations.js';
import { reservationsTable } from '../table.js';

export const args = {
  status: { type: 'string', valueHint: 'STATUS', description: `Restrict to one status: ${RESERVATION_STATUSES.join(', ')}` },
  limit: { type: 'string', valueHint: 'N', description: 'Maximum number of records to return. Default: 50' },
  ...formatArg,
  ...commonArgs,
} as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'list',
    description:
      'List reservations, newest created_at first, and whether dispatching is paused ("dispatch").\n\n' +
      'Usage: orchesjob-reserver list [--status STATUS] [--limit N] [--format json|table]\n' +
      'Exit codes: 0 ok, 1 general error, 2 invalid arguments.\n' +
      'Example: orchesjob-reserver list --status DISPATCH_FAILED --limit 10',
  },
  args,
  run: runParsed((parsed) => list(parsed, localScope('list'))),
});

/** `list`: the reservations visible in `scope`. */
export async function list({ flags }: ParsedArgv<typeof args>, scope: Scope): Promise<void> {
  const status = parseStatus(flags.status);
  const limit = integerFlag(flags, 'limit', POSITIVE_INTEGER) ?? 50;
  const format = outputFormat(flags);
  const filter = { status, limit, runKeyPrefix: scope.runKeyPrefix };
  const [reservations, control] = await withLedger(flags, async (ledger) => [await listReservations(ledger.db, filter), await readControl(ledger.db)] as const);
  if (format === 'table') writeStdout(reservationsTable(reservations, Math.floor(Date.now() / 1000), control));
  else printJson({ reservations: reservations.map(reservationJson), dispatch: dispatchJson(control, Date.now()) });
}

function parseStatus(value: string | undefined): ReservationStatus | null {
  if (value === undefined) return null;
  if (!(RESERVATION_STATUSES as readonly string[]).includes(value)) {
    throw invalidArgument(`Invalid --status: ${JSON.stringify(value)} (choose from ${RESERVATION_STATUSES.join(', ')}).`);
  }
  return value as ReservationStatus;
}
