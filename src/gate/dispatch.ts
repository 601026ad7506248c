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
 * only when a due reservation was made through the gate.
 */

/** Reads the policy file once, on first use; a file that cannot be read or is invalid is the reason for every refusal. */
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

/** The `gate:` actor's key name. */
const GATE_ACTOR = /^gate:(.*)$/s;

/** Why `r` may not be started now (`refused by policy: ...`), or null: it was not made through the gate, or its key still may. */
export async function dispatchRefusal(db: Kysely<Database>, reader: PolicyReader, r: Reservation): Promise<string | null> {
  const actor = await reservedBy(db, r.reservationId);
  const key = actor === null ? null : GATE_ACTOR.exec(actor)?.[1];
  if (key === undefined || key === null) return null;
  const policy = reader.policy();
  if (policy instanceof Error) return `refused by policy: ${policy.message}`;
  const keyPolicy = policy.keys.get(key);
  if (keyPolicy === undefined) return `refused by policy: policy ${policy.path} has no [keys.${key}] table`;
  const refusal = reservationRefusal(keyPolicy, {
    runKey: r.runKey,
    command: r.command,
    orchesjobStartOptions: r.orchesjobStartOptions,
    metadataBytes: r.metadata === null ? 0 : Buffer.byteLength(JSON.stringify(r.metadata), 'utf8'),
  });
  return refusal === null ? null : `refused by policy: ${refusal} (key ${key})`;
}
