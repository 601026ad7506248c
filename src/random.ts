import { closeSync, openSync, readSync } from 'node:fs';

/**
 * Random fractions in [0, 1) for ULIDs, from /dev/urandom, 4 KiB read at a time.
 *
 * The ulid package's own source of randomness is Web Crypto or node:crypto, and loading either costs
 * about 10 ms, 6 % of a `reserve` over SSH (docs/performance.md); reading the kernel's generator costs
 * one open and one read. Where /dev/urandom cannot be read, Web Crypto it is.
 */
export function urandomFractions(): () => number {
  const buffer = Buffer.alloc(4096);
  let offset = buffer.length;
  return () => {
    if (offset === buffer.length) {
      fill(buffer);
      offset = 0;
    }
    const value = buffer.readUInt32LE(offset) / 2 ** 32;
    offset += 4;
    return value;
  };
}

function fill(buffer: Buffer): void {
  try {
    const fd = openSync('/dev/urandom', 'r');
    try {
      let filled = 0;
      while (filled < buffer.length) {
        const read = readSync(fd, buffer, filled, buffer.length - filled, null);
        if (read === 0) throw new Error('/dev/urandom: end of file');
        filled += read;
      }
    } finally {
      closeSync(fd);
    }
  } catch {
    globalThis.crypto.getRandomValues(buffer);
  }
}
