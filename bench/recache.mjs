// node bench/recache.mjs <dist> <compiled|top-level> [bundle...]: rewrite the V8 code caches of a copy of
// dist/ in another way than the build makes them, for `node scripts/bench.mjs ab` to set beside it.
//   compiled   the cache of the bundle right after compiling it (nothing run);
//   top-level  after also running its top level (the modules' definitions, no command).
// The bundles are paths inside <dist> (`commands/run.js`); all of them when none is given.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { Script } from 'node:vm';

const [distArg, mode, ...only] = process.argv.slice(2);
if (distArg === undefined || !['compiled', 'top-level'].includes(mode)) {
  throw new Error('usage: node bench/recache.mjs <dist> <compiled|top-level> [bundle...]');
}
const dist = resolve(distArg);
const all = () => ['main.js', ...readdirSync(join(dist, 'commands')).filter((f) => f.endsWith('.js')).map((f) => `commands/${f}`)];
const bundles = only.length > 0 ? only : all();
const distRequire = createRequire(join(dist, 'cli.js'));
for (const bundle of bundles) {
  const file = join(dist, bundle);
  // compileBundle's wrapper (src/bundle.ts): V8 takes a cache only for the same source.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${readFileSync(file, 'utf8')}\n})`, { filename: file });
  if (mode === 'top-level') {
    const module = { exports: {} };
    script.runInThisContext().call(module.exports, module.exports, distRequire, module, file, dirname(file));
  }
  writeFileSync(`${file}.v8cache`, script.createCachedData());
  console.log(`${file}.v8cache (${mode})`);
}
