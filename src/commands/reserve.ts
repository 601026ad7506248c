import { defineCommand } from 'citty';
import { commonArgs } from '../cli/args.js';
import type { FlagsDef, ParsedArgv } from '../cli/argv.js';
import { runParsed } from '../cli/help.js';
import { validRunKey } from '../cli/identity.js';
import type { IntegerRange } from '../cli/integer.js';
import { integerFlag } from '../cli/integer.js';
import { withLedger } from '../cli/paths.js';
import type { Scope } from '../cli/scope.js';
import { localScope } from '../cli/scope.js';
import { invalidArgument } from '../errors.js';
import { execute } from '../ledger.js';
import { printJson, reservationJson } from '../output.js';
import { parseTime } from '../time.js';

/** Metadata is a JSON object of at most 64 KiB (UTF-8). */
export const MAX_METADATA_BYTES = 64 * 1024;
/** Seconds between attempts when `--max-attempts` is given without `--retry-delay`. */
export const DEFAULT_RETRY_DELAY = 60;
/** Bounds that keep a typo from scheduling years of retries. */
const MAX_ATTEMPTS_LIMIT = 100;
const MAX_RETRY_DELAY = 7 * 24 * 3600;

/** `reserve`'s flags (the gate parses a gated command line against them too). */
export const args = {
  'run-key': { type: 'string', valueHint: 'KEY', description: 'Idempotency key for the reservation. Required.' },
  'not-before': {
    type: 'string',
    valueHint: 'DATETIME',
    description: 'Do not dispatch before this time (epoch seconds or ISO 8601; no offset = host local time)',
  },
  'expires-at': {
    type: 'string',
    valueHint: 'DATETIME',
    description: 'Expire the reservation if it has not been dispatched by this time',
  },
  'metadata-json': { type: 'string', valueHint: 'JSON', description: 'JSON object stored with the reservation (<= 64 KiB)' },
  'max-attempts': {
    type: 'string',
    valueHint: 'N',
    description: `Starts to try before DISPATCH_FAILED; a failed start with attempts left is tried again after --retry-delay (expires_at still wins). Default: 1`,
  },
  'retry-delay': {
    type: 'string',
    valueHint: 'SECONDS',
    description: `Whole seconds between a failed start and the next attempt. Default: ${DEFAULT_RETRY_DELAY}`,
  },
  ...commonArgs,
} as const satisfies FlagsDef;

export const command = defineCommand({
  meta: {
    name: 'reserve',
    description:
      'Store a reservation and return at once; `run` dispatches it. Idempotent by run key: a repeated call returns the stored reservation unchanged ("created": false). The JSON is printed once the reservation is on disk (a power cut after it does not lose it).\n\n' +
      'Usage: orchesjob-reserver reserve --run-key KEY [OPTIONS] [--] COMMAND [ARGS...]\n' +
      'Exit codes: 0 ok, 1 general error, 2 invalid arguments.\n' +
      'Example: orchesjob-reserver reserve --run-key nightly-2026-05-04 --not-before 2026-05-04T02:00:00+09:00 -- /usr/local/bin/backup.sh',
  },
  args,
  run: runParsed({ takesCommand: true }, (parsed) => reserve(parsed, localScope('reserve'))),
});

/** `reserve`, for `scope`: its actor is stored on the `Reserved` event. */
export async function reserve({ flags, command: target }: ParsedArgv<typeof args>, scope: Scope): Promise<void> {
  const runKeyFlag = flags['run-key'];
  if (runKeyFlag === undefined) throw invalidArgument('the following arguments are required: --run-key');
  const runKey = validRunKey(runKeyFlag);
  const command = target ?? [];
  if (command.length === 0) throw invalidArgument('reserve requires command after --');
  const startOptions = flags['orchesjob-start-option'];
  for (const arg of [...command, ...startOptions]) {
    if (arg.includes('\0')) throw invalidArgument('Invalid command: an argument contains a NUL byte.');
  }
  if (command[0] === '') throw invalidArgument('Invalid command: the program name is empty.');
  const notBeforeFlag = flags['not-before'];
  const expiresAtFlag = flags['expires-at'];
  const notBefore = notBeforeFlag === undefined ? null : parseTime(notBeforeFlag, 'not_before');
  const expiresAt = expiresAtFlag === undefined ? null : parseTime(expiresAtFlag, 'expires_at');
  const metadata = parseMetadata(flags['metadata-json']);
  const maxAttempts = integerFlag(flags, 'max-attempts', wholeNumber(1, MAX_ATTEMPTS_LIMIT)) ?? 1;
  const retryDelay = integerFlag(flags, 'retry-delay', wholeNumber(0, MAX_RETRY_DELAY)) ?? DEFAULT_RETRY_DELAY;

  await withLedger(flags, async (ledger) => {
    const result = await execute(
      ledger.db,
      null,
      { type: 'Reserve', runKey, command, orchesjobStartOptions: startOptions, metadata, notBefore, expiresAt, maxAttempts, retryDelay },
      { actor: scope.actor },
    );
    printJson({ created: result.events.length > 0, reservation: reservationJson(result.reservation) });
  });
}

function wholeNumber(min: number, max: number): IntegerRange {
  return { min, max, expected: `a whole number from ${min} to ${max}` };
}

/** `--metadata-json` parsed and checked (exit 2 when it is not a JSON object within the tool's limit); the gate checks its size with it too. */
export function parseMetadata(text: string | undefined): Record<string, unknown> | null {
  if (text === undefined) return null;
  if (Buffer.byteLength(text, 'utf8') > MAX_METADATA_BYTES) {
    throw invalidArgument(`Invalid metadata_json: larger than ${MAX_METADATA_BYTES} bytes.`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalidArgument('Invalid metadata_json: must be valid JSON object.');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgument('Invalid metadata_json: must be a JSON object.');
  }
  if (text.includes('\0') || JSON.stringify(value).includes('\\u0000')) {
    throw invalidArgument('Invalid metadata_json: contains a NUL character.');
  }
  return value as Record<string, unknown>;
}
