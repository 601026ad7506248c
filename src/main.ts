import { runCommand } from 'citty';
import { EXIT_CODES, ReserverError } from './errors.js';
import type { SubCommandName } from './commands/index.js';
import { main, SUBCOMMAND_DESCRIPTIONS, subCommands } from './commands/index.js';
import { errorLine } from './output.js';

declare const __VERSION__: string;

/**
 * The entry point: dispatch to a subcommand, and turn every failure into the contract's shape:
 * nothing more on stdout, `{"error": "..."}` as the last stderr line, the exit code of its kind.
 */
async function cli(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first === '--version' || first === '-V') {
    process.stdout.write(`orchesjob-reserver ${__VERSION__}\n`);
    return 0;
  }
  if (first === undefined || first === '--help' || first === '-h') {
    if (first === undefined) {
      process.stderr.write(usage()); // a failure prints nothing on stdout
      throw new ReserverError('INVALID_ARGUMENT', 'a command is required');
    }
    process.stdout.write(usage());
    return 0;
  }
  if (!Object.hasOwn(subCommands, first)) {
    throw new ReserverError(
      'INVALID_ARGUMENT',
      `invalid choice: ${JSON.stringify(first)} (choose from ${Object.keys(subCommands).join(', ')})`,
    );
  }
  await runCommand(main, { rawArgs: argv });
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

function usage(): string {
  const names = Object.keys(SUBCOMMAND_DESCRIPTIONS) as SubCommandName[];
  const width = Math.max(...names.map((n) => n.length));
  return [
    `orchesjob-reserver ${__VERSION__}: reserve commands on an edge host; a dispatcher starts them through orchesjob.`,
    '',
    'Usage: orchesjob-reserver <command> [options]    (orchesjob-reserver <command> --help for its options)',
    '',
    'Commands:',
    ...names.map((n) => `  ${n.padEnd(width)}  ${SUBCOMMAND_DESCRIPTIONS[n]}`),
    '',
    'Output: one JSON document on stdout; on failure {"error": "..."} on stderr.',
    'Exit codes: 0 ok, 1 general error, 2 invalid arguments, 4 not found, 5 not dispatched, 6 cannot cancel, 7 replay --verify mismatch.',
    '',
  ].join('\n');
}

async function report(error: unknown, verbose: boolean): Promise<number> {
  if (error instanceof ReserverError) {
    process.stderr.write(`${errorLine(error.message)}\n`);
    return EXIT_CODES[error.code];
  }
  if (verbose && error instanceof Error && error.stack) {
    // consola costs tens of milliseconds to load: only for this diagnostic.
    const { consola } = await import('consola');
    consola.error(error.stack);
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`${errorLine(message)}\n`);
  return EXIT_CODES.GENERAL;
}

const argv = process.argv.slice(2);
const verbose = argv.slice(0, argv.includes('--') ? argv.indexOf('--') : argv.length).includes('--verbose');
cli(argv).then(
  (code) => {
    process.exitCode = code;
  },
  async (error: unknown) => {
    process.exitCode = await report(error, verbose);
  },
);
