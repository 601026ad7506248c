import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { withLedger } from '../cli/paths.js';
import { localScope } from '../cli/scope.js';
import { executeControl } from '../ledger.js';
import { printJson } from '../output.js';

export const args = { ...commonArgs } as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'resume',
    description:
      'Resume dispatching after pause (event DispatchResumed): the dispatchers claim what is due at once. Idempotent: while not paused it writes nothing.\n\n' +
      'Usage: orchesjob-reserver resume\n' +
      'Exit codes: 0 ok, 1 general error, 2 invalid arguments.\n' +
      'Example: orchesjob-reserver resume',
  },
  args,
  run: runParsed(resume),
});

async function resume({ flags }: ParsedArgv<typeof args>): Promise<void> {
  const { actor } = localScope('resume');
  await withLedger(flags, (ledger) => executeControl(ledger.db, { type: 'Resume' }, { actor }));
  printJson({ paused: false });
}
