import { statSync } from 'node:fs';

/** What the database path holds now, against the file the dispatcher opened. */
export type FileCheck = { readonly ok: true } | { readonly ok: false; readonly replaced: boolean; readonly message: string };

/**
 * The database must stay the file this dispatcher opened, at its path. Moved away or deleted, other
 * processes would create a new, empty database there, which this dispatcher would not see: it takes no
 * new work until the file is back. Replaced by another file (another device or inode), the dispatcher
 * must be restarted on the new one.
 */
export class FileGuard {
  private readonly opened: { dev: number; ino: number } | null;

  constructor(private readonly path: string) {
    this.opened = identity(path);
  }

  check(): FileCheck {
    const current = identity(this.path);
    if (current === null) {
      return { ok: false, replaced: false, message: `database ${this.path} is missing (moved or deleted); waiting for it to come back` };
    }
    const opened = this.opened;
    if (opened !== null && (current.dev !== opened.dev || current.ino !== opened.ino)) {
      return {
        ok: false,
        replaced: true,
        message: `database ${this.path} was replaced by another file; stopping so that the dispatcher is restarted on it`,
      };
    }
    return { ok: true };
  }
}

function identity(path: string): { dev: number; ino: number } | null {
  try {
    const { dev, ino } = statSync(path);
    return { dev, ino };
  } catch {
    return null;
  }
}
