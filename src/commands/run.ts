import { defineCommand } from 'citty';
import type { StringFlagName } from '../cli/argv.js';
import { commonArgs } from '../cli/args.js';
import { runParsed } from '../cli/help.js';
import { integerFlag, POSITIVE_INTEGER } from '../cli/integer.js';
import { dbPath, orchesjobBin } from '../cli/paths.js';
import { onStopSignals } from '../cli/signals.js';
import type { Ledger } from '../db/open.js';
import { openLedger, refuseWorldWritable } from '../db/open.js';
import type { Waker } from '../db/waker.js';
import { committedElsewhere, LedgerWaker } from '../db/waker.js';
import { EXIT_CODES, invalidArgument, ReserverError } from '../errors.js';
import { loadPolicy, PolicyError } from '../gate/policy.js';
import { Dispatcher } from '../dispatcher/dispatcher.js';
import { formatLine, lifecycleLine } from '../dispatcher/log.js';
import { Monitor, wakeForWatchdog } from '../metrics/monitor.js';
import { SystemdNotifier } from '../systemd/notify.js';

declare const __VERSION__: string;

export const command = defineCommand({
  meta: {
    name: 'run',
    description:
      'Run the foreground dispatcher: expire due reservations, start ready ones with `orchesjob start --run-key K <global options> <reservation options> -- CMD`, and print one JSON line per ledger event on stdout (dispatcher_error lines on stderr), each once its event is on disk; a start is forked once its claim is. SIGTERM/SIGINT: finish the starts in flight, print reserver_stopped, exit 0; a second signal exits at once. With --policy, a reservation made through the gate is started only if the policy of its key still allows it when due. With --metrics-file, Prometheus metrics are written there for the textfile collector of node_exporter. Under systemd (NOTIFY_SOCKET set, Type=notify) it sends READY=1 once recovered, WATCHDOG=1 from its loop, STATUS= and STOPPING=1.\n\n' +
      'Usage: orchesjob-reserver run [--poll-interval SECONDS] [--error-sleep SECONDS] [--start-timeout SECONDS] [--max-concurrent-starts N] [--orchesjob-start-option OPTION]... [--policy PATH] [--metrics-file PATH] [--db PATH] [--orchesjob-bin PATH]\n' +
      'Exit codes: 0 stopped by a signal, 1 general error (database unusable or world-writable at start, --policy unreadable or invalid at start, or replaced by another file while running), 2 invalid arguments. A database moved away or deleted while running pauses dispatching (dispatcher_error) until it is back.\n' +
      'Example: orchesjob-reserver run --db /var/lib/orchesjob/reserver.sqlite3',
  },
  args: {
    'poll-interval': {
      type: 'string',
      valueHint: 'SECONDS',
      description: 'Longest sleep when there is no work (reservations fire on time whatever it is). Default: 2.0',
    },
    'error-sleep': { type: 'string', valueHint: 'SECONDS', description: 'Sleep after an unexpected dispatcher error. Default: 5.0' },
    'start-timeout': {
      type: 'string',
      valueHint: 'SECONDS',
      description: 'A start that has not returned by then fails and its process group is killed. Default: 60',
    },
    'max-concurrent-starts': {
      type: 'string',
      valueHint: 'N',
      description: 'Starts of different reservations that may run at once. Default: 4',
    },
    policy: {
      type: 'string',
      valueHint: 'PATH',
      description:
        "The gate's policy (gate --policy): each reservation made through the gate is checked against its key's policy when due; one no longer allowed is refused (DispatchRefused: DISPATCH_FAILED, last_error \"refused by policy: ...\", never started); while the file cannot be read or is invalid, they stay RESERVED (a dispatcher_error says why) until it can. Default: none (no check)",
    },
    'metrics-file': {
      type: 'string',
      valueHint: 'PATH',
      description:
        "Write Prometheus metrics (text format) to this file, atomically (a temporary file in the same folder, then a rename), after the loop's turns: at least every poll interval, at most once a second. For node_exporter's textfile collector, a *.prom file in its --collector.textfile.directory (Debian: /var/lib/prometheus/node-exporter). A file that cannot be written is reported (dispatcher_error) and dispatching goes on. Default: none",
    },
    ...commonArgs,
  },
  run: runParsed(async ({ flags }) => {
    const pollIntervalMs = seconds(flags, 'poll-interval', 2.0);
    const errorSleepMs = seconds(flags, 'error-sleep', 5.0);
    const startTimeoutMs = seconds(flags, 'start-timeout', 60);
    const maxConcurrentStarts = integerFlag(flags, 'max-concurrent-starts', POSITIVE_INTEGER) ?? 4;
    const bin = orchesjobBin(flags);
    const path = dbPath(flags);
    refuseWorldWritable(path);
    const policyPath = flags.policy;
    if (policyPath === '') throw invalidArgument('Invalid --policy: empty path.');
    if (policyPath !== undefined) checkPolicy(policyPath);
    const metricsFile = flags['metrics-file'] ?? null;
    if (metricsFile === '') throw invalidArgument('Invalid --metrics-file: empty path.');
    const ledger = await openLedger(path);
    const { monitor, waker } = await monitoring(ledger, metricsFile);
    const dispatcher = new Dispatcher({
      ledger,
      dbLabel: path,
      orchesjobBin: bin,
      startOptions: flags['orchesjob-start-option'],
      pollIntervalMs,
      errorSleepMs,
      startTimeoutMs,
      maxConcurrentStarts,
      policyPath,
      observer: monitor ?? {},
      waker,
    });
    // A second signal leaves claims behind; the next dispatcher's recovery settles them.
    const removeSignalHandlers = onStopSignals(() => {
      monitor?.stopping();
      dispatcher.stop();
    }, 'orchesjob-reserver run');
    try {
      await dispatcher.run();
      if (dispatcher.replaced) process.exitCode = EXIT_CODES.GENERAL.status;
    } finally {
      removeSignalHandlers();
      await monitor?.close();
      await ledger.close();
    }
  }),
});

function seconds<F, K extends StringFlagName<F>>(flags: F, name: K, fallback: number): number {
  const value = flags[name] as string | undefined;
  if (value === undefined) return fallback * 1000;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw invalidArgument(`Invalid --${name}: ${JSON.stringify(value)} (a positive number of seconds).`);
  }
  return n * 1000;
}

/**
 * The loop's observer when there is something to observe for (`--metrics-file`, or systemd's
 * `NOTIFY_SOCKET`), else null; and its waker, whose sleeps a watchdog shortens.
 */
async function monitoring(ledger: Ledger, metricsFile: string | null): Promise<{ monitor: Monitor | null; waker: Waker }> {
  const reportError = (error: string) => process.stderr.write(`${formatLine(lifecycleLine('dispatcher_error', { error }, Date.now()))}\n`);
  const notifier = await SystemdNotifier.fromEnv(process.env, reportError);
  const waker = wakeForWatchdog(new LedgerWaker(ledger.path, committedElsewhere(ledger.raw)), notifier?.watchdogMs ?? null);
  if (metricsFile === null && notifier === null) return { monitor: null, waker };
  return { monitor: new Monitor({ db: ledger.db, clock: Date.now, metricsFile, notifier, version: __VERSION__, reportError }), waker };
}

/** A policy that cannot be read or is invalid at start is an error then (exit 1), not a refusal of every due reservation. */
function checkPolicy(path: string): void {
  try {
    loadPolicy(path);
  } catch (error) {
    if (error instanceof PolicyError) throw new ReserverError('GENERAL', error.message);
    throw error;
  }
}
