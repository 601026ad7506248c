import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { messageOf } from '../errors.js';
import type { Reservation } from '../events/index.js';
import { reservedBy } from '../events/queries.js';
import type { Policy } from './policy.js';
import { loadPolicy, reservationRefusal } from './policy.js';

/**
 * `run --policy`: a reservation made through the gate is checked again when it is due, against its
 * key's policy as the file says then. The policy is read at most once per pass (`PolicyReader`), and
 * only when a due reservation was made through the gate. Only a valid policy that says no refuses: one
 * that cannot be read or is invalid now holds the gated reservations (they stay RESERVED, expiry still
 * applies) until a later pass reads it.
 */

/** Reads the policy file once, on first use; remembers why it could not. */
export class PolicyReader {
  private loaded: Policy | Error | undefined;

  constructor(readonly path: string) {}

  policy(): Policy | Error {
    if (this.loaded === undefined) {
      try {
        this.loaded = loadPolicy(this.path);
      } catch (error) {
        this.loaded = error instanceof Error ? error : new Error(messageOf(error));
      }
    }
    return this.loaded;
  }
}

/** What to do with a due reservation under `run --policy`. */
export type DispatchVerdict =
  | { readonly kind: 'start' }
  /** Its key may no longer make it: `reason` is `refused by policy: ...`. */
  | { readonly kind: 'refuse'; readonly reason: string }
  /** The policy cannot be read or is invalid now: leave it RESERVED and say why. */
  | { readonly kind: 'hold'; readonly why: string };

/** The `gate:` actor's key name. */
const GATE_ACTOR = /^gate:(.*)$/s;

/** The verdict on `r`: `start` when it was not made through the gate, or its key still may make it. */
export async function dispatchVerdict(db: Kysely<Database>, reader: PolicyReader, r: Reservation): Promise<DispatchVerdict> {
  const actor = await reservedBy(db, r.reservationId);
  const key = actor === null ? null : GATE_ACTOR.exec(actor)?.[1];
  if (key === undefined || key === null) return { kind: 'start' };
  const policy = reader.policy();
  if (policy instanceof Error) return { kind: 'hold', why: `gated reservations held (left RESERVED) until the policy can be read: ${policy.message}` };
  const keyPolicy = policy.keys.get(key);
  if (keyPolicy === undefined) return { kind: 'refuse', reason: `refused by policy: policy ${policy.path} has no [keys.${key}] table` };
  const refusal = reservationRefusal(keyPolicy, {
    runKey: r.runKey,
    command: r.command,
    orchesjobStartOptions: r.orchesjobStartOptions,
    metadata: r.metadata,
  });
  return refusal === null ? { kind: 'start' } : { kind: 'refuse', reason: `refused by policy: ${refusal} (key ${key})` };
}
