// Build dist/: the entry point dist/cli.js, and one CommonJS bundle per subcommand
// (dist/commands/<name>.js: the program and that command; dist/main.js: usage and errors), each
// with the V8 code cache of a run of it (see src/cli.ts). better-sqlite3 stays external (native
// addon), and so does consola (loaded only for --verbose and progress on a terminal).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const root = resolve(new URL('..', import.meta.url).pathname);
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
// Built beside dist/ and swapped in by renames, so that a CLI started during a build (tests, a
// dispatcher) never finds dist/ empty or half written.
const next = join(root, `dist.next-${process.pid}`);
const old = join(root, `dist.old-${process.pid}`);

// The subcommands, as src/commands/index.ts lists them (compiled here, in memory, to read the list).
const names = await subcommandNames();

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

if (existsSync(join(root, 'dist'))) renameSync(join(root, 'dist'), old);
renameSync(next, join(root, 'dist'));
rmSync(old, { recursive: true, force: true });
// In place: V8 keeps the file names a cache was made with (stack traces, profiles). Until a bundle's
// cache is written, it is compiled as before.
trainCodeCache(join(root, 'dist'));

/**
 * Run each command once on a scratch database, so that each bundle's code cache holds what a real
 * run compiles. For `run` that is one whole dispatch, through a throwaway orchesjob that answers and
 * then asks the dispatcher to stop: a dispatcher's first dispatch after it starts then runs code
 * already compiled (the firing lag of docs/performance.md).
 */
function trainCodeCache(dist) {
  const scratch = mkdtempSync(join(tmpdir(), 'orchesjob-reserver-build-'));
  const db = join(scratch, 'reserver.sqlite3');
  const cli = (args, expected, env = { ORCHESJOB_RESERVER_BUILD_CODE_CACHE: '1' }) => {
    const r = spawnSync(process.execPath, [join(dist, 'cli.js'), ...args], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (r.error !== undefined || r.status !== expected) {
      throw new Error(`build: code cache run "${args.join(' ')}" exited ${r.status}, expected ${expected}: ${r.error ?? r.stderr}`);
    }
    return r.stdout;
  };
  try {
    cli(['list', '--db', db], 0, {}); // create and migrate the database, outside the training
    cli(['--help'], 0);
    cli(['reserve', '--db', db, '--run-key', 'build-1', '--', '/bin/true'], 0);
    cli(['status', '--db', db, '--run-key', 'build-1'], 0);
    cli(['list', '--db', db, '--limit', '50'], 0);
    cli(['result', '--db', db, '--run-key', 'build-1'], 5);
    cli(['cancel', '--db', db, '--run-key', 'build-1'], 0);
    cli(['history', '--db', db, '--run-key', 'build-1'], 0);
    cli(['clean', '--db', db, '--run-key', 'build-1', '--all'], 0);
    cli(['events', '--db', db, '--limit', '10'], 0);
    cli(['replay', '--db', db, '--verify'], 0);
    // The gate, on its path that matters: a reserve through SSH_ORIGINAL_COMMAND (and one list).
    const policy = join(scratch, 'policy.toml');
    writeFileSync(policy, `db = ${JSON.stringify(db)}\n[keys.build]\nverbs = ["reserve", "list"]\ncommands = ["/bin/true"]\n`, { mode: 0o600 });
    const gate = (line) => cli(['gate', '--policy', policy, '--key', 'build'], 0, { ORCHESJOB_RESERVER_BUILD_CODE_CACHE: '1', SSH_ORIGINAL_COMMAND: line });
    gate("orchesjob-reserver reserve --run-key build-gate --metadata-json '{\"a\": 1}' -- /bin/true");
    gate('orchesjob-reserver list --limit 1');
    cli(['cancel', '--db', db, '--run-key', 'build-gate'], 0, {}); // the run below dispatches only its own
    const orchesjob = join(scratch, 'orchesjob');
    writeFileSync(orchesjob, `#!/bin/sh\nprintf '{"job_id":"build-%s"}\\n' "$$"\nkill -TERM "$PPID"\n`, { mode: 0o755 });
    cli(['reserve', '--db', db, '--run-key', 'build-run', '--', '/bin/true'], 0, {});
    const lines = cli(['run', '--db', db, '--orchesjob-bin', orchesjob, '--poll-interval', '0.2'], 0);
    // Trained on the path that matters: the start succeeded (not a failed start, then the timeout).
    if (!/"event":"dispatch_succeeded".*"job_id":"build-/.test(lines)) {
      throw new Error(`build: the code cache run of "run" did not dispatch through ${orchesjob}:\n${lines}`);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function subcommandNames() {
  const { outputFiles } = await build({
    entryPoints: [join(root, 'src/commands/index.ts')],
    bundle: true,
    format: 'cjs',
    platform: 'node',
    write: false,
    logLevel: 'warning',
  });
  const module = { exports: {} };
  new Function('module', 'exports', outputFiles[0].text)(module, module.exports);
  return module.exports.SUBCOMMAND_NAMES;
}
