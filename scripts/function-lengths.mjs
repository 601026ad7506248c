// Lists the functions of src/ longer than a limit (default 60 lines), longest first, and exits 1 when
// there is one. A function whose body is one `switch` over the event or command types (decide, evolve,
// the log's eventLine) is listed apart and allowed: its length is the number of types it handles.
// Usage: node scripts/function-lengths.mjs [--limit N] [--all]
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);
const limit = args.includes('--limit') ? Number(args[args.indexOf('--limit') + 1]) : 60;
const all = args.includes('--all');

function* files(folder) {
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else if (path.endsWith('.ts')) yield path;
  }
}

/** The function-like nodes of a file, with their names and line counts. */
function functionsOf(path) {
  const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const found = [];
  const visit = (node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      found.push({ file: relative(root, path), line: start + 1, lines: end - start + 1, name: nameOf(node), oneSwitch: isOneSwitch(node) });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function nameOf(node) {
  if (node.name !== undefined) return node.name.getText();
  if (ts.isVariableDeclaration(node.parent)) return node.parent.name.getText();
  if (ts.isPropertyAssignment(node.parent)) return node.parent.name.getText();
  return '(anonymous)';
}

/** A body whose longest statement is a `switch` covering most of it. */
function isOneSwitch(node) {
  if (!ts.isBlock(node.body)) return false;
  const switches = node.body.statements.filter(ts.isSwitchStatement);
  if (switches.length !== 1) return false;
  const length = (n) => n.getEnd() - n.getStart();
  return length(switches[0]) >= 0.6 * length(node.body);
}

const rows = [...files(join(root, 'src'))].flatMap(functionsOf).sort((a, b) => b.lines - a.lines);
const long = rows.filter((r) => r.lines > limit);
for (const r of all ? rows : long) {
  console.log(`${String(r.lines).padStart(4)}  ${r.file}:${r.line}  ${r.name}${r.oneSwitch ? '  (one switch over the types: allowed)' : ''}`);
}
const failing = long.filter((r) => !r.oneSwitch);
console.log(`${rows.length} functions in src/; longest ${rows[0]?.lines ?? 0} lines; ${failing.length} over ${limit} lines (the one-switch functions aside)`);
process.exitCode = failing.length > 0 ? 1 : 0;
