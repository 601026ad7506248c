/**
 * Progress of long work (`replay --verify`, `replay --rebuild`, adopting a large Python-tool
 * database) for a person watching a terminal: a line on stderr at most twice a second, through
 * consola. When stderr is not a terminal (a pipe, a file, a process manager) nothing is printed.
 */
export interface Progress {
  /** `done` units of `total` (if known) are finished. Cheap to call often. */
  update(done: number, total?: number): void;
  /** The work ended; prints a last line if any progress was shown. */
  finish(): void;
}

const SILENT: Progress = { update() {}, finish() {} };
const INTERVAL_MS = 500;

/** A reporter for `label` ("replay", "adopting Python rows" ...), silent unless stderr is a TTY. */
export function progress(label: string, unit: string): Progress {
  if (!process.stderr.isTTY) return SILENT;
  let last = Date.now();
  let shown = false;
  let latest = '';
  const say = (text: string) => {
    // consola is loaded only when there is something to show.
    void import('consola').then(({ consola }) => consola.info(text));
  };
  return {
    update(done, total) {
      latest = `${label}: ${done.toLocaleString('en-US')}${total === undefined ? '' : ` of ${total.toLocaleString('en-US')}`} ${unit}`;
      const now = Date.now();
      if (now - last < INTERVAL_MS) return;
      last = now;
      shown = true;
      say(latest);
    },
    finish() {
      if (shown) say(`${latest}, done`);
    },
  };
}
