// Build dist/: the entry point dist/cli.js, and one CommonJS bundle per subcommand
// (dist/commands/<name>.js: the program and that command; dist/main.js: usage and errors), each
// with its V8 code cache (see src/cli.ts). better-sqlite3 stays external (native addon), and so does
// consola (loaded only for --verbose and progress on a terminal).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { build } from 'esbuild';

const root = resolve(new URL('..', import.meta.url).pathname);
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
// Built beside dist/ and swapped in by renames, so that a CLI started during a build (tests, a
// dispatcher) never finds dist/ empty or half written.
const next = join(root, `dist.next-${process.pid}`);
const old = join(root, `dist.old-${process.pid}`);

const names = subcommandNames();

// `node -e CODE_CACHE_WRITER <bundle in dist.next> <its path in dist/> [argv...]`: load the bundle as
// src/bundle.ts does (the same wrapper: V8 takes a cache only for the same source), run its program
// with argv if there is one, and at exit save its V8 code cache beside it. Under the bundle's final
// path: V8 keeps the file name a cache was made with (stack traces, profiles). Its `require` is that of
// dist.next's cli.js, as dist/cli.js gives its own to the bundles: ./native/spawn.node is the new one.
const CODE_CACHE_WRITER = `
const { readFileSync, writeFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const { dirname } = require('node:path');
const { Script } = require('node:vm');
const [built, file, cli, ...argv] = process.argv.slice(1);
const source = '(function (exports, require, module, __filename, __dirname) {' + readFileSync(built, 'utf8') + '\\n})';
const script = new Script(source, { filename: file });
const bundle = { exports: {} };
script.runInThisContext().call(bundle.exports, bundle.exports, createRequire(cli), bundle, file, dirname(file));
process.once('exit', () => writeFileSync(built + '.v8cache', script.createCachedData()));
if (argv.length > 0) void bundle.exports.main(argv, () => bundle.exports.command);
`;

// Each dist/commands/<name>.js exports the program and its command.
const commandEntries = {
  name: 'command-entries',
  setup(b) {
    b.onResolve({ filter: /^command-entry:/ }, (args) => ({ path: args.path.slice('command-entry:'.length), namespace: 'command-entry' }));
    b.onLoad({ filter: /.*/, namespace: 'command-entry' }, (args) => ({
      contents: `export { main } from ${JSON.stringify(join(root, 'src/main.ts'))};\nexport { command } from ${JSON.stringify(join(root, `src/commands/${args.path}.ts`))};\n`,
      loader: 'ts',
      resolveDir: root,
    }));
  },
};

// ulid's Node build imports node:crypto for a fallback source of randomness that is never used
// here (src/random.ts gives it /dev/urandom; the dispatcher's id uses Web Crypto); loading
// node:crypto costs milliseconds of every write's start-up. Its browser build is the same code
// without that import.
const ulidWithoutNodeCrypto = {
  name: 'ulid-without-node-crypto',
  setup(b) {
    b.onResolve({ filter: /^ulid$/ }, () => ({ path: join(root, 'node_modules/ulid/dist/browser/index.js') }));
  },
};

const options = {
  outdir: next,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // import() becomes require(): lazily loaded modules (migrations, child_process, consola) stay lazy
  // without going through the ES module loader.
  supported: { 'dynamic-import': false },
  external: ['better-sqlite3', 'consola', 'unix-dgram'],
  define: { __VERSION__: JSON.stringify(pkg.version) },
  plugins: [commandEntries, ulidWithoutNodeCrypto],
  minify: true,
  // Readable stack traces for --verbose and bug reports; not shipped (package.json "files").
  sourcemap: 'linked',
  logLevel: 'warning',
};
// The bundles: src/cli.ts wraps each in a function to run it, where a #! line would not parse.
await build({
  ...options,
  entryPoints: {
    main: join(root, 'src/main.ts'),
    ...Object.fromEntries(names.map((n) => [`commands/${n}`, `command-entry:${n}`])),
  },
});
await build({ ...options, entryPoints: { cli: join(root, 'src/cli.ts') }, banner: { js: '#!/usr/bin/env node' } });
// The package is an ES module package; its built files are CommonJS.
writeFileSync(join(next, 'package.json'), '{ "type": "commonjs" }\n');
chmodSync(join(next, 'cli.js'), 0o755);
buildSpawnAddon(join(next, 'native', 'spawn.node'));
const trained = ['reserve', 'gate', 'run']; // their caches come from a run of the command (writeTrainedCodeCaches)
for (const bundle of ['main.js', ...names.filter((n) => !trained.includes(n)).map((n) => `commands/${n}.js`)]) writeCodeCache(bundle, []);
writeTrainedCodeCaches();

if (existsSync(join(root, 'dist'))) renameSync(join(root, 'dist'), old);
renameSync(next, join(root, 'dist'));
rmSync(old, { recursive: true, force: true });

/**
 * Compile native/spawn.c (posix_spawn for the dispatcher's starts, src/orchesjob/spawn.ts) against the
 * Node-API headers of the Node that runs this build. A C compiler is needed anyway (better-sqlite3
 * builds from source); `CC` chooses another than `cc`.
 */
function buildSpawnAddon(out) {
  const candidates = [join(dirname(process.execPath), '..', 'include', 'node')];
  if (process.env.npm_config_nodedir) candidates.push(join(process.env.npm_config_nodedir, 'include', 'node'));
  const headers = candidates.find((dir) => existsSync(join(dir, 'node_api.h')));
  if (headers === undefined) throw new Error(`build: no Node-API headers (node_api.h) in ${candidates.join(' or ')}`);
  mkdirSync(dirname(out), { recursive: true });
  const cc = process.env.CC || 'cc';
  const args = ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-I', headers, '-o', out, join(root, 'native', 'spawn.c'), '-lpthread'];
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0) throw new Error(`build: ${cc} ${args.join(' ')} failed: ${r.error ?? r.stderr}`);
}

/**
 * Save a bundle's code cache (`<bundle>.v8cache`, which dist/cli.js hands to V8), in dist.next so that
 * dist/ is swapped in with its caches. Without argv the cache holds the bundle's top level (the
 * modules' definitions, no command); with argv, also what that run of the command compiled.
 */
function writeCodeCache(bundle, argv, env = {}) {
  const r = spawnSync(process.execPath, ['-e', CODE_CACHE_WRITER, join(next, bundle), join(root, 'dist', bundle), join(next, 'cli.js'), ...argv], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error !== undefined || r.status !== 0) {
    throw new Error(`build: the code cache run of ${bundle} ${argv.join(' ')} exited ${r.status}: ${r.error ?? r.stderr}`);
  }
  return r.stdout;
}

/**
 * The caches made from a run of the command, on a scratch ledger, where that run pays
 * (docs/performance.md, "Code caches made by the build"; for the other commands it buys 1-3 ms):
 * - `reserve` of a new run key: 3-6 ms of its start-up, which keep it within 1.3x `node -e ''`; and the
 *   gate's reserve, which keeps a gated reserve within 1.3x of a local one;
 * - `run` through one whole dispatch, through a throwaway orchesjob that answers and then asks the
 *   dispatcher to stop: a dispatcher's first dispatch after it starts then runs code already compiled
 *   (its median firing lag 6-7.5 ms lower).
 */
function writeTrainedCodeCaches() {
  const scratch = mkdtempSync(join(tmpdir(), 'orchesjob-reserver-build-'));
  const db = join(scratch, 'reserver.sqlite3');
  const orchesjob = join(scratch, 'orchesjob');
  writeFileSync(orchesjob, `#!/bin/sh\nprintf '{"job_id":"build-%s"}\\n' "$$"\nkill -TERM "$PPID"\n`, { mode: 0o755 });
  try {
    // Create and migrate the ledger outside the runs that make caches.
    const list = spawnSync(process.execPath, [join(next, 'cli.js'), 'list', '--db', db], { encoding: 'utf8', timeout: 60_000 });
    if (list.status !== 0) throw new Error(`build: list on the scratch ledger exited ${list.status}: ${list.error ?? list.stderr}`);
    writeCodeCache('commands/reserve.js', ['reserve', '--db', db, '--run-key', 'build-run', '--', '/bin/true']);
    // The gate on the path that matters: a reserve through SSH_ORIGINAL_COMMAND (its 1.3x of a local reserve).
    const policy = join(scratch, 'policy.toml');
    writeFileSync(policy, `db = ${JSON.stringify(db)}\n[keys.build]\nverbs = ["reserve"]\ncommands = ["/bin/true"]\n`, { mode: 0o600 });
    const line = "orchesjob-reserver reserve --run-key build-gate --metadata-json '{\"a\": 1}' -- /bin/true";
    writeCodeCache('commands/gate.js', ['gate', '--policy', policy, '--key', 'build'], { SSH_ORIGINAL_COMMAND: line });
    const cancel = spawnSync(process.execPath, [join(next, 'cli.js'), 'cancel', '--db', db, '--run-key', 'build-gate'], { encoding: 'utf8', timeout: 60_000 });
    if (cancel.status !== 0) throw new Error(`build: cancel on the scratch ledger exited ${cancel.status}: ${cancel.error ?? cancel.stderr}`); // the run below dispatches only its own
    const lines = writeCodeCache('commands/run.js', ['run', '--db', db, '--orchesjob-bin', orchesjob, '--poll-interval', '0.2']);
    // Trained on the path that matters: the start succeeded (not a failed start, then the timeout).
    if (!/"event":"dispatch_succeeded".*"job_id":"build-/.test(lines)) {
      throw new Error(`build: the code cache run of "run" did not dispatch through ${orchesjob}:\n${lines}`);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The subcommands, as `SUBCOMMAND_NAMES` in src/commands/index.ts lists them. */
function subcommandNames() {
  const file = join(root, 'src/commands/index.ts');
  const list = /export const SUBCOMMAND_NAMES = \[([^\]]*)\]/.exec(readFileSync(file, 'utf8'));
  const names = list === null ? [] : [...list[1].matchAll(/'([^']+)'/g)].map((m) => m[1]);
  if (names.length === 0) throw new Error(`build: no "export const SUBCOMMAND_NAMES = ['...', ...]" in ${file}`);
  return names;
}
