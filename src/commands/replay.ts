import { defineCommand } from 'citty';
import { immediate } from '../db/transaction.js';
import { ownerLiveness } from '../dispatcher/owner.js';
import { invalidArgument, ReserverError } from '../errors.js';
import { findClaimed } from '../projections/reservations.js';
import { foldLedger, liveReservations, rebuildProjection, verifyProjection } from '../projections/replay.js';
import { printJson, reservationJson } from '../output.js';
import { parseTime } from '../time.js';
import { commonArgs, parseOrHelp, str, withLedger } from './shared.js';

/** `replay --verify` found the projection and the ledger disagreeing. */
export const EXIT_MISMATCH = 7;

export const command = defineCommand({
  meta: {
    name: 'replay',
    description:
      'Fold the ledger. With --position or --as-of: the reservations as they were then. With --verify: compare the reservations table with the fold of the whole ledger. With --rebuild: replace the reservations table with that fold (refused while a live dispatcher holds claims).\n\n' +
      'Usage: orchesjob-reserver replay (--position N | --as-of DATETIME | --verify | --rebuild)\n' +
      'Exit codes: 0 ok (verified), 1 general error (rebuild refused), 2 invalid arguments, 7 --verify found mismatches.\n' +
      'Example: orchesjob-reserver replay --as-of 2026-05-04T03:00:00+09:00',
  },
  args: {
    position: { type: 'string', valueHint: 'N', description: 'State after the event at this ledger position' },
    'as-of': { type: 'string', valueHint: 'DATETIME', description: 'State after the events recorded at or before this time' },
    verify: { type: 'boolean', description: 'Compare the reservations table with the fold of the ledger' },
    rebuild: { type: 'boolean', description: 'Rebuild the reservations table from the ledger, in one transaction' },
    ...commonArgs,
  },
  async run(ctx) {
    const parsed = await parseOrHelp(ctx);
    if (parsed === null) return;
    const { flags } = parsed;
    const positionFlag = str(flags, 'position');
    const asOfFlag = str(flags, 'as-of');
    const modes = [positionFlag !== undefined, asOfFlag !== undefined, flags['verify'] === true, flags['rebuild'] === true];
    if (modes.filter(Boolean).length !== 1) {
      throw invalidArgument('Specify exactly one of --position, --as-of, --verify or --rebuild.');
    }
    const position = positionFlag === undefined ? undefined : parsePosition(positionFlag);
    const second = asOfFlag === undefined ? undefined : parseTime(asOfFlag, 'as_of');

    await withLedger(flags, async (ledger) => {
      if (flags['verify'] === true) {
        const result = await verifyProjection(ledger);
        printJson(result);
        if (!result.verified) process.exitCode = EXIT_MISMATCH;
        return;
      }
      if (flags['rebuild'] === true) {
        const result = await immediate(ledger.db, async (tx) => {
          const live = (await findClaimed(tx)).filter((r) => r.claim !== null && ownerLiveness(r.claim, null) !== 'gone');
          if (live.length > 0) {
            throw new ReserverError(
              'GENERAL',
              `refusing to rebuild: ${live.length} reservation(s) are claimed by a dispatcher that is still running ` +
                `(${live.map((r) => `${r.runKey} by pid ${r.claim?.pid}`).join(', ')}); stop it first`,
            );
          }
          return rebuildProjection(tx, ledger.raw);
        });
        printJson({ rebuilt: true, ...result });
        return;
      }
      const folded = await foldLedger(ledger, { position, second });
      printJson({ as_of_position: folded.position, reservations: liveReservations(folded).map(reservationJson) });
    });
  },
});

function parsePosition(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) {
    throw invalidArgument(`Invalid --position: ${JSON.stringify(value)} (a ledger position, 0 or more).`);
  }
  return n;
}
