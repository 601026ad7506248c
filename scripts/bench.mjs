// npm run bench: build the CLI, bundle the benchmarks (TypeScript, using the ledger's own write path),
// and run them. Figures are printed next to their targets.
//
//   node scripts/bench.mjs [all|dispatch|scale] [scale flags...]
//   node scripts/bench.mjs ab [--rounds N] [--run-rounds N] [--lag-rounds N] <dist> <dist>...
//   node scripts/bench.mjs metrics [--runs 21] [--idle-seconds 20] [--writes 2000] [--throughput-rounds 5]
//
// `all` (the default) runs the dispatcher bench (bench/dispatch.bench.ts), then the scale bench
// (bench/scale.bench.ts; its flags are listed at the top of that file). The scale bench generates its
// ledgers once (up to 1M events, a few minutes) and caches them under dist-bench/ledgers/.
// `ab` (not part of `all`) sets builds of the CLI side by side: start-up and firing lag
// (bench/startup-ab.bench.ts). `metrics` (not part of `all`) sets what the Prometheus metrics cost:
// `metrics` on an empty ledger against the 1M one, an idle `run --metrics-file` at 1M, and the write
// path with and without the counting triggers (bench/metrics.bench.ts).
import { build } from 'esbuild';

const which = ['all', 'dispatch', 'scale', 'ab', 'metrics'].includes(process.argv[2]) ? process.argv[2] : 'all';
const flags = process.argv.slice(which === process.argv[2] ? 3 : 2);

async function bundle(entry, name) {
  const outfile = new URL(`../dist-bench/${name}.mjs`, import.meta.url).pathname;
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: ['better-sqlite3'],
    logLevel: 'warning',
  });
  return import(outfile);
}

if (which === 'all' || which === 'dispatch') {
  const { main } = await bundle('bench/dispatch.bench.ts', 'bench');
  await main();
}
if (which === 'all' || which === 'scale') {
  const { main } = await bundle('bench/scale.bench.ts', 'scale-bench');
  await main(flags);
}
if (which === 'metrics') {
  const { main } = await bundle('bench/metrics.bench.ts', 'metrics-bench');
  await main(flags);
}
if (which === 'ab') {
  const { main } = await bundle('bench/startup-ab.bench.ts', 'startup-ab');
  await main(flags);
}
