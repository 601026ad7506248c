// npm run bench: build the CLI, bundle the benchmark (TypeScript, using the ledger's own write path),
// and run it. Figures are printed next to their targets.
import { build } from 'esbuild';

const outfile = new URL('../dist-bench/bench.mjs', import.meta.url).pathname;
await build({
  entryPoints: ['bench/dispatch.bench.ts'],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3'],
  logLevel: 'warning',
});
const { main } = await import(outfile);
await main();
