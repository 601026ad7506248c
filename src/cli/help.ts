import type { CommandContext, CommandDef } from 'citty';
import { renderUsage } from 'citty';
import { writeStdout } from '../output.js';
import type { ArgvOptions, FlagsDef, ParsedArgv } from './argv.js';
import { parseArgv } from './argv.js';

/** The arguments parsed against the command's `args`; on `--help`, its usage (citty renders it from them) printed and null. */
async function parseOrHelp<D extends FlagsDef>(
  ctx: { readonly rawArgs: string[]; readonly cmd: CommandDef<D> },
  options: ArgvOptions = {},
): Promise<ParsedArgv<D> | null> {
  const def = typeof ctx.cmd.args === 'function' ? await ctx.cmd.args() : await ctx.cmd.args;
  const parsed = parseArgv(ctx.rawArgs, def ?? ({} as D), options);
  if (parsed.help) {
    const text = await renderUsage(ctx.cmd, rootMeta);
    // citty colours its usage; a pipe or a file gets plain text.
    writeStdout(`${process.stdout.isTTY ? text : stripAnsi(text)}\n`);
    return null;
  }
  return parsed;
}

type Body<D extends FlagsDef> = (parsed: ParsedArgv<D>) => Promise<void>;

/**
 * A command's `run`: its arguments parsed against its own `args` and typed by them, `--help` answered
 * with its usage, else `body` called with what was parsed. `options.takesCommand`: `reserve`'s target.
 */
export function runParsed<D extends FlagsDef>(body: Body<D>): (ctx: CommandContext<D>) => Promise<void>;
export function runParsed<D extends FlagsDef>(options: ArgvOptions, body: Body<D>): (ctx: CommandContext<D>) => Promise<void>;
export function runParsed<D extends FlagsDef>(
  first: ArgvOptions | Body<D>,
  second?: Body<D>,
): (ctx: CommandContext<D>) => Promise<void> {
  const [options, body] = typeof first === 'function' ? [{}, first] : [first, second as Body<D>];
  return async (ctx) => {
    const parsed = await parseOrHelp(ctx, options);
    if (parsed !== null) await body(parsed);
  };
}

const rootMeta = { meta: { name: 'orchesjob-reserver' } };

function stripAnsi(text: string): string {
  return text.replace(/\u001b\[[0-9;]*m/g, '');
}
