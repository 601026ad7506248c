import type { CommandDef, SubCommandsDef } from 'citty';
import { defineCommand } from 'citty';

/**
 * Every subcommand, loaded on demand: `reserve` over SSH does not pay for loading the dispatcher.
 */
export const subCommands = {
  reserve: () => import('./reserve.js').then((m) => m.default as CommandDef),
  run: () => import('./run.js').then((m) => m.default as CommandDef),
  status: () => import('./status.js').then((m) => m.default as CommandDef),
  result: () => import('./result.js').then((m) => m.default as CommandDef),
  cancel: () => import('./cancel.js').then((m) => m.default as CommandDef),
  list: () => import('./list.js').then((m) => m.default as CommandDef),
  clean: () => import('./clean.js').then((m) => m.default as CommandDef),
  history: () => import('./history.js').then((m) => m.default as CommandDef),
  events: () => import('./events.js').then((m) => m.default as CommandDef),
  replay: () => import('./replay.js').then((m) => m.default as CommandDef),
} satisfies SubCommandsDef;

export type SubCommandName = keyof typeof subCommands;

export const SUBCOMMAND_DESCRIPTIONS: { readonly [N in SubCommandName]: string } = {
  reserve: 'Store a reservation (idempotent by run key) and return at once',
  run: 'Run the foreground dispatcher (under systemd or supervisor)',
  status: 'Show a reservation, optionally with its orchesjob job',
  result: "Print the job's result from orchesjob",
  cancel: 'Cancel a reservation, or its job once dispatched',
  list: 'List reservations',
  clean: 'Remove terminal reservations (their history stays in the ledger)',
  history: 'Every ledger event of a reservation or run key',
  events: 'Ledger events as JSON Lines (--follow to keep tailing)',
  replay: 'Reservations as of a position or time; verify or rebuild the projection',
};

export const main = defineCommand({
  meta: { name: 'orchesjob-reserver', description: 'Reserve commands on an edge host; dispatch them through orchesjob.' },
  subCommands,
});
