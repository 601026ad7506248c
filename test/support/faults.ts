/**
 * Helpers for the fault-injection suite (`test/e2e/faults-*.e2e.test.ts`), over test/support/harness.ts
 * (whose `spawnDispatcher` starts a dispatcher that can be killed at any moment): a seeded PRNG, a wrapper
 * orchesjob that can stall `status`, and the "exactly once" audit that every scenario ends with.
 *
 * Seeds: each scenario has a fixed default seed (CI is reproducible); `FAULT_SEED=<n>` replaces it.
 * The seed is printed as `[faults] seed <n> ...` so a failure can be replayed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect } from 'vitest';
import type { DispatcherProcess, EventRow, Line, Sandbox } from './harness.js';
import { executions, invocations, ledgerEvents, sleep, standinAlive, STANDIN, withDb } from './harness.js';

// ---------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------

/** mulberry32: a small, fast 32-bit PRNG; the same seed gives the same sequence everywhere. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Rng {
  private readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = mulberry32(seed);
  }
  /** [0, 1) */
  float(): number {
    return this.next();
  }
  /** An integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
  /** A shuffled copy (Fisher-Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }
  /** Pick by weight: `[[weight, value], ...]`. */
  weighted<T>(choices: readonly (readonly [number, T])[]): T {
    const total = choices.reduce((sum, [w]) => sum + w, 0);
    let r = this.next() * total;
    for (const [w, value] of choices) {
      if (r < w) return value;
      r -= w;
    }
    const last = choices.at(-1);
    if (last === undefined) throw new Error('weighted pick from an empty list');
    return last[1];
  }
}

/** The scenario's seed: `FAULT_SEED` when set, else `fallback`; printed for replay. */
export function faultSeed(scenario: string, fallback: number): number {
  const raw = process.env['FAULT_SEED'];
  let seed = fallback;
  if (raw !== undefined && raw.trim() !== '') {
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`FAULT_SEED must be a non-negative integer, got ${JSON.stringify(raw)}`);
    seed = n >>> 0;
  }
  console.log('[faults] seed', seed, `(${scenario}; replay with FAULT_SEED=${seed})`);
  return seed;
}

// ---------------------------------------------------------------------------
// Dispatchers
// ---------------------------------------------------------------------------

/** The first line after index `from` matching `predicate`, or null on timeout or exit (never throws). */
export async function nextLine(
  d: DispatcherProcess,
  predicate: (line: Line) => boolean,
  timeoutMs: number,
  from = 0,
): Promise<Line | null> {
  try {
    return await d.waitForLine((l) => predicate(l) && d.lines.indexOf(l) >= from, timeoutMs);
  } catch {
    return null;
  }
}

/** The dispatcher id it printed in `reserver_started`, or null when it died before. */
export function dispatcherId(d: DispatcherProcess): string | null {
  const started = d.lines.find((l) => l.event === 'reserver_started');
  return typeof started?.dispatcher_id === 'string' ? started.dispatcher_id : null;
}

/** `dispatcher_error` lines that mean a live claim was settled by someone else (never acceptable). */
export function severeErrors(d: DispatcherProcess): string[] {
  return d.stderr.split('\n').filter((l) => /outcome not recorded|left DISPATCHING while its start ran/.test(l));
}

/** `dispatcher_error` lines on its stderr (for the report). */
export function dispatcherErrors(d: DispatcherProcess): string[] {
  return d.stderr.split('\n').filter((l) => l.includes('dispatcher_error'));
}

// ---------------------------------------------------------------------------
// The stand-in's processes
// ---------------------------------------------------------------------------

/** `start` invocations whose process is still running (e.g. orphaned by a killed dispatcher). */
export function runningStartPids(sb: Sandbox): { pid: number; runKey: string }[] {
  return invocations(sb)
    .filter((i) => i.argv[0] === 'start' && standinAlive(i.pid))
    .map((i) => ({ pid: i.pid, runKey: i.argv[2] ?? '' }));
}

/** Wait until no stand-in process recorded in the sandbox is running; returns those still alive. */
export async function waitStandinsGone(sb: Sandbox, timeoutMs: number, extraPids: readonly number[] = []): Promise<number[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const alive = [...invocations(sb).map((i) => i.pid), ...extraPids].filter(standinAlive);
    if (alive.length === 0 || Date.now() > until) return alive;
    await sleep(50);
  }
}

/**
 * An orchesjob wrapper named like the stand-in (so recovery's /proc match still sees its starts) that,
 * for `status`, first sleeps as many milliseconds as the file `<dir>/status-delay-ms` says, writing
 * `{"pid", "argv", "ts_ms"}` to `<dir>/status-delays.jsonl` before it sleeps; then runs the stand-in in
 * the same process.
 */
export interface SlowStatusBin {
  readonly bin: string;
  setDelay(ms: number): void;
  /** The delayed `status` calls so far. */
  delayed(): { pid: number; argv: string[]; ts_ms: number }[];
}

export function slowStatusBin(sb: Sandbox): SlowStatusBin {
  const dir = path.join(sb.dir, 'slow-status');
  fs.mkdirSync(dir, { recursive: true });
  const bin = path.join(dir, 'orchesjob-standin.mjs');
  const delayFile = path.join(dir, 'status-delay-ms');
  const log = path.join(dir, 'status-delays.jsonl');
  fs.writeFileSync(
    bin,
    [
      '#!/usr/bin/env node',
      "import fs from 'node:fs';",
      `const delayFile = ${JSON.stringify(delayFile)};`,
      `const log = ${JSON.stringify(log)};`,
      "if (process.argv[2] === 'status') {",
      '  let ms = 0;',
      "  try { ms = Number(fs.readFileSync(delayFile, 'utf8')) || 0; } catch {}",
      '  if (ms > 0) {',
      "    fs.appendFileSync(log, JSON.stringify({ pid: process.pid, argv: process.argv.slice(2), ts_ms: Date.now() }) + '\\n');",
      '    await new Promise((resolve) => setTimeout(resolve, ms));',
      '  }',
      '}',
      `await import(${JSON.stringify(pathToFileURL(STANDIN).href)});`,
      '',
    ].join('\n'),
  );
  fs.chmodSync(bin, 0o755);
  return {
    bin,
    setDelay: (ms) => fs.writeFileSync(delayFile, String(ms)),
    delayed: () =>
      fs.existsSync(log)
        ? fs
            .readFileSync(log, 'utf8')
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map((l) => JSON.parse(l) as { pid: number; argv: string[]; ts_ms: number })
        : [],
  };
}

// ---------------------------------------------------------------------------
// The projection, read-only
// ---------------------------------------------------------------------------

export interface ReservationRow {
  reservation_id: string;
  run_key: string;
  reservation_status: string;
  job_id: string | null;
  version: number;
  not_before: number | null;
  last_error: string | null;
  claim_dispatcher_id: string | null;
}

export function reservationRows(sb: Sandbox): ReservationRow[] {
  if (!fs.existsSync(sb.db)) return [];
  return withDb(
    sb.db,
    (db) =>
      db
        .prepare(
          'SELECT reservation_id, run_key, reservation_status, job_id, version, not_before, last_error, claim_dispatcher_id FROM reservations ORDER BY run_key',
        )
        .all() as ReservationRow[],
  );
}

const SETTLED = new Set(['DISPATCHED', 'DISPATCH_FAILED', 'CANCELLED', 'EXPIRED']);

/** Wait until every key has a reservation in a settled status; false on timeout. */
export async function waitSettled(sb: Sandbox, keys: readonly string[], timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const rows = new Map(reservationRows(sb).map((r) => [r.run_key, r]));
    if (keys.every((k) => SETTLED.has(rows.get(k)?.reservation_status ?? ''))) return true;
    if (Date.now() > until) return false;
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------
// The audit
// ---------------------------------------------------------------------------

/** One run key's ledger, one line per event, for failure messages and bug reports. */
export function formatLedger(events: readonly EventRow[]): string {
  return events
    .map((e) => `  #${e.position} v${e.version} ${e.type} at ${e.recorded_at_ms} by ${e.actor} ${e.data}`)
    .join('\n');
}

export interface SignalRecord {
  /** The dispatcher id (null when it died before printing `reserver_started`). */
  readonly dispatcherId: string | null;
  readonly pid: number;
  /** When the signal that ended it was sent (Date.now()). */
  readonly signalledAtMs: number;
}

export interface AuditOptions {
  /** Keys that must end DISPATCH_FAILED with no execution (all others: DISPATCHED with exactly one). */
  readonly failed?: ReadonlySet<string>;
  /**
   * Dispatchers that were killed or stopped, with when: a claim of one of them may only be released or
   * adopted by another dispatcher after it was signalled (no live claim is ever touched).
   */
  readonly signalled?: readonly SignalRecord[];
}

export interface AuditReport {
  readonly keys: number;
  readonly executions: number;
  readonly claims: number;
  readonly claimReleased: number;
  readonly recoveredDispatched: number;
  readonly dispatchFailed: number;
  readonly startInvocations: number;
  /** Keys claimed more than once (a claim released and taken again). */
  readonly reclaimedKeys: number;
}

/**
 * The end state every scenario must reach, checked from the stand-in's records and the ledger:
 * - every run key has exactly one execution (zero for `failed` keys), and its reservation is DISPATCHED
 *   with that job id (DISPATCH_FAILED with no job id for `failed` keys); nothing is DISPATCHING;
 * - the projection agrees with the ledger: versions 1..n in position order, the row's version is n;
 * - each stream reads Reserved (DispatchClaimed (ClaimReleased|DispatchAttemptFailed))* DispatchClaimed
 *   (Dispatched|DispatchFailed) (retries only when the reservation asked for them);
 * - nothing was claimed before its not_before;
 * - a claim was released or adopted by another dispatcher only after its owner was signalled.
 * Every violation is collected with the run key's ledger, then asserted at once.
 */
export function auditExactlyOnce(sb: Sandbox, keys: readonly string[], opts: AuditOptions = {}): AuditReport {
  const failed = opts.failed ?? new Set<string>();
  const rows = reservationRows(sb);
  const events = ledgerEvents(sb.db);
  const runs = executions(sb);
  const starts = invocations(sb).filter((i) => i.argv[0] === 'start');
  const signalledAt = new Map<string, number>();
  for (const s of opts.signalled ?? []) if (s.dispatcherId !== null) signalledAt.set(s.dispatcherId, s.signalledAtMs);
  const problems: string[] = [];
  const keySet = new Set(keys);

  for (const run of runs) {
    if (!keySet.has(run.run_key)) problems.push(`execution of an unknown run key ${run.run_key}: ${JSON.stringify(run)}`);
  }
  for (const row of rows) {
    if (!keySet.has(row.run_key)) problems.push(`reservation of an unknown run key ${row.run_key}`);
  }

  for (const key of keys) {
    const keyEvents = events.filter((e) => e.run_key === key);
    const ledger = `ledger of ${key}:\n${formatLedger(keyEvents)}`;
    const problem = (what: string) => problems.push(`${key}: ${what}\n${ledger}`);
    const keyRows = rows.filter((r) => r.run_key === key);
    const keyRuns = runs.filter((r) => r.run_key === key);
    const row = keyRows[0];
    if (keyRows.length !== 1 || row === undefined) {
      problem(`${keyRows.length} reservations`);
      continue;
    }
    const expectFailed = failed.has(key);
    if (row.reservation_status === 'DISPATCHING') problem(`left DISPATCHING (claimed by ${row.claim_dispatcher_id})`);
    if (expectFailed) {
      if (keyRuns.length !== 0) problem(`${keyRuns.length} executions, expected none: ${JSON.stringify(keyRuns)}`);
      if (row.reservation_status !== 'DISPATCH_FAILED' || row.job_id !== null) {
        problem(`status ${row.reservation_status} job_id ${row.job_id}, expected DISPATCH_FAILED without a job`);
      }
    } else {
      if (keyRuns.length !== 1) problem(`${keyRuns.length} executions (duplicate or missing): ${JSON.stringify(keyRuns)}`);
      if (row.reservation_status !== 'DISPATCHED') problem(`status ${row.reservation_status}, expected DISPATCHED`);
      if (keyRuns.length >= 1 && !keyRuns.some((r) => r.job_id === row.job_id)) {
        problem(`job_id ${row.job_id} is not a job orchesjob created for it: ${JSON.stringify(keyRuns)}`);
      } else if (keyRuns.length === 1 && row.job_id !== keyRuns[0]?.job_id) {
        problem(`job_id ${row.job_id} differs from the execution's ${keyRuns[0]?.job_id}`);
      }
    }

    // The stream of this reservation.
    const stream = keyEvents.filter((e) => e.reservation_id === row.reservation_id);
    if (stream.length !== keyEvents.length) problem('events of another reservation share the run key');
    stream.forEach((e, i) => {
      if (e.version !== i + 1) problem(`version ${e.version} at index ${i} (expected 1..n in position order)`);
    });
    if (row.version !== stream.length) problem(`projection version ${row.version}, ledger has ${stream.length} events`);
    const types = stream.map((e) => e.type).join(' ');
    if (!/^Reserved( DispatchClaimed (ClaimReleased|DispatchAttemptFailed))* DispatchClaimed (Dispatched|DispatchFailed)$/.test(types)) {
      problem(`unexpected event sequence: ${types}`);
    }
    const last = stream.at(-1);
    if (last?.type === 'Dispatched' && (JSON.parse(last.data) as { job_id?: string }).job_id !== row.job_id) {
      problem(`last Dispatched names ${last.data}, projection has ${row.job_id}`);
    }

    // Claims: never before not_before; settled by another dispatcher only once their owner was signalled.
    let owner: string | null = null;
    for (const e of stream) {
      const data = JSON.parse(e.data) as Record<string, unknown>;
      if (e.type === 'DispatchClaimed') {
        owner = typeof data['dispatcher_id'] === 'string' ? data['dispatcher_id'] : null;
        if (row.not_before !== null && e.recorded_at < row.not_before) {
          problem(`claimed at ${e.recorded_at}, before its not_before ${row.not_before}`);
        }
        continue;
      }
      if (owner === null || e.actor === `dispatcher:${owner}`) continue;
      if (e.type === 'ClaimReleased' || e.type === 'Dispatched' || e.type === 'DispatchFailed') {
        const at = signalledAt.get(owner);
        if (at === undefined) problem(`${e.type} (#${e.position}) by ${e.actor} settled the claim of ${owner}, which was never signalled`);
        else if (e.recorded_at_ms < at) problem(`${e.type} (#${e.position}) by ${e.actor} at ${e.recorded_at_ms}, before its owner ${owner} was signalled at ${at}`);
      }
    }
  }

  expect(problems, problems.join('\n\n')).toEqual([]);

  const claims = events.filter((e) => e.type === 'DispatchClaimed');
  const claimsPerReservation = new Map<string, number>();
  for (const c of claims) claimsPerReservation.set(c.reservation_id, (claimsPerReservation.get(c.reservation_id) ?? 0) + 1);
  return {
    keys: keys.length,
    executions: runs.length,
    claims: claims.length,
    claimReleased: events.filter((e) => e.type === 'ClaimReleased').length,
    recoveredDispatched: events.filter(
      (e) => e.type === 'Dispatched' && (JSON.parse(e.data) as { recovered?: boolean }).recovered === true,
    ).length,
    dispatchFailed: events.filter((e) => e.type === 'DispatchFailed').length,
    startInvocations: starts.length,
    reclaimedKeys: [...claimsPerReservation.values()].filter((n) => n > 1).length,
  };
}

/** A run key's ledger (for a report printed next to a failure). */
export function ledgerOf(sb: Sandbox, runKey: string): string {
  return formatLedger(ledgerEvents(sb.db).filter((e) => e.run_key === runKey));
}
