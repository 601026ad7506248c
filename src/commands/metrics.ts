import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import type { FlagsDef } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { withLedger } from '../cli/paths.js';
import { renderMetrics } from '../metrics/exposition.js';
import { readLedgerMetrics } from '../metrics/ledger.js';
import { writeStdout } from '../output.js';

declare const __VERSION__: string;

export const args = { ...commonArgs } as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'metrics',
    description:
      "Print the ledger's Prometheus metrics once, in Prometheus's text format (not JSON): reservations per status, due reservations and how long the oldest has waited, ledger events per type, the last position, whether dispatching is paused, the build. The same series `run --metrics-file` writes, without the two only a running dispatcher has (its dispatch lateness and its last pass): for a host where run does not write them (`orchesjob-reserver metrics > /var/lib/prometheus/node-exporter/orchesjob_reserver.prom.tmp && mv ...` from a timer), or for a person. Reads a few rows whatever the ledger's size.\n\n" +
      'Usage: orchesjob-reserver metrics [--db PATH]\n' +
      'Exit codes: 0 ok, 1 general error, 2 invalid arguments.\n' +
      'Example: orchesjob-reserver metrics | grep oldest_due_age',
  },
  args,
  run: runParsed(async ({ flags }) => {
    const ledger = await withLedger(flags, (l) => readLedgerMetrics(l.db, Date.now()));
    writeStdout(renderMetrics(ledger, null, __VERSION__));
  }),
});
