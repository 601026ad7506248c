import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { ClaimOwner, DispatchClaimedData } from '../events/index.js';
import { readStream } from '../events/store.js';

/**
 * Whether the process that holds a claim still exists. A claim is released only when its owner is
 * gone; an owner on another host, or one this host cannot judge, is never touched.
 */
export type Liveness = 'alive' | 'gone' | 'unknown';

/** The process start identity of `pid` (Linux: `<boot id>:<start tick>`), or null when unknown. */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) counts from the end of the command name, which may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const startTick = fields[19];
    if (startTick === undefined) return null;
    return `${bootId()}:${startTick}`;
  } catch {
    return null;
  }
}

let cachedBootId: string | undefined;
function bootId(): string {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      cachedBootId = 'unknown-boot';
    }
  }
  return cachedBootId;
}

/** This dispatcher as a claim owner. */
export function selfOwner(dispatcherId: string): ClaimOwner & { process_start: string | null } {
  return { dispatcher_id: dispatcherId, host: hostname(), pid: process.pid, process_start: processStart(process.pid) };
}

/**
 * A claim's owner as its `DispatchClaimed` event recorded it: the process, and that process's start,
 * which tells the owner apart from a later process given the same pid.
 */
export type RecordedOwner = ClaimOwner & { readonly process_start?: string | null };

/** The claim behind a DISPATCHING reservation: its last `DispatchClaimed` event, and when it was recorded. */
export type RecordedClaim = DispatchClaimedData & { readonly claimedAtMs: number };

/** The claim a reservation's ledger stream last recorded, or null when it has none. */
export async function recordedClaim(db: Kysely<Database>, reservationId: string): Promise<RecordedClaim | null> {
  const claim = (await readStream(db, reservationId)).findLast((e) => e.type === 'DispatchClaimed');
  if (claim === undefined || claim.type !== 'DispatchClaimed') return null;
  return { ...claim.data, claimedAtMs: claim.recordedAtMs };
}

/**
 * Judge a claim's owner from this host, by what its claim recorded. The one rule for every caller:
 * recovery releases a claim only when its owner is `gone`, and `replay --rebuild` refuses while any
 * owner is not, so the two never disagree about a dispatcher still running.
 */
export function ownerLiveness(owner: RecordedOwner): Liveness {
  if (owner.host !== hostname()) return 'unknown';
  if (owner.pid <= 0) return 'gone'; // no process: a claim adopted from the Python tool (pid 0)
  if (owner.pid === process.pid) return 'alive';
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return 'gone';
    // EPERM: a process exists under another user; judge it by its start below.
  }
  if (owner.process_start) {
    const current = processStart(owner.pid);
    if (current !== null && current !== owner.process_start) return 'gone'; // the pid was reused
  }
  return 'alive';
}
