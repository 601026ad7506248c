// Bundle the CLI into dist/: one entry with lazily loaded chunks per subcommand, so that start-up
// does not walk hundreds of files. better-sqlite3 stays external (native addon).
import { chmodSync, existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { build } from 'esbuild';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
// Built beside dist/ and swapped in by renames, so that a CLI started during a build (tests, a
// dispatcher) never finds dist/ empty or half written.
const next = `dist.next-${process.pid}`;
const old = `dist.old-${process.pid}`;
await build({
  entryPoints: { cli: 'src/cli.ts' },
  outdir: next,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3'],
  define: { __VERSION__: JSON.stringify(pkg.version) },
  banner: { js: '#!/usr/bin/env node' },
  chunkNames: 'chunks/[name]-[hash]',
  minify: true,
  // Readable stack traces for --verbose and bug reports, at no start-up cost.
  sourcemap: 'linked',
  logLevel: 'warning',
});
chmodSync(`${next}/cli.js`, 0o755);
if (existsSync('dist')) renameSync('dist', old);
renameSync(next, 'dist');
rmSync(old, { recursive: true, force: true });
