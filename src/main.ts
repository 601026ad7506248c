import type { CommandDef, ParsedArgs } from 'citty';
import type { SubCommandName } from './commands/index.js';
import { isSubCommand, SUBCOMMAND_DESCRIPTIONS, SUBCOMMAND_NAMES } from './commands/index.js';
import { EXIT_CODES, messageOf, ReserverError } from './errors.js';
import { errorLine, writeStdout } from './output.js';

declare const __VERSION__: string;

/** How the entry point hands over a subcommand: `dist/cli.js` loads its bundle. */
export type CommandLoader = (name: SubCommandName) => CommandDef | Promise<CommandDef>;

/**
 * The program: dispatch `argv` (without node and the script) to a subcommand, and turn every
 * failure into the contract's shape: nothing more on stdout, `{"error": "..."}` as the last stderr
 * line, the exit code of its kind (as `process.exitCode`).
 */
export function main(argv: string[], load: CommandLoader): Promise<void> {
  const verbose = argv.slice(0, argv.includes('--') ? argv.indexOf('--') : argv.length).includes('--verbose');
  return cli(argv, load).then(
    (code) => {
      process.exitCode = code;
    },
    async (error: unknown) => {
      process.exitCode = await report(error, verbose);
    },
  );
}

async function cli(argv: string[], load: CommandLoader): Promise<number> {
  const first = argv[0];
  if (first === '--version' || first === '-V') {
    writeStdout(`orchesjob-reserver ${__VERSION__}\n`);
    return 0;
  }
  if (first === undefined || first === '--help' || first === '-h') {
    if (first === undefined) {
      process.stderr.write(usage()); // a failure prints nothing on stdout
      throw new ReserverError('INVALID_ARGUMENT', 'a command is required');
    }
    writeStdout(usage());
    return 0;
  }
  if (!isSubCommand(first)) {
    throw new ReserverError(
      'INVALID_ARGUMENT',
      `invalid choice: ${JSON.stringify(first)} (choose from ${SUBCOMMAND_NAMES.join(', ')})`,
    );
  }
  // The command parses its own arguments (src/cli/argv.ts, strictly); citty's runCommand would first
  // parse them loosely with node:util, which costs milliseconds of start-up and decides nothing.
  const command = await load(first);
  await command.run?.({ rawArgs: argv.slice(1), args: { _: [] } as unknown as ParsedArgs, cmd: command, data: undefined });
  return typeof process.exitCode === 'number' ? process.exitCode : EXIT_CODES.OK.status;
}

function usage(): string {
  const names = SUBCOMMAND_NAMES;
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
    `Exit codes: ${exitCodes()}.`,
    '',
  ].join('\n');
}

/** The statuses the contract documents, as the usage lists them: `0 ok, 1 general error, ...`. */
function exitCodes(): string {
  return Object.values(EXIT_CODES)
    .flatMap(({ status, meaning }) => (meaning === null ? [] : [`${status} ${meaning}`]))
    .join(', ');
}

async function report(error: unknown, verbose: boolean): Promise<number> {
  if (error instanceof ReserverError) {
    process.stderr.write(`${errorLine(error.message)}\n`);
    return EXIT_CODES[error.code].status;
  }
  if (verbose && error instanceof Error && error.stack) {
    // consola costs tens of milliseconds to load: only for this diagnostic.
    const { consola } = await import('consola');
    consola.error(error.stack);
  }
  process.stderr.write(`${errorLine(messageOf(error))}\n`);
  return EXIT_CODES.GENERAL.status;
}
