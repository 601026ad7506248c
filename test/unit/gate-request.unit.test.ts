import { describe, expect, it } from 'vitest';
import { ReserverError } from '../../src/errors.js';
import { readRequest } from '../../src/gate/request.js';
import { splitWords } from '../../src/gate/words.js';

const TARGET = { db: '/var/lib/orchesjob/reserver.sqlite3', orchesjobBin: 'orchesjob' };

function refusal(line: string): string {
  try {
    readRequest(splitWords(line), TARGET);
  } catch (error) {
    if (error instanceof ReserverError && error.code === 'NOT_PERMITTED') return error.message;
    throw error;
  }
  throw new Error(`accepted: ${JSON.stringify(line)}`);
}

describe('readRequest', () => {
  it('reads the verb after the program; orchesjob only for "orchesjob status"', () => {
    expect(readRequest(splitWords('/usr/bin/orchesjob-reserver list --limit 1'), TARGET)).toEqual({ verb: 'list', args: ['--limit', '1'] });
    expect(readRequest(splitWords('orchesjob status --run-key k'), TARGET)).toEqual({ verb: 'orchesjob status', args: ['--run-key', 'k'] });
  });

  it.each([
    ["orchesjob-reserver 'orchesjob status' --run-key prod/a", 'the verb "orchesjob status" contains a blank'],
    ["orchesjob-reserver 'list\t' --run-key prod/a", 'contains a blank'],
    ['orchesjob start --run-key k -- /bin/sh', 'only "orchesjob status" goes through the gate'],
    ['sh -c id', 'the program must be orchesjob-reserver'],
  ])('refuses %j', (line, reason) => {
    expect(refusal(line)).toContain(reason);
  });
});
