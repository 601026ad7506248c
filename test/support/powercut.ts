/**
 * The power-cut explorer (test/e2e/powercut.e2e.test.ts), after ALICE (Pillai et al., OSDI 2014) and
 * CrashMonkey: a real run of the built CLI and dispatcher is recorded by an LD_PRELOAD shim
 * (`powercut/trace.c`), and from that record this module builds the states a power cut could leave of
 * the database folder.
 *
 * The model of what survives a cut after operation `c` (a simple, pessimistic file system):
 * - a write or truncate of a file survives when that file was fsynced (or fdatasynced) after it and
 *   before the cut; any other write may survive or not, each on its own, in any combination;
 * - a name created, removed or renamed in the folder survives when the folder was fsynced after it
 *   and before the cut; of the later ones, some first part survives, in order (metadata journaled in
 *   order, as ext4 does), possibly none;
 * - the -shm file is not on disk at all (SQLite rebuilds it from the WAL).
 * Writes are whole or absent (no torn sectors: SQLite's WAL frames carry checksums, and its own tests
 * cover torn pages).
 *
 * Cuts are taken just before each sync and at the end: a cut anywhere between two syncs leaves a
 * subset of the states of the cut just before the next sync, with fewer acknowledgements to honour.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from './faults.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Compile the recorder into `folder`; returns the shared object's path. */
export function buildShim(folder: string): string {
  const out = path.join(folder, 'powercut-trace.so');
  execFileSync('cc', ['-shared', '-fPIC', '-O1', '-Wall', '-o', out, path.join(HERE, 'powercut', 'trace.c'), '-ldl', '-lpthread']);
  return out;
}

/** The environment that makes a process (and its children) record into `log`. */
export function traceEnv(shim: string, folder: string, log: string, marker: string): Record<string, string> {
  return { LD_PRELOAD: shim, POWERCUT_DIR: folder, POWERCUT_LOG: log, POWERCUT_MARKER: marker };
}

/** One record of the log, in the order the operations happened. */
export interface TraceRecord {
  readonly index: number;
  readonly op: string;
  readonly pid: number;
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly data: Buffer;
}

export function readTrace(file: string): TraceRecord[] {
  const buf = fs.readFileSync(file);
  const records: TraceRecord[] = [];
  let at = 0;
  while (at < buf.length) {
    const nl = buf.indexOf(0x0a, at);
    if (nl === -1) throw new Error(`trace ${file}: record header without end at byte ${at}`);
    const [op, pid, a, b, c, len] = buf.subarray(at, nl).toString('latin1').split(' ');
    const size = Number(len);
    const data = buf.subarray(nl + 1, nl + 1 + size);
    if (op === undefined || data.length !== size) throw new Error(`trace ${file}: truncated record at byte ${at}`);
    records.push({ index: records.length, op, pid: Number(pid), a: Number(a), b: Number(b), c: Number(c), data });
    at = nl + 1 + size;
  }
  return records;
}

/** A file's content, by inode: created by the run, or there when the recording began. */
interface FileObject {
  readonly id: number;
  readonly initial: Buffer;
  /** Indexes of the syncs of this file, ascending. */
  readonly syncs: number[];
}

/** A change of a file's content. */
interface ContentOp {
  readonly index: number;
  readonly object: FileObject;
  readonly kind: 'write' | 'truncate';
  readonly offset: number;
  readonly data: Buffer;
  readonly size: number;
}

/** A change of the folder's names. */
type NameOp =
  | { readonly index: number; readonly kind: 'create'; readonly name: string; readonly object: FileObject }
  | { readonly index: number; readonly kind: 'unlink'; readonly name: string }
  | { readonly index: number; readonly kind: 'rename'; readonly from: string; readonly to: string };

export interface Acknowledgement {
  readonly index: number;
  readonly pid: number;
  readonly text: string;
}

export interface Fork {
  readonly index: number;
  readonly parent: number;
  readonly child: number;
}

/** What the recorded run did to the folder, and what it told and started. */
export class Recording {
  readonly contentOps: ContentOp[] = [];
  readonly nameOps: NameOp[] = [];
  readonly folderSyncs: number[] = [];
  /** Indexes of every sync (file or folder): the cuts are taken just before them. */
  readonly syncPoints: number[] = [];
  readonly acks: Acknowledgement[] = [];
  readonly forks: Fork[] = [];
  readonly marks: { index: number; text: string }[] = [];
  /** argv of each process, as it announced itself (the last exec of a pid wins). */
  readonly argv = new Map<number, string[]>();
  /** Where each process announced itself (its last exec): nothing it did comes before. */
  readonly execAt = new Map<number, number>();
  readonly parent = new Map<number, number>();
  readonly initialNames = new Map<string, FileObject>();
  readonly end: number;

  constructor(
    readonly folder: string,
    records: readonly TraceRecord[],
    initialFiles: ReadonlyMap<string, Buffer>,
  ) {
    let ids = 0;
    const names = new Map<string, FileObject>();
    for (const [name, content] of initialFiles) {
      const object = { id: ids++, initial: content, syncs: [] };
      names.set(name, object);
      this.initialNames.set(name, object);
    }
    const fds = new Map<string, FileObject | 'folder'>();
    const nameOf = (p: string) => {
      const rel = path.relative(folder, p);
      if (rel.includes('/') || rel.startsWith('..')) throw new Error(`trace: a path outside the folder: ${p}`);
      return rel;
    };
    for (const r of records) {
      const fd = `${r.pid}:${r.a}`;
      switch (r.op) {
        case 'EXEC': {
          const parts = r.data.toString('utf8').split('\0');
          if (parts.at(-1) === '') parts.pop();
          this.argv.set(r.pid, parts);
          this.execAt.set(r.pid, r.index);
          this.parent.set(r.pid, r.a);
          break;
        }
        case 'OPEN': {
          const p = r.data.toString('utf8');
          if (p === folder) {
            fds.set(fd, 'folder');
            break;
          }
          const name = nameOf(p);
          let object = names.get(name);
          if (r.b === 1 || object === undefined) {
            object = { id: ids++, initial: Buffer.alloc(0), syncs: [] };
            names.set(name, object);
            this.nameOps.push({ index: r.index, kind: 'create', name, object });
          } else if (r.c === 1) {
            this.contentOps.push({ index: r.index, object, kind: 'truncate', offset: 0, data: Buffer.alloc(0), size: 0 });
          }
          fds.set(fd, object);
          break;
        }
        case 'CLOSE':
          fds.delete(fd);
          break;
        case 'WRITE':
        case 'TRUNC': {
          const object = fds.get(fd);
          if (object === undefined || object === 'folder') throw new Error(`trace: ${r.op} on an unknown fd ${fd} (record ${r.index})`);
          this.contentOps.push(
            r.op === 'WRITE'
              ? { index: r.index, object, kind: 'write', offset: r.b, data: r.data, size: 0 }
              : { index: r.index, object, kind: 'truncate', offset: 0, data: Buffer.alloc(0), size: r.b },
          );
          break;
        }
        case 'SYNC': {
          const object = fds.get(fd);
          if (object === undefined) throw new Error(`trace: sync of an unknown fd ${fd} (record ${r.index})`);
          if (object === 'folder') this.folderSyncs.push(r.index);
          else object.syncs.push(r.index);
          this.syncPoints.push(r.index);
          break;
        }
        case 'UNLINK': {
          const name = nameOf(r.data.toString('utf8'));
          names.delete(name);
          this.nameOps.push({ index: r.index, kind: 'unlink', name });
          break;
        }
        case 'RENAME': {
          const [from, to] = r.data.toString('utf8').split('\n').map(nameOf) as [string, string];
          const object = names.get(from);
          names.delete(from);
          if (object !== undefined) names.set(to, object);
          this.nameOps.push({ index: r.index, kind: 'rename', from, to });
          break;
        }
        case 'ACK':
          this.acks.push({ index: r.index, pid: r.pid, text: r.data.toString('utf8') });
          break;
        case 'FORK':
          this.forks.push({ index: r.index, parent: r.pid, child: r.a });
          break;
        case 'MARK':
          this.marks.push({ index: r.index, text: r.data.toString('utf8') });
          break;
        default:
          throw new Error(`trace: unknown record ${r.op}`);
      }
    }
    this.end = records.length;
  }

  /** The cuts: just before each sync, and after the last record. */
  cuts(): number[] {
    return [...new Set([...this.syncPoints, this.end])].sort((x, y) => x - y);
  }

  /** What a process printed on stdout before `cut`, as text. */
  printedBefore(pid: number, cut: number): string {
    return this.acks
      .filter((a) => a.pid === pid && a.index < cut)
      .map((a) => a.text)
      .join('');
  }

  /** The writes and name changes before `cut` that nothing synced: what a power cut may take. */
  volatileAt(cut: number): { writes: ContentOp[]; names: NameOp[] } {
    const writes = this.contentOps.filter((op) => op.index < cut && !syncedBetween(op.object.syncs, op.index, cut));
    const names = this.nameOps.filter((op) => op.index < cut && !syncedBetween(this.folderSyncs, op.index, cut));
    return { writes, names };
  }

  /**
   * Each file's durable content at `cut`: its writes that a later sync (before the cut) covers. A
   * file's durable writes all come before its volatile ones (a sync after a write covers every write
   * before it), so a state is this content with some volatile writes applied after it, in order.
   */
  durableAt(cut: number): Map<FileObject, FileImage> {
    const images = new Map<FileObject, FileImage>();
    const volatile = new Set<FileObject>();
    for (const op of this.contentOps) {
      if (op.index >= cut) break;
      if (volatile.has(op.object)) continue;
      if (!syncedBetween(op.object.syncs, op.index, cut)) {
        volatile.add(op.object);
        continue;
      }
      let image = images.get(op.object);
      if (image === undefined) images.set(op.object, (image = new FileImage(op.object.initial)));
      image.apply(op);
    }
    return images;
  }

  /**
   * The folder after a cut at `cut` (`durable` is `durableAt(cut)`), keeping the volatile writes `keep`
   * says yes to and the first `keepNames` volatile name changes. Returns each file's content by name.
   */
  stateAt(cut: number, durable: Map<FileObject, FileImage>, keep: (op: ContentOp) => boolean, keepNames: number): Map<string, Buffer> {
    const names = new Map(this.initialNames);
    let volatileNames = 0;
    for (const op of this.nameOps) {
      if (op.index >= cut) break;
      if (!syncedBetween(this.folderSyncs, op.index, cut) && volatileNames++ >= keepNames) break;
      if (op.kind === 'create') names.set(op.name, op.object);
      else if (op.kind === 'unlink') names.delete(op.name);
      else {
        const object = names.get(op.from);
        names.delete(op.from);
        if (object !== undefined) names.set(op.to, object);
      }
    }
    const files = new Map<string, Buffer>();
    const { writes } = this.volatileAt(cut);
    for (const [name, object] of names) {
      const image = (durable.get(object) ?? new FileImage(object.initial)).clone();
      for (const op of writes) if (op.object === object && keep(op)) image.apply(op);
      files.set(name, image.content());
    }
    return files;
  }
}

/** A file's bytes while writes are applied: grows by doubling, reads as zeros where nothing was written. */
class FileImage {
  private buf: Buffer;
  private length: number;
  constructor(initial: Buffer, capacity = initial.length) {
    this.buf = Buffer.alloc(Math.max(capacity, 4096));
    initial.copy(this.buf);
    this.length = initial.length;
  }
  apply(op: ContentOp): void {
    if (op.kind === 'write') {
      const end = op.offset + op.data.length;
      this.reserve(end);
      op.data.copy(this.buf, op.offset);
      this.length = Math.max(this.length, end);
    } else if (op.size < this.length) {
      this.buf.fill(0, op.size, this.length);
      this.length = op.size;
    } else {
      this.reserve(op.size);
      this.length = op.size;
    }
  }
  clone(): FileImage {
    return new FileImage(this.buf.subarray(0, this.length), this.buf.length);
  }
  content(): Buffer {
    return this.buf.subarray(0, this.length);
  }
  private reserve(size: number): void {
    if (size <= this.buf.length) return;
    const grown = Buffer.alloc(Math.max(size, this.buf.length * 2));
    this.buf.copy(grown, 0, 0, this.length);
    this.buf = grown;
  }
}

/** Whether a sync in `syncs` (ascending) lies strictly between `after` and `before`. */
function syncedBetween(syncs: readonly number[], after: number, before: number): boolean {
  let lo = 0;
  let hi = syncs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((syncs[mid] as number) <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo < syncs.length && (syncs[lo] as number) < before;
}

/** One state a power cut could leave. */
export interface CrashState {
  readonly cut: number;
  readonly label: string;
  readonly files: Map<string, Buffer>;
  /** sha256 of the names and contents: equal states are checked once. */
  readonly digest: string;
}

/**
 * The distinct states of every cut: all volatile writes dropped, all kept, and, per cut, every subset
 * when there are at most `exhaustiveUpTo` volatile writes, else `samples` random ones; each with the
 * volatile name changes all kept, none kept, or a random first part.
 */
export function crashStates(recording: Recording, options: { samples: number; exhaustiveUpTo: number; seed: number }): CrashState[] {
  const random = mulberry32(options.seed);
  const seen = new Set<string>();
  const states: CrashState[] = [];
  let durable = new Map<FileObject, FileImage>();
  const add = (cut: number, label: string, keep: (op: ContentOp) => boolean, keepNames: number) => {
    const files = recording.stateAt(cut, durable, keep, keepNames);
    const hash = createHash('sha256');
    for (const [name, content] of [...files].sort(([x], [y]) => x.localeCompare(y))) hash.update(`${name}\0${content.length}\0`).update(content);
    const digest = hash.digest('hex');
    if (seen.has(digest)) return;
    seen.add(digest);
    states.push({ cut, label, files, digest });
  };
  // Latest cut first: a content that several cuts can leave is checked at the latest of them, where the
  // most acknowledgements and forks stand before it (the checks only grow stricter with the cut).
  for (const cut of recording.cuts().reverse()) {
    durable = recording.durableAt(cut);
    const { writes, names } = recording.volatileAt(cut);
    const nameChoices = [...new Set([0, names.length, Math.floor(random() * (names.length + 1))])];
    for (const keepNames of nameChoices) {
      add(cut, `cut ${cut}: volatile writes dropped, ${keepNames}/${names.length} name changes`, () => false, keepNames);
      add(cut, `cut ${cut}: volatile writes kept, ${keepNames}/${names.length} name changes`, () => true, keepNames);
    }
    const subsets: Set<ContentOp>[] = [];
    if (writes.length <= options.exhaustiveUpTo) {
      for (let mask = 1; mask < (1 << writes.length) - 1; mask++) subsets.push(new Set(writes.filter((_, i) => (mask >> i) & 1)));
    } else {
      for (let i = 0; i < options.samples; i++) subsets.push(new Set(writes.filter(() => random() < 0.5)));
    }
    for (const [i, kept] of subsets.entries()) {
      const keepNames = Math.floor(random() * (names.length + 1));
      add(cut, `cut ${cut}: volatile writes subset ${i} (${kept.size}/${writes.length} kept), ${keepNames}/${names.length} name changes`, (op) => kept.has(op), keepNames);
    }
  }
  return states;
}

/** Write a state's files into `folder` (created empty). */
export function materialize(state: CrashState, folder: string): void {
  fs.rmSync(folder, { recursive: true, force: true });
  fs.mkdirSync(folder, { recursive: true });
  for (const [name, content] of state.files) fs.writeFileSync(path.join(folder, name), content);
}
