import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { withLedger } from '../cli/paths.js';
import { localScope } from '../cli/scope.js';
import { invalidArgument } from '../errors.js';
import { RejectedControlError } from '../events/control.js';
import { executeControl } from '../ledger.js';
import { dispatchJson, printJson } from '../output.js';
import { parseTime } from '../time.js';

/** A reason is for a person reading `status` or the log: one line's worth. */
export const MAX_REASON_CHARS = 1000;

export const args = {
  reason: { type: 'string', valueHint: 'TEXT', description: `Why (kept in the ledger, shown by status and list; at most ${MAX_REASON_CHARS} characters)` },
  until: { type: 'string', valueHint: 'DATETIME', description: 'Resume by itself at this time (epoch seconds or ISO 8601). Default: until resume' },
  ...commonArgs,
} as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'pause',
    description:
      'Pause dispatching (event DispatchPaused on the control stream): from the moment this returns, no dispatcher on the file claims anything; starts in flight finish; expires_at still expires reservations. Idempotent: pausing again with the same reason and until writes nothing; with others, updates them (since stays).\n\n' +
      'Usage: orchesjob-reserver pause [--reason TEXT] [--until T]\n' +
      'Exit codes: 0 ok, 1 general error, 2 invalid arguments (also an --until that has passed).\n' +
      "Example: orchesjob-reserver pause --reason 'storage maintenance' --until 2026-05-04T06:00:00+09:00",
  },
  args,
  run: runParsed(pause),
});

async function pause({ flags }: ParsedArgv<typeof args>): Promise<void> {
  const reason = flags.reason ?? null;
  if (reason !== null && /[\u0000-\u001f\u007f]/.test(reason)) throw invalidArgument('Invalid --reason: contains a control character.');
  if (reason !== null && [...reason].length > MAX_REASON_CHARS) throw invalidArgument(`Invalid --reason: longer than ${MAX_REASON_CHARS} characters.`);
  const until = flags.until === undefined ? null : parseTime(flags.until, 'until');
  const { actor } = localScope('pause');
  const done = await withLedger(flags, async (ledger) => {
    try {
      return await executeControl(ledger.db, { type: 'Pause', reason, until }, { actor });
    } catch (error) {
      if (error instanceof RejectedControlError) throw invalidArgument(`Invalid --until: ${error.message}.`);
      throw error;
    }
  });
  printJson(dispatchJson(done.control, Date.now()));
}
