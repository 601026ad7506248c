import { closeSync, fchmodSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Replace the file at `path` with `text` atomically, as node_exporter's textfile collector needs: a
 * reader sees the old file or the new one, never a part. The text goes to a temporary file in the same
 * folder (a rename is atomic only within one file system), named with a leading dot and without the
 * `.prom` ending so that the collector never reads it, and is then renamed over `path`.
 *
 * Mode 0644 whatever the umask: node_exporter runs as another user and must read it; it holds counts,
 * no reservation's content. Not synced: metrics acknowledge nothing, and after a power cut the next
 * write replaces whatever the cut left.
 */
export function writeAtomically(path: string, text: string): void {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(temporary, 'w', 0o644);
  try {
    try {
      fchmodSync(fd, 0o644);
      const bytes = Buffer.from(text, 'utf8');
      for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}
