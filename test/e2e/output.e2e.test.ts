/**
 * The commands write their JSON with synchronous writes to fd 1 (src/output.ts `writeStdout`), not
 * through `process.stdout`. Whatever stdout is, all of it must arrive.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI, runCli, sandbox } from '../support/harness.js';

describe('output', () => {
  it('arrives whole through a non-blocking pipe that fills up before its reader reads', async () => {
    const { db } = sandbox();
    const blob = 'x'.repeat(60_000);
    for (let i = 0; i < 4; i++) {
      const r = await runCli(['reserve', '--db', db, '--run-key', `big-${i}`, '--metadata-json', JSON.stringify({ blob, i }), '--', '/bin/true']);
      expect(r.code, r.stderr).toBe(0);
    }
    // A parent that made its stdout pipe non-blocking (event loops do) passes it on to the CLI: the
    // flag belongs to the pipe, so the CLI's writes meet EAGAIN while the pipe is full.
    const parent = spawn(
      'python3',
      [
        '-c',
        'import os, subprocess, sys; os.set_blocking(1, False); ' +
          `sys.exit(subprocess.run([${[process.execPath, CLI, 'list', '--db', db].map((a) => JSON.stringify(a)).join(', ')}]).returncode)`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) => parent.once('exit', resolve));
    const closed = new Promise((resolve) => parent.stdout.once('close', resolve));
    const chunks: Buffer[] = [];
    const errors: Buffer[] = [];
    parent.stderr.on('data', (c: Buffer) => errors.push(c));
    // Read nothing for a while: the 240 KB of output cannot fit the pipe. (A listener is attached
    // first: Node discards the output of a child that exits while nobody listens.)
    parent.stdout.on('data', (c: Buffer) => chunks.push(c));
    parent.stdout.pause();
    await new Promise((resolve) => setTimeout(resolve, 700));
    parent.stdout.resume();
    expect(await exited, Buffer.concat(errors).toString('utf8')).toBe(0);
    await closed;
    const listed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { reservations: { metadata: { blob: string; i: number } }[] };
    expect(listed.reservations.map((r) => [r.metadata.i, r.metadata.blob.length]).sort()).toEqual([
      [0, 60_000],
      [1, 60_000],
      [2, 60_000],
      [3, 60_000],
    ]);
  });
});
