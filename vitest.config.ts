import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Files with margins too thin to share the CPU with the rest of the suite: the stand-in's own test
 * gives a 0.4 s job two process starts to still see it RUNNING; in faults-start, a dispatcher started
 * after a SIGKILL must recover and adopt a hung start's job within 3 s of its claim. They run after all
 * other files, one at a time.
 */
const TIGHT = ['test/orchesjob-standin.int.test.ts', 'test/e2e/faults-start.e2e.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'suite',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...TIGHT],
          // Most e2e time is spent waiting on child processes and timers, not computing: run files side
          // by side. The default (one worker per core but one) runs one file at a time on 2 cores.
          maxWorkers: 4,
        },
      },
      { extends: true, test: { name: 'tight', include: TIGHT, maxWorkers: 1, sequence: { groupOrder: 1 } } },
    ],
  },
});
