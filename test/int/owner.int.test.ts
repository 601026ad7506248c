/**
 * The one owner-liveness rule (src/dispatcher/owner.ts), judged on real processes: recovery releases a
 * claim only when its owner is `gone`, and `replay --rebuild` refuses while any owner is not, both by
 * this function on the claim as its event recorded it (pid and process start).
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedOwner } from '../../src/dispatcher/owner.js';
import { ownerLiveness, processStart } from '../../src/dispatcher/owner.js';

const onLinux = process.platform === 'linux';

describe.runIf(onLinux)('ownerLiveness', () => {
  let child: ChildProcess;
  let pid: number;
  beforeAll(() => {
    child = spawn('sleep', ['60'], { stdio: 'ignore' });
    pid = child.pid as number;
  });
  afterAll(() => {
    child.kill('SIGKILL');
  });

  const owner = (over: Partial<RecordedOwner>): RecordedOwner => ({ dispatcher_id: 'd1', host: hostname(), pid, ...over });

  it('a running owner whose recorded start matches, or with no start recorded, is alive', () => {
    expect(processStart(pid)).not.toBeNull();
    expect(ownerLiveness(owner({ process_start: processStart(pid) }))).toBe('alive');
    expect(ownerLiveness(owner({ process_start: null }))).toBe('alive');
    expect(ownerLiveness(owner({}))).toBe('alive');
  });

  it('a pid now held by another process (its start differs from the recorded one) is gone', () => {
    expect(ownerLiveness(owner({ process_start: `${processStart(pid)}0` }))).toBe('gone');
  });

  it('no process (pid 0: a claim adopted from the Python tool) is gone; another host is unknown', () => {
    expect(ownerLiveness(owner({ pid: 0 }))).toBe('gone');
    expect(ownerLiveness(owner({ host: `${hostname()}-elsewhere` }))).toBe('unknown');
  });

  it('a process that exited is gone', async () => {
    const done = spawn('true', { stdio: 'ignore' });
    const exited = done.pid as number;
    await new Promise((resolve) => done.once('exit', resolve));
    expect(ownerLiveness(owner({ pid: exited }))).toBe('gone');
  });
});
