/**
 * How `dist/cli.js` runs a bundle: compiled with the V8 code cache the build saved beside it, and
 * given this process's `require` (see src/cli.ts for why, and scripts/build.mjs for how they are made).
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Script } from 'node:vm';
import type { CommandDef } from 'citty';
import type { CommandLoader } from './main.js';

/** What a bundle exports: the program, and in `dist/commands/<name>.js` its command. */
export interface Bundle {
  main(argv: string[], load: CommandLoader): Promise<void>;
  command?: CommandDef;
}

export function loadBundle(file: string): Bundle {
  const script = compileBundle(file, readFileSync(file, 'utf8'), readCache(`${file}.v8cache`, file));
  // The bundles' only require()s are Node's modules and better-sqlite3 and consola, which resolve from
  // dist/commands/ as from here; so they get this file's require (node:module costs milliseconds).
  const module = { exports: {} };
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
  wrapper.call(module.exports, module.exports, require, module, file, join(file, '..'));
  return module.exports as Bundle;
}

function readCache(cacheFile: string, file: string): Buffer | undefined {
  try {
    if (statSync(cacheFile).mtimeMs < statSync(file).mtimeMs) return undefined;
    return readFileSync(cacheFile);
  } catch {
    return undefined; // no cache: compile
  }
}

/**
 * Compile a CommonJS bundle as Node would wrap it; `script.cachedDataRejected` tells whether V8 took the
 * cache. scripts/build.mjs makes the caches with the same wrapper.
 */
export function compileBundle(file: string, source: string, cachedData?: Buffer): Script {
  return new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    cachedData,
  });
}
