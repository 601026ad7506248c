import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import { runParsed } from '../cli/help.js';
import { integerFlag } from '../cli/integer.js';
import { withLedger } from '../cli/paths.js';
import type { Tx } from '../db/transaction.js';
import { immediate } from '../db/transaction.js';
import { ownerLiveness, recordedClaim } from '../dispatcher/owner.js';
import { EXIT_CODES, invalidArgument, ReserverError } from '../errors.js';
import { findClaimed } from '../projections/reservations.js';
import { foldLedger, liveReservations, rebuildProjection, verifyProjection } from '../projections/replay.js';
import { printJson, reservationJson } from '../output.js';
import { parseTime } from '../time.js';

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
  run: runParsed(async ({ flags }) => {
    const asOfFlag = flags['as-of'];
    const modes = [flags.position !== undefined, asOfFlag !== undefined, flags.verify, flags.rebuild];
    if (modes.filter(Boolean).length !== 1) {
      throw invalidArgument('Specify exactly one of --position, --as-of, --verify or --rebuild.');
    }
    const position = integerFlag(flags, 'position', { min: 0, expected: 'a ledger position, 0 or more' });
    const second = asOfFlag === undefined ? undefined : parseTime(asOfFlag, 'as_of');

    await withLedger(flags, async (ledger) => {
      if (flags.verify) {
        const result = await verifyProjection(ledger);
        printJson(result);
        if (!result.verified) process.exitCode = EXIT_CODES.VERIFY_MISMATCH.status;
        return;
      }
      if (flags.rebuild) {
        const result = await immediate(ledger.db, async (tx) => {
          const live = await claimsOfLiveOwners(tx);
          if (live.length > 0) {
            throw new ReserverError(
              'GENERAL',
              `refusing to rebuild: ${live.length} reservation(s) are claimed by a dispatcher that is still running ` +
                `(${live.map((c) => `${c.runKey} by pid ${c.pid}`).join(', ')}); stop it first`,
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
  }),
});

/**
 * The claims whose owner may still be running, judged as recovery judges them (`ownerLiveness` on the
 * claim event, its recorded process start included): a rebuild is refused exactly while recovery would
 * leave a claim to its owner.
 */
async function claimsOfLiveOwners(tx: Tx): Promise<{ runKey: string; pid: number }[]> {
  const live: { runKey: string; pid: number }[] = [];
  for (const reservation of await findClaimed(tx)) {
    const claim = await recordedClaim(tx, reservation.reservationId);
    if (claim !== null && ownerLiveness(claim) !== 'gone') live.push({ runKey: reservation.runKey, pid: claim.pid });
  }
  return live;
}
