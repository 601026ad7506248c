/**
 * The subcommands, by name. Each is bundled with the program (`src/main.ts`) into its own file,
 * `dist/commands/<name>.js`, and `dist/cli.js` loads only the one asked for (scripts/build.mjs): a
 * `reserve` over SSH does not pay for loading the dispatcher. Each module exports its `command`.
 */
export const SUBCOMMAND_NAMES = ['reserve', 'run', 'status', 'result', 'cancel', 'list', 'clean', 'history', 'events', 'replay', 'gate', 'reschedule', 'requeue', 'pause', 'resume', 'wait', 'metrics'] as const;

export type SubCommandName = (typeof SUBCOMMAND_NAMES)[number];

export function isSubCommand(name: string): name is SubCommandName {
  return (SUBCOMMAND_NAMES as readonly string[]).includes(name);
}

/** One line each, for the top-level usage. */
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
  gate: 'The forced command of an SSH key: run SSH_ORIGINAL_COMMAND if the policy grants it',
  reschedule: 'Give a RESERVED reservation new times',
  requeue: 'Put a DISPATCH_FAILED or EXPIRED reservation back in the queue',
  pause: 'Pause dispatching: no dispatcher on the file claims anything (expiry still applies)',
  resume: 'Resume dispatching after pause',
  wait: 'Block until a reservation is dispatched, or its job finished (--for finished)',
  metrics: "Print the ledger's Prometheus metrics (text format) once",
};
