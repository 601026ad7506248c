import type { LedgerMetrics } from './ledger.js';

/**
 * The metrics in Prometheus's text exposition format (version 0.0.4), what node_exporter's textfile
 * collector reads and `promtool check metrics` lints. Written here in a few lines rather than with
 * prom-client: that library is built for counters kept in the process, and loading it cost 18-33 ms
 * here (against 60 ms for all of `node -e ''`), in `run`'s start-up and in every `metrics`; these
 * values are read from the ledger, and the format is a few lines per series.
 */

/** Every series name starts with this. */
export const PREFIX = 'orchesjob_reserver_';

/**
 * Upper bounds (seconds) of the dispatch lateness histogram: Prometheus's defaults for latencies
 * (5 ms to 10 s: a reservation fires within tens of milliseconds of its time), then minutes to an hour
 * for the starts a dispatcher catches up on after it was down or paused.
 */
export const LATENESS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600] as const;

/** A Prometheus histogram kept in the process: cumulative counts per upper bound, a sum and a count. */
export class Histogram {
  /** Observations at or below each bound of `bounds`, not cumulative (made cumulative when written). */
  private readonly perBucket: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.perBucket = bounds.map(() => 0);
  }

  observe(value: number): void {
    const i = this.bounds.findIndex((bound) => value <= bound);
    if (i !== -1) this.perBucket[i] = (this.perBucket[i] as number) + 1;
    this.sum += value;
    this.count++;
  }

  /** `[le, cumulative count]` for every bound, then `+Inf`. */
  cumulative(): [string, number][] {
    let running = 0;
    const out = this.bounds.map((bound, i): [string, number] => [formatNumber(bound), (running += this.perBucket[i] as number)]);
    out.push(['+Inf', this.count]);
    return out;
  }
}

/** What only a running dispatcher knows (`run --metrics-file`); `metrics` has none of it. */
export interface DispatcherMetrics {
  /** Start call minus the time the reservation became due, for each start this process made. */
  readonly lateness: Histogram;
  /** When the loop last completed a pass (epoch ms). */
  readonly lastTickMs: number;
}

/** The whole exposition: the ledger's series, the dispatcher's when given, and the build. Ends with a newline. */
export function renderMetrics(ledger: LedgerMetrics, dispatcher: DispatcherMetrics | null, version: string): string {
  const out: string[] = [];
  family(out, 'reservations', 'gauge', 'Reservations in the projection, by status.');
  for (const [status, n] of ledger.reservations) sample(out, 'reservations', { status }, n);
  family(out, 'due_reservations', 'gauge', 'RESERVED reservations that are due now (not_before, or a retry, passed) and not claimed.');
  sample(out, 'due_reservations', {}, ledger.due);
  family(out, 'oldest_due_age_seconds', 'gauge', 'How long the oldest due reservation has waited since it became due; 0 when none.');
  sample(out, 'oldest_due_age_seconds', {}, ledger.oldestDueAgeSeconds);
  family(out, 'events_total', 'counter', 'Ledger events by type, counted from the ledger (never reset).');
  for (const [type, n] of ledger.events) sample(out, 'events_total', { type }, n);
  family(out, 'ledger_position', 'gauge', "The ledger's last position.");
  sample(out, 'ledger_position', {}, ledger.position);
  family(out, 'dispatch_paused', 'gauge', '1 while dispatching is paused, else 0.');
  sample(out, 'dispatch_paused', {}, ledger.paused ? 1 : 0);
  if (dispatcher !== null) {
    const name = 'dispatch_lateness_seconds';
    family(out, name, 'histogram', "Start call minus the reservation's due time (not_before, else created_at; a retry's retry_at), for this process's starts.");
    for (const [le, n] of dispatcher.lateness.cumulative()) sample(out, `${name}_bucket`, { le }, n);
    sample(out, `${name}_sum`, {}, dispatcher.lateness.sum);
    sample(out, `${name}_count`, {}, dispatcher.lateness.count);
    family(out, 'last_tick_timestamp_seconds', 'gauge', 'When the dispatcher last completed a pass of its loop (epoch seconds).');
    sample(out, 'last_tick_timestamp_seconds', {}, dispatcher.lastTickMs / 1000);
  }
  family(out, 'build_info', 'gauge', 'The version of orchesjob-reserver, as a label; always 1.');
  sample(out, 'build_info', { version }, 1);
  return `${out.join('\n')}\n`;
}

function family(out: string[], name: string, type: 'gauge' | 'counter' | 'histogram', help: string): void {
  out.push(`# HELP ${PREFIX}${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${PREFIX}${name} ${type}`);
}

function sample(out: string[], name: string, labels: Readonly<Record<string, string>>, value: number): void {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  out.push(`${PREFIX}${name}${pairs.length === 0 ? '' : `{${pairs.join(',')}}`} ${formatNumber(value)}`);
}

/** A label value as the format escapes it: backslash, double quote and newline. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** A sample value: integers as such, other numbers in the shortest form that reads back the same; `+Inf`, `-Inf`, `NaN`. */
export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Number.POSITIVE_INFINITY) return '+Inf';
  if (n === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(n);
}
