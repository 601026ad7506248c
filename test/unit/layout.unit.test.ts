import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');

/** The shape the code keeps (issue 14): small functions, a thin dispatcher loop. */
describe('layout of src/', () => {
  it('has no function longer than 60 lines (one switch over the event or command types aside)', () => {
    const run = spawnSync(process.execPath, [join(root, 'scripts/function-lengths.mjs')], { encoding: 'utf8' });
    expect(run.stdout).toMatch(/ 0 over 60 lines/);
    expect(run.status, run.stdout).toBe(0);
  });

  it('keeps the dispatcher loop module at most 150 lines', () => {
    const lines = readFileSync(join(root, 'src/dispatcher/dispatcher.ts'), 'utf8').trimEnd().split('\n').length;
    expect(lines).toBeLessThanOrEqual(150);
  });
});
