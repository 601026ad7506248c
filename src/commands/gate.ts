import { resolve } from 'node:path';
import { defineCommand } from 'citty';
import type { FlagsDef, FlagValues, ParsedArgv } from '../cli/argv.js';
import { parseArgv } from '../cli/argv.js';
import type { CommonFlags } from '../cli/args.js';
import { runParsed } from '../cli/help.js';
import { dbPath, orchesjobBin, withLedger } from '../cli/paths.js';
import type { Scope } from '../cli/scope.js';
import { inScope } from '../cli/scope.js';
import { invalidArgument, ReserverError } from '../errors.js';
import type { KeyPolicy } from '../gate/policy.js';
import { keyPolicy, loadPolicy, PolicyError, reservationRefusal } from '../gate/policy.js';
import type { GateRequest, GateTarget } from '../gate/request.js';
import { checkOverrides, notPermitted, orchesjobStatusLookup, readRequest } from '../gate/request.js';
import type { Refusal } from '../gate/syslog.js';
import { DEFAULT_SYSLOG_SOCKET, logRefusal } from '../gate/syslog.js';
import { splitWords } from '../gate/words.js';
import { OrchesjobClient } from '../orchesjob/client.js';
import { runKeysOfJob } from '../projections/reservations.js';
import * as cancel from './cancel.js';
import * as history from './history.js';
import * as list from './list.js';
import { passThrough } from './proxy.js';
import * as requeue from './requeue.js';
import * as reschedule from './reschedule.js';
import * as reserve from './reserve.js';
import * as result from './result.js';
import * as status from './status.js';
import * as wait from './wait.js';

export const command = defineCommand({
  meta: {
    name: 'gate',
    description:
      "The forced command of an SSH key (authorized_keys): run SSH_ORIGINAL_COMMAND only if the policy grants it to the key. The command line is split by POSIX shell quoting without a shell; anything a shell would expand or treat specially is refused, and so is an override (--db, --orchesjob-bin, ORCHESJOB_HOME=...) that changes anything. The verb runs inside this process; the only program it starts is the host's orchesjob. A refusal prints {\"error\": \"not permitted: ...\"}, writes nothing, and is logged to syslog (facility auth).\n\n" +
      'Usage: orchesjob-reserver gate --policy PATH --key NAME [--syslog-socket PATH]    (in authorized_keys: command="orchesjob-reserver gate --policy PATH --key NAME",restrict ssh-ed25519 ...)\n' +
      "Exit codes: the verb's; 3 not permitted; 2 invalid arguments of the gate itself.\n" +
      'Example: SSH_ORIGINAL_COMMAND="orchesjob-reserver list" orchesjob-reserver gate --policy /etc/orchesjob-reserver/policy.toml --key airflow-prod',
  },
  args: {
    policy: { type: 'string', valueHint: 'PATH', description: 'The policy (TOML) that says what each key may do. Required.' },
    key: { type: 'string', valueHint: 'NAME', description: 'Which [keys.NAME] table of the policy applies to this SSH key. Required.' },
    'syslog-socket': {
      type: 'string',
      valueHint: 'PATH',
      description: `The system log's datagram socket for the audit line of each refusal (set in authorized_keys, never from the environment). Default: ${DEFAULT_SYSLOG_SOCKET}`,
    },
  },
  run: runParsed(async ({ flags }) => {
    if (flags.policy === undefined || flags.policy === '') throw invalidArgument('the following arguments are required: --policy');
    if (flags.key === undefined || flags.key === '') throw invalidArgument('the following arguments are required: --key');
    const socket = flags['syslog-socket'];
    if (socket === '') throw invalidArgument('Invalid --syslog-socket: empty path.');
    const command = process.env['SSH_ORIGINAL_COMMAND'] ?? null;
    const refusal: Audit & { reason: string } = { key: flags.key, verb: null, runKey: null, reason: '', command };
    try {
      await gate(flags.policy, flags.key, process.env, refusal);
    } catch (error) {
      const refused = error instanceof PolicyError ? notPermitted(error.message) : error;
      if (refused instanceof ReserverError && refused.code === 'NOT_PERMITTED') {
        refusal.reason = refused.message.replace(/^not permitted: /, '');
        const failure = await logRefusal(refusal, socket ?? DEFAULT_SYSLOG_SOCKET);
        if (failure !== null) process.stderr.write(`orchesjob-reserver gate: ${failure}\n`);
      }
      throw refused;
    }
  }),
});

/** Read the policy and the command line, and run what they allow; `audit` collects what the refusal line names. */
async function gate(policyPath: string, keyName: string, env: NodeJS.ProcessEnv, audit: Audit): Promise<void> {
  const policy = loadPolicy(policyPath);
  const key = keyPolicy(policy, keyName);
  const line = env['SSH_ORIGINAL_COMMAND'];
  if (line === undefined) throw notPermitted('an interactive login (no SSH_ORIGINAL_COMMAND): this key runs commands only');
  const target: GateTarget = { db: resolve(policy.db ?? dbPath({}, env)), orchesjobBin: orchesjobBin({}, env) };
  const request = readRequest(splitWords(line), target);
  audit.verb = request.verb;
  if (!(key.verbs as ReadonlySet<string>).has(request.verb)) throw notPermitted(`the verb ${JSON.stringify(request.verb)} is not allowed for this key`);
  const scope: Scope = { actor: `gate:${keyName}`, runKeyPrefix: key.runKeyPrefix };
  if (request.verb === 'orchesjob status') return orchesjobStatus(request, target, scope, audit);
  const verb = VERBS[request.verb as keyof typeof VERBS];
  await verb(request.args, { target, scope, key, audit });
}

/** What the refusal line names, filled in as the command line is read. */
type Audit = { -readonly [K in keyof Refusal]: Refusal[K] };

interface Gated {
  readonly target: GateTarget;
  readonly scope: Scope;
  readonly key: KeyPolicy;
  readonly audit: Audit;
}

type Body<D extends FlagsDef> = (parsed: ParsedArgv<D>, scope: Scope) => Promise<void>;

/**
 * A verb run through the gate: its arguments parsed against its own flags (bad input is exit 2, as on
 * the host), the overrides checked, `check` applied, then its body with the gate's database, runner
 * and scope.
 */
function gated<D extends FlagsDef>(
  args: D,
  body: Body<D>,
  options: { takesCommand?: boolean; check?: (parsed: ParsedArgv<D>, key: KeyPolicy) => void } = {},
): (words: readonly string[], gated: Gated) => Promise<void> {
  return async (words, { target, scope, key, audit }) => {
    const parsed = parseArgv(words, args, { takesCommand: options.takesCommand ?? false });
    const common = parsed.flags as unknown as Partial<CommonFlags> & { readonly 'run-key'?: string };
    audit.runKey = common['run-key'] ?? null;
    if (parsed.help) throw notPermitted('--help is not available through the gate (see the host\'s documentation)');
    checkOverrides(common, target);
    options.check?.(parsed, key);
    const flags = { ...parsed.flags, db: target.db, 'orchesjob-bin': target.orchesjobBin } as FlagValues<D>;
    await body({ ...parsed, flags }, scope);
  };
}

const VERBS = {
  reserve: gated(reserve.args, reserve.reserve, {
    takesCommand: true,
    check: ({ flags, command }, key) => {
      const refusal = reservationRefusal(key, {
        runKey: flags['run-key'] ?? '',
        command: command ?? [],
        orchesjobStartOptions: flags['orchesjob-start-option'],
        metadata: reserve.parseMetadata(flags['metadata-json']),
      });
      if (refusal !== null) throw notPermitted(refusal);
    },
  }),
  status: gated(status.args, status.status),
  result: gated(result.args, result.result),
  cancel: gated(cancel.args, cancel.cancel),
  list: gated(list.args, list.list),
  history: gated(history.args, history.history),
  reschedule: gated(reschedule.args, reschedule.reschedule),
  requeue: gated(requeue.args, requeue.requeue),
  wait: gated(wait.args, wait.wait),
} as const;

/**
 * The provider's sensor, `orchesjob status --run-key K | --job-id ID`: a run key in the key's prefix,
 * or the job of one of its reservations, asked of the host's orchesjob (no shell), its output and exit
 * code passed through.
 */
async function orchesjobStatus(request: GateRequest, target: GateTarget, scope: Scope, audit: Audit): Promise<void> {
  const lookup = orchesjobStatusLookup(request.args);
  if ('runKey' in lookup) {
    audit.runKey = lookup.runKey;
    if (!inScope(scope, lookup.runKey)) throw notPermitted(`run key ${JSON.stringify(lookup.runKey)} is outside this key's prefix`);
  } else {
    const runKeys = await withLedger({ db: target.db }, (ledger) => runKeysOfJob(ledger.db, lookup.jobId));
    audit.runKey = runKeys[0] ?? null;
    if (!runKeys.some((k) => inScope(scope, k))) throw notPermitted(`job ${JSON.stringify(lookup.jobId)} is not the job of one of this key's reservations`);
  }
  passThrough(await new OrchesjobClient(target.orchesjobBin).status(lookup));
}
