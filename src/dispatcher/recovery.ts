import { readdirSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { DispatchClaimedData, Reservation } from '../events/index.js';
import type { StoredEvent } from '../events/store.js';
import { readStream } from '../events/store.js';
import { applyCommand, write } from '../ledger.js';
import { callOrchesjob } from '../orchesjob.js';
import { findClaimed, findById } from '../projections/reservations.js';
import { ownerLiveness } from './owner.js';

/**
 * Recovery: deciding claims whose `orchesjob start` did not tell us its job id, without ever starting a
 * job twice (DESIGN.md, "Crash recovery").
 *
 * A start may have created the job and still failed (killed after creating it, timed out, crashed
 * before printing), and a dispatcher killed with SIGKILL leaves its start running: the start is a
 * separate process in its own process group and outlives it. So before a claim is released (and the
 * reservation re-queued) or a failure recorded:
 * 1. no process may still be running that start (found by its argv in /proc); an orphaned start older
 *    than its owner's start timeout is killed, as its owner would have done;
 * 2. orchesjob is asked `status --run-key K --all`; a job started at or after the claim is the one
 *    the start created, and is adopted (`Dispatched`, `recovered: true`).
 * Only when orchesjob knows no such job is the claim released (`ClaimReleased`) or the failure kept.
 * When orchesjob cannot be asked, nothing is decided and the claim waits for the next attempt.
 */

/** What orchesjob says about jobs of a run key started since a claim. */
export type JobLookup =
  | { readonly kind: 'found'; readonly jobId: string }
  | { readonly kind: 'none' }
  | { readonly kind: 'unknown'; readonly error: string };

/**
 * Ask orchesjob for a job of `runKey` started at or after `sinceMs` (the claim). Handles both of its
 * formats: `started_at` as an ISO string (1.0) or epoch seconds with a `started_at_iso` twin (1.1).
 * Epoch seconds are whole, so a job started in the claim's own second counts as started after it.
 */
export async function findJobStartedSince(bin: string, runKey: string, sinceMs: number): Promise<JobLookup> {
  let outcome = await callOrchesjob(bin, ['status', '--run-key', runKey, '--all']);
  if (outcome.code === 2) outcome = await callOrchesjob(bin, ['status', '--run-key', runKey]); // no --all
  if (outcome.code === 3) return { kind: 'none' }; // run key not found: no job was ever started
  if (outcome.code !== 0) {
    return {
      kind: 'unknown',
      error: `orchesjob status --run-key ${runKey} failed with exit code ${outcome.code ?? outcome.signal}: ${outcome.stderr.trim()}`,
    };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(outcome.stdout);
  } catch {
    return { kind: 'unknown', error: `orchesjob status --run-key ${runKey} printed no JSON: ${outcome.stdout.slice(0, 200)}` };
  }
  const jobs = (Array.isArray(parsed) ? parsed : [parsed]) as Record<string, unknown>[];
  const sinceSecondMs = Math.floor(sinceMs / 1000) * 1000;
  let best: { jobId: string; startedMs: number } | null = null;
  for (const job of jobs) {
    if (job === null || typeof job !== 'object') continue;
    const jobId = job['job_id'];
    const startedMs = startedAtMs(job['started_at']);
    if (typeof jobId !== 'string' || jobId === '' || startedMs === null) continue;
    if (job['run_key'] !== undefined && job['run_key'] !== runKey) continue;
    if (startedMs < sinceSecondMs) continue;
    if (best === null || startedMs < best.startedMs) best = { jobId, startedMs };
  }
  return best === null ? { kind: 'none' } : { kind: 'found', jobId: best.jobId };
}

function startedAtMs(value: unknown): number | null {
  if (typeof value === 'number' && Number.isFinite(value)) return value * 1000;
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}

/**
 * Processes running the start `argv` (matched on /proc: the arguments after the program, with the
 * program's name before them, so that `#!/usr/bin/env python3` interpreters match too). Empty where
 * /proc is not available.
 */
export function runningStarts(argv: readonly string[]): number[] {
  const [bin, ...args] = argv;
  if (bin === undefined) return [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const pid of pids) {
    let cmdline: string[];
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // exited meanwhile
    }
    if (cmdline.at(-1) === '') cmdline.pop();
    const head = cmdline.length - args.length;
    if (head < 1) continue;
    if (!args.every((arg, i) => cmdline[head + i] === arg)) continue;
    if (!cmdline.slice(0, head).some((part) => basename(part) === basename(bin))) continue;
    found.push(Number(pid));
  }
  return found;
}

function killGroup(pid: number): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // not a group leader, or already gone
    }
  }
}

export interface RecoveryContext {
  readonly actor: string;
  readonly clock: () => number;
  readonly orchesjobBin: string;
  /** Used for claims written before claims recorded their owner's start timeout. */
  readonly defaultStartTimeoutMs: number;
  /** Claims of this dispatcher, never judged here. */
  readonly selfId: string;
}

export interface RecoveryResult {
  readonly events: StoredEvent[];
  /** Stale claims left for a later attempt (their start still runs, or orchesjob could not be asked). */
  readonly waiting: number;
  readonly errors: string[];
}

/** The claim event behind a DISPATCHING reservation. */
async function claimOf(db: Kysely<Database>, r: Reservation): Promise<(DispatchClaimedData & { claimedAtMs: number }) | null> {
  const claim = (await readStream(db, r.reservationId)).findLast((e) => e.type === 'DispatchClaimed');
  if (claim === undefined || claim.type !== 'DispatchClaimed') return null;
  return { ...claim.data, claimedAtMs: claim.recordedAtMs };
}

/**
 * Settle the claims whose owner is gone: adopt the job their start created, or release them.
 * Claims of live owners, or of owners on another host, are never touched.
 */
export async function recoverStaleClaims(db: Kysely<Database>, ctx: RecoveryContext): Promise<RecoveryResult> {
  const events: StoredEvent[] = [];
  const errors: string[] = [];
  let waiting = 0;
  for (const claimed of await findClaimed(db)) {
    if (claimed.claim === null || claimed.claim.dispatcher_id === ctx.selfId) continue;
    const claim = await claimOf(db, claimed);
    if (claim === null) continue;
    if (ownerLiveness(claimed.claim, claim.process_start) !== 'gone') continue;
    const running = runningStarts(claim.argv);
    if (running.length > 0) {
      const timeoutMs = claim.start_timeout_ms ?? ctx.defaultStartTimeoutMs;
      if (ctx.clock() - claim.claimedAtMs < timeoutMs) {
        waiting++;
        continue;
      }
      for (const pid of running) killGroup(pid); // what its owner would have done at the timeout
    }
    const lookup = await findJobStartedSince(ctx.orchesjobBin, claimed.runKey, claim.claimedAtMs);
    if (lookup.kind === 'unknown') {
      waiting++;
      errors.push(`claim of ${claimed.runKey} not recovered yet: ${lookup.error}`);
      continue;
    }
    const settled = await write(db, async (tx) => {
      const current = await findById(tx, claimed.reservationId);
      // Re-check under the lock: the claim may have been settled meanwhile.
      if (current === null || current.status !== 'DISPATCHING' || current.version !== claimed.version) return [];
      const nowMs = ctx.clock();
      const owner = `${claimed.claim?.dispatcher_id} (pid ${claimed.claim?.pid})`;
      const applied = await applyCommand(
        tx,
        current,
        lookup.kind === 'found'
          ? { type: 'RecordDispatch', jobId: lookup.jobId, recovered: true }
          : { type: 'ReleaseClaim', reason: `owner ${owner} is gone and orchesjob has no job for the claim` },
        { nowMs, actor: ctx.actor },
      );
      return applied.events;
    });
    events.push(...settled);
  }
  return { events, waiting, errors };
}
