import type { OrchesjobOutcome } from '../orchesjob/client.js';
import { writeStdout } from '../output.js';

/**
 * Pass orchesjob's answer through unchanged (`result`, `cancel` of a dispatched job): its stdout, its
 * stderr, and its exit status as ours (1 when it was killed by a signal and has none).
 */
export function passThrough(outcome: OrchesjobOutcome): void {
  writeStdout(outcome.stdout);
  process.stderr.write(outcome.stderr);
  process.exitCode = outcome.code ?? 1;
}
