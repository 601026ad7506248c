import { defineCommand } from 'citty';
import type { FlagsDef, FlagValues } from '../cli/argv.js';
import { commonArgs } from '../cli/args.js';
import { runParsed } from '../cli/help.js';
import { validRunKey } from '../cli/identity.js';
import { withLedger } from '../cli/paths.js';
import { invalidArgument } from '../errors.js';
import { write } from '../ledger.js';
import { printJson, reservationJson } from '../output.js';
import type { CleanSelection } from '../projections/reservations.js';
import { findCleanable } from '../projections/reservations.js';
import { parseTime } from '../time.js';

/** How `clean` selects reservations (the Python tool's selection rules, `parseSelection`). */
const selectionArgs = {
  before: { type: 'string', valueHint: 'DATETIME', description: 'Delete terminal reservations updated before this time' },
  after: { type: 'string', valueHint: 'DATETIME', description: 'Delete terminal reservations updated at or after this time' },
  all: { type: 'boolean', description: 'Delete all matching terminal reservations' },
  'job-id': { type: 'string', valueHint: 'ID', description: 'Delete one terminal reservation by job ID' },
  'reservation-id': { type: 'string', valueHint: 'ID', description: 'Delete one terminal reservation by reservation ID' },
  'run-key': { type: 'string', valueHint: 'KEY', description: 'Restrict deletion to a run key; combine with --before, --after or --all' },
} as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'clean',
    description:
      'Remove terminal reservations (DISPATCHED, CANCELLED, EXPIRED, DISPATCH_FAILED) from the reservations table and free their run keys. RESERVED and DISPATCHING are never removed. The ledger keeps their history (a Cleaned event each).\n\n' +
      'Usage: orchesjob-reserver clean (--before DATETIME | --after DATETIME | --all | --job-id ID | --reservation-id ID) [--run-key KEY] [--dry-run]\n' +
      '--before and --after may be combined as a range; --run-key combines with --all, --before, --after; --job-id and --reservation-id stand alone.\n' +
      'Exit codes: 0 ok, 1 general error, 2 invalid arguments.\n' +
      'Example: orchesjob-reserver clean --before 2026-06-01 --dry-run',
  },
  args: {
    ...selectionArgs,
    'dry-run': { type: 'boolean', description: 'Print what would be deleted without making changes' },
    ...commonArgs,
  },
  run: runParsed(async ({ flags }) => {
    const selection = parseSelection(flags);
    const dryRun = flags['dry-run'];
    await withLedger(flags, async (ledger) => {
      if (dryRun) {
        const matched = await findCleanable(ledger.db, selection);
        printJson({ deleted: 0, dry_run: true, matched: matched.length, reservations: matched.map(reservationJson) });
        return;
      }
      const matched = await write(ledger.db, { actor: 'cli:clean' }, async (w) => {
        const found = await findCleanable(w.tx, selection);
        for (const state of found) await w.execute({ state }, { type: 'Clean' });
        return found;
      });
      printJson({
        deleted: matched.length,
        dry_run: false,
        matched: matched.length,
        reservations: matched.map(reservationJson),
      });
    });
  }),
});

/** The Python tool's selection rules, with its messages. */
function parseSelection(flags: FlagValues<typeof selectionArgs>): CleanSelection {
  const { 'job-id': jobId, 'reservation-id': reservationId, 'run-key': runKeyFlag, before: beforeFlag, after: afterFlag, all } = flags;
  const ranged = beforeFlag !== undefined || afterFlag !== undefined || all || runKeyFlag !== undefined;
  if (jobId !== undefined && reservationId !== undefined) {
    throw invalidArgument('--job-id and --reservation-id cannot be combined.');
  }
  if (jobId !== undefined) {
    if (ranged) throw invalidArgument('--job-id cannot be combined with --all, --before, --after, or --run-key.');
    if (jobId === '') throw invalidArgument('Invalid --job-id: empty value.');
    return { by: 'job_id', jobId };
  }
  if (reservationId !== undefined) {
    if (ranged) throw invalidArgument('--reservation-id cannot be combined with --all, --before, --after, or --run-key.');
    if (reservationId === '') throw invalidArgument('Invalid --reservation-id: empty value.');
    return { by: 'reservation_id', reservationId };
  }
  if (!all && beforeFlag === undefined && afterFlag === undefined) {
    throw invalidArgument('Specify --all, --job-id, --reservation-id, --before, or --after.');
  }
  return {
    by: 'range',
    runKey: runKeyFlag === undefined ? null : validRunKey(runKeyFlag),
    before: beforeFlag === undefined ? null : parseTime(beforeFlag, 'before'),
    after: afterFlag === undefined ? null : parseTime(afterFlag, 'after'),
  };
}
