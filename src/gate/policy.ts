import { readFileSync, statSync } from 'node:fs';
import { parse } from 'smol-toml';
import { MAX_METADATA_BYTES } from '../commands/reserve.js';
import { messageOf } from '../errors.js';
import { stringifySorted } from '../json.js';

/**
 * The gate's policy (TOML, one table per SSH key): what a key may do through `gate`, and what
 * `run --policy` re-checks at dispatch time. Reading it (`loadPolicy`) is the only I/O here; what it
 * allows is decided by functions of plain values (`reservationRefusal`, `commandAllowed`), which the
 * gate and the dispatcher both call.
 */

/** The verbs a policy may grant. `orchesjob status` is the provider's sensor, run on the host's orchesjob. */
export const GATE_VERBS = ['reserve', 'status', 'result', 'cancel', 'list', 'history', 'reschedule', 'requeue', 'wait', 'orchesjob status'] as const;
export type GateVerb = (typeof GATE_VERBS)[number];

/** Verbs that exist but that no key may be granted: they run, remove or rewrite everyone's reservations, read them all (`metrics`: every reservation's counts), or hold the whole host's dispatching. */
const NEVER_GRANTED = ['run', 'clean', 'replay', 'events', 'gate', 'pause', 'resume', 'metrics'];

/** What one key may do. */
export interface KeyPolicy {
  readonly verbs: ReadonlySet<GateVerb>;
  /** Every run key this key names or sees starts with it ('' allows all). */
  readonly runKeyPrefix: string;
  /** argv[0] of a reservation: an exact absolute path, or a folder ending in `/` (any file directly in it). */
  readonly commands: readonly string[];
  /** The `--orchesjob-start-option` values a reservation may carry. */
  readonly startOptions: readonly string[];
  readonly maxMetadataBytes: number;
}

export interface Policy {
  readonly path: string;
  /** The database the gate uses; null: the usual default. */
  readonly db: string | null;
  readonly keys: ReadonlyMap<string, KeyPolicy>;
}

/** The policy file is missing, unreadable, world-writable or invalid: everything is refused. */
export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

/** Read and check the policy at `path`. Throws `PolicyError` saying what is wrong and where. */
export function loadPolicy(path: string): Policy {
  let text: string;
  try {
    if ((statSync(path).mode & 0o002) !== 0) {
      throw new PolicyError(`policy ${path} is world-writable (anyone could grant themselves anything): chmod o-w it`);
    }
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (error instanceof PolicyError) throw error;
    throw new PolicyError(`cannot read policy ${path}: ${messageOf(error)}`);
  }
  return parsePolicy(text, path);
}

/** The policy in `text` (read from `path`, which messages name). */
export function parsePolicy(text: string, path: string): Policy {
  let document: Record<string, unknown>;
  try {
    document = parse(text);
  } catch (error) {
    throw new PolicyError(`policy ${path} is not valid TOML: ${messageOf(error).trim()}`);
  }
  const fail = (where: string, what: string): never => {
    throw new PolicyError(`policy ${path}: ${where}: ${what}`);
  };
  unknownFields(document, ['db', 'keys'], '(top level)', fail);
  const db = document['db'];
  if (db !== undefined && (typeof db !== 'string' || !db.startsWith('/'))) fail('db', 'must be an absolute path (a string)');
  const keysTable = document['keys'];
  if (keysTable === undefined) fail('keys', 'no [keys.NAME] table: no key may do anything');
  if (!isTable(keysTable)) return fail('keys', 'must be a table of [keys.NAME] tables');
  const keys = new Map<string, KeyPolicy>();
  for (const [name, table] of Object.entries(keysTable)) {
    if (!isTable(table)) fail(`keys.${name}`, 'must be a table');
    keys.set(name, keyPolicyOf(table as Record<string, unknown>, `keys.${name}`, fail));
  }
  return { path, db: (db as string | undefined) ?? null, keys };
}

type Fail = (where: string, what: string) => never;

const KEY_FIELDS = ['verbs', 'run_key_prefix', 'commands', 'start_options', 'max_metadata_bytes'];

function keyPolicyOf(table: Record<string, unknown>, where: string, fail: Fail): KeyPolicy {
  unknownFields(table, KEY_FIELDS, where, fail);
  const verbs = strings(table['verbs'], `${where}.verbs`, fail);
  if (verbs === null) return fail(`${where}.verbs`, 'missing (the verbs this key may run)');
  verbs.forEach((verb, i) => {
    if (NEVER_GRANTED.includes(verb)) fail(`${where}.verbs[${i}]`, `${JSON.stringify(verb)} can never be granted through the gate`);
    if (!(GATE_VERBS as readonly string[]).includes(verb)) {
      fail(`${where}.verbs[${i}]`, `unknown verb ${JSON.stringify(verb)} (choose from ${GATE_VERBS.map((v) => JSON.stringify(v)).join(', ')})`);
    }
  });
  const prefix = table['run_key_prefix'] ?? '';
  if (typeof prefix !== 'string') fail(`${where}.run_key_prefix`, 'must be a string');
  const commands = strings(table['commands'], `${where}.commands`, fail) ?? [];
  commands.forEach((c, i) => {
    if (!c.startsWith('/') || c.includes('\0') || /(^|\/)\.\.?(\/|$)/.test(c) || c.includes('//')) {
      fail(`${where}.commands[${i}]`, `${JSON.stringify(c)} is not a normalized absolute path (a folder ends in /)`);
    }
  });
  const max = table['max_metadata_bytes'] ?? MAX_METADATA_BYTES;
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 0 || max > MAX_METADATA_BYTES) {
    fail(`${where}.max_metadata_bytes`, `must be a whole number from 0 to ${MAX_METADATA_BYTES}`);
  }
  return {
    verbs: new Set(verbs as GateVerb[]),
    runKeyPrefix: prefix as string,
    commands,
    startOptions: strings(table['start_options'], `${where}.start_options`, fail) ?? [],
    maxMetadataBytes: max as number,
  };
}

function isTable(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date);
}

function unknownFields(table: Record<string, unknown>, known: readonly string[], where: string, fail: Fail): void {
  for (const name of Object.keys(table)) {
    if (!known.includes(name)) fail(where, `unknown field ${JSON.stringify(name)} (known: ${known.join(', ')})`);
  }
}

function strings(value: unknown, where: string, fail: Fail): string[] | null {
  if (value === undefined) return null;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) return fail(where, 'must be an array of strings');
  return value as string[];
}

/** The key's policy, or a `PolicyError` when the policy has no table for it. */
export function keyPolicy(policy: Policy, key: string): KeyPolicy {
  const found = policy.keys.get(key);
  if (found === undefined) throw new PolicyError(`policy ${policy.path} has no [keys.${key}] table`);
  return found;
}

/**
 * Whether `argv0` may be reserved: equal to an exact path of `commands`, or a file directly in one of
 * its folders (`/opt/jobs/` allows `/opt/jobs/x.sh`, not `/opt/jobs/sub/x.sh` nor `/opt/jobs/..`).
 */
export function commandAllowed(commands: readonly string[], argv0: string): boolean {
  return commands.some((allowed) => {
    if (!allowed.endsWith('/')) return argv0 === allowed;
    const rest = argv0.startsWith(allowed) ? argv0.slice(allowed.length) : null;
    return rest !== null && rest !== '' && rest !== '.' && rest !== '..' && !rest.includes('/');
  });
}

/** What a reservation asks for, as the gate reads it from the command line and the dispatcher from the ledger. */
export interface ReservationAsk {
  readonly runKey: string;
  readonly command: readonly string[];
  readonly orchesjobStartOptions: readonly string[];
  /** The parsed metadata object, or null. */
  readonly metadata: Readonly<Record<string, unknown>> | null;
}

/**
 * The size the metadata limit measures: UTF-8 bytes of the canonical JSON the ledger and the
 * projection store (`stringifySorted`), 0 without metadata. The gate and the dispatcher measure the
 * same text, so a reservation the gate accepted is never refused at dispatch by an unchanged policy
 * (`1e20` is 4 bytes as typed, 21 as stored).
 */
export function metadataBytes(metadata: Readonly<Record<string, unknown>> | null): number {
  return metadata === null ? 0 : Buffer.byteLength(stringifySorted(metadata), 'utf8');
}

/** Why `key` may not make this reservation, or null when it may. */
export function reservationRefusal(key: KeyPolicy, ask: ReservationAsk): string | null {
  if (!key.verbs.has('reserve')) return 'this key may not reserve';
  if (!ask.runKey.startsWith(key.runKeyPrefix)) {
    return `run key ${JSON.stringify(ask.runKey)} is outside this key's prefix ${JSON.stringify(key.runKeyPrefix)}`;
  }
  const argv0 = ask.command[0] ?? '';
  if (!commandAllowed(key.commands, argv0)) return `command ${JSON.stringify(argv0)} is not allowed for this key`;
  const option = ask.orchesjobStartOptions.find((o) => !key.startOptions.includes(o));
  if (option !== undefined) return `start option ${JSON.stringify(option)} is not allowed for this key`;
  const bytes = metadataBytes(ask.metadata);
  if (bytes > key.maxMetadataBytes) return `metadata of ${bytes} bytes is over this key's limit of ${key.maxMetadataBytes}`;
  return null;
}
