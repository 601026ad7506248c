import { EXIT_CODES } from '../errors.js';

/**
 * SIGTERM/SIGINT for the long-running commands (`run`, `events --follow`): the first asks `stop` to
 * finish cleanly, a second exits at once (128 + signal number, as a shell reports it). Returns the
 * function that removes the handlers.
 */
export function onStopSignals(stop: () => void, label: string): () => void {
  let signals = 0;
  const handler = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`${label}: second ${signal}, exiting now\n`);
      process.exit((signal === 'SIGINT' ? EXIT_CODES.INTERRUPTED : EXIT_CODES.TERMINATED).status);
    }
    stop();
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
  };
}
