/**
 * How `dist/cli.js` runs a bundle: compiled with the V8 code cache the build saved beside it, and
 * given this process's `require` (see src/cli.ts for why, and scripts/build.mjs for how they are made).
 */
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Script } from 'node:vm';
import type { CommandDef } from 'citty';
import type { CommandLoader } from './main.js';

/** What a bundle exports: the program, and in `dist/commands/<name>.js` its command. */
export interface Bundle {
  main(argv: string[], load: CommandLoader): Promise<void>;
  command?: CommandDef;
}

/** Set by scripts/build.mjs only: write each loaded bundle's code cache when the process exits. */
const WRITE_CACHE = process.env['ORCHESJOB_RESERVER_BUILD_CODE_CACHE'] === '1';

export function loadBundle(file: string): Bundle {
  const cacheFile = `${file}.v8cache`;
  const cachedData = WRITE_CACHE ? undefined : readCache(cacheFile, file);
  const script = compileBundle(file, readFileSync(file, 'utf8'), cachedData);
  // The bundles' only require()s are Node's modules and better-sqlite3 and consola, which resolve from
  // dist/commands/ as from here; so they get this file's require (node:module costs milliseconds).
  const module = { exports: {} };
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
  wrapper.call(module.exports, module.exports, require, module, file, join(file, '..'));
  if (WRITE_CACHE) {
    // At exit, the cache also holds the functions the run compiled lazily.
    process.once('exit', () => {
      writeFileSync(`${cacheFile}.tmp`, script.createCachedData());
      renameSync(`${cacheFile}.tmp`, cacheFile); // a CLI starting meanwhile reads all of it or none
    });
  }
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

/** Compile a CommonJS bundle as Node would wrap it; `script.cachedDataRejected` tells whether V8 took the cache. */
export function compileBundle(file: string, source: string, cachedData?: Buffer): Script {
  return new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    cachedData,
  });
}
