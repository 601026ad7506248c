/**
 * The installed entry point, `dist/cli.js`: load the one bundle the subcommand needs, and run it.
 *
 * Starting up is most of what `reserve` and `status` cost over SSH, and most of starting up is V8
 * compiling JavaScript. So each subcommand is its own CommonJS bundle (`dist/commands/<name>.js`,
 * the program and that command; `dist/main.js` for usage and errors), and the build loads each one
 * (and runs `reserve`, and `run` through one dispatch) and saves V8's code cache beside it
 * (`<bundle>.v8cache`). Here that cache is handed to V8, which then skips compiling what it holds.
 *
 * V8 accepts a cache only if the same V8 version and flags made it, for a source of the same length;
 * otherwise it compiles as usual (a newer Node, `--cpu-prof`...). A cache older than its bundle is not
 * even offered. Nothing is written at run time: a cache is code, so it comes only from the build,
 * with the bundle, and is trusted as the bundle is.
 */
import { join } from 'node:path';
import { isSubCommand } from './commands/index.js';
import { loadBundle } from './bundle.js';

const argv = process.argv.slice(2);
const name = argv[0];
const bundle = loadBundle(
  join(__dirname, name !== undefined && isSubCommand(name) ? `commands/${name}.js` : 'main.js'),
);
void bundle.main(argv, () => {
  if (bundle.command === undefined) throw new Error(`bundle for ${String(name)} has no command`);
  return bundle.command;
});
