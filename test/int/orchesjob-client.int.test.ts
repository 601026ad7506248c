/**
 * The orchesjob client against the stand-in (test/support/orchesjob-standin.mjs) and a few small
 * scripts that misbehave as no stand-in mode does: both timestamp formats, the exit codes it reads
 * (2: argparse rejected, 3: not found), the `result`/`cancel` fallbacks, start timeouts that kill the
 * whole process group, the exit grace and the output bound.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReserverError } from '../../src/errors.js';
import { OrchesjobClient } from '../../src/orchesjob/client.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const STANDIN = path.join(HERE, '..', 'support', 'orchesjob-standin.mjs');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let dir = '';
let savedEnv: NodeJS.ProcessEnv;
/** Pids a test started outside the client (grandchildren), killed after it whatever happened. */
let strays: number[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orchesjob-client-'));
  savedEnv = { ...process.env };
  // The client's children inherit this process's environment: that is how the stand-in is set up.
  for (const key of Object.keys(process.env)) if (key.startsWith('ORCHESJOB_STANDIN_')) delete process.env[key];
  process.env['ORCHESJOB_STANDIN_DIR'] = dir;
  strays = [];
});

afterEach(() => {
  for (const pid of strays) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
  fs.rmSync(dir, { recursive: true, force: true });
});

const client = () => new OrchesjobClient(STANDIN);
const spec = (runKey: string, command: string[] = ['true']) => ({ runKey, orchesjobStartOptions: [], command });

/** The stand-in's own record of every call: what it was asked, by which process. */
function invocations(): { argv: string[]; pid: number }[] {
  const file = path.join(dir, 'invocations.jsonl');
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { argv: string[]; pid: number });
}

/** An executable in the test's folder. */
function script(name: string, body: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, body, { mode: 0o755 });
  return file;
}

/** A live process (a zombie is not: it only waits for its parent). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function startJob(runKey: string): Promise<string> {
  const c = client();
  const outcome = await c.start(c.startArgv([], spec(runKey)), 10_000);
  if (!outcome.ok) throw new Error(outcome.error);
  return outcome.jobId;
}

describe('OrchesjobClient.start', () => {
  it('runs `start --run-key K <global> <own> -- CMD` and reads the job id', async () => {
    const c = client();
    const argv = c.startArgv(['--strict'], { runKey: 'k1', orchesjobStartOptions: ['--start-timeout', '5'], command: ['echo', 'a b'] });
    expect(argv).toEqual([STANDIN, 'start', '--run-key', 'k1', '--strict', '--start-timeout', '5', '--', 'echo', 'a b']);
    const outcome = await c.start(argv, 10_000);
    expect(outcome).toEqual({ ok: true, jobId: expect.stringMatching(UUID) });
    expect(invocations().map((i) => i.argv)).toEqual([argv.slice(1)]);
  });

  it('reports a non-zero exit, non-JSON output and JSON without job_id as failures, with the exit code', async () => {
    const c = client();
    const cases = [
      [{ mode: 'exit', code: 7, stderr: 'boom' }, 7, (argv: string[]) => `orchesjob command failed: ${argv.join(' ')}\nexit_code=7\nstderr=boom`],
      [{ mode: 'non-json' }, 0, () => 'orchesjob returned non-JSON output: this is not json'],
      [{ mode: 'no-job-id' }, 0, () => 'orchesjob start output does not contain job_id.'],
    ] as const;
    for (const [fault, exitCode, message] of cases) {
      fs.writeFileSync(path.join(dir, 'faults.json'), JSON.stringify({ '*': fault }));
      const argv = c.startArgv([], spec(`k-${fault.mode}`));
      expect(await c.start(argv, 10_000), fault.mode).toEqual({ ok: false, exitCode, error: message(argv) });
    }
  });

  it('says when the start was killed by a signal (no exit code), and the job it created is found afterwards', async () => {
    fs.writeFileSync(path.join(dir, 'faults.json'), JSON.stringify({ k: { mode: 'die-after-create' } }));
    const c = client();
    const claimedAtMs = Date.now();
    const outcome = await c.start(c.startArgv([], spec('k')), 10_000);
    expect(outcome).toMatchObject({ ok: false, exitCode: null });
    expect(!outcome.ok && outcome.error).toMatch(/\nkilled by SIGKILL\nstderr=$/);
    const lookup = await c.jobStartedSince('k', claimedAtMs);
    expect(lookup).toEqual({ kind: 'found', jobId: expect.stringMatching(UUID) });
  });

  it('a start that does not return in time has its whole process group killed', async () => {
    const pidFile = path.join(dir, 'grandchild.pid');
    // A start that leaves a grandchild in its group and never answers.
    const bin = script('orchesjob-hangs', `#!/bin/sh\nsleep 60 &\necho $! > '${pidFile}'\nwait\n`);
    const c = new OrchesjobClient(bin);
    const startedAt = Date.now();
    const outcome = await c.start(c.startArgv([], spec('k')), 1000);
    const grandchild = Number(fs.readFileSync(pidFile, 'utf8'));
    strays.push(grandchild);
    expect(Date.now() - startedAt).toBeLessThan(5000);
    expect(outcome).toEqual({
      ok: false,
      exitCode: null,
      error: 'orchesjob start did not return within 1 s; its process group was killed\nstderr=',
    });
    await waitFor(() => !alive(grandchild));
  });

  it('a hanging stand-in start is killed at its timeout', async () => {
    fs.writeFileSync(path.join(dir, 'faults.json'), JSON.stringify({ '*': { mode: 'hang' } }));
    const c = client();
    const outcome = await c.start(c.startArgv([], spec('k')), 1500);
    expect(outcome).toMatchObject({ ok: false, exitCode: null });
    expect(!outcome.ok && outcome.error).toMatch(/^orchesjob start did not return within 1.5 s; its process group was killed/);
    const [start] = invocations();
    expect(start).toBeDefined();
    expect(alive(start?.pid ?? -1)).toBe(false);
  });

  it('settles 500 ms after the start exited when a grandchild keeps its pipes open', async () => {
    const pidFile = path.join(dir, 'grandchild.pid');
    const bin = script('orchesjob-leaves-a-child', `#!/bin/sh\nsleep 60 &\necho $! > '${pidFile}'\necho '{"job_id":"j-1"}'\n`);
    const c = new OrchesjobClient(bin);
    const startedAt = Date.now();
    const outcome = await c.start(c.startArgv([], spec('k')), 30_000);
    strays.push(Number(fs.readFileSync(pidFile, 'utf8')));
    const tookMs = Date.now() - startedAt;
    expect(outcome).toEqual({ ok: true, jobId: 'j-1' });
    expect(tookMs).toBeGreaterThanOrEqual(500);
    expect(tookMs).toBeLessThan(5000);
  });

  it('keeps at most 1 MiB of a start output stream, and reads the rest so that the start never blocks', async () => {
    const bin = script(
      'orchesjob-verbose',
      `#!${process.execPath}\nprocess.stderr.write('x'.repeat(3 * 1024 * 1024), () => process.exit(1));\n`,
    );
    const c = new OrchesjobClient(bin);
    const argv = c.startArgv([], spec('k'));
    const outcome = await c.start(argv, 20_000);
    const prefix = `orchesjob command failed: ${argv.join(' ')}\nexit_code=1\nstderr=`;
    expect(outcome).toMatchObject({ ok: false, exitCode: 1 });
    const error = outcome.ok ? '' : outcome.error;
    expect(error.startsWith(prefix)).toBe(true);
    expect(error.length - prefix.length).toBe(1024 * 1024);
  });

  it('a missing executable is a failure without exit code, naming it', async () => {
    const c = new OrchesjobClient(path.join(dir, 'no-such-orchesjob'));
    expect(await c.start(c.startArgv([], spec('k')), 1000)).toEqual({
      ok: false,
      exitCode: null,
      error: `orchesjob executable not found: ${path.join(dir, 'no-such-orchesjob')}`,
    });
  });
});

describe('OrchesjobClient.jobStartedSince', () => {
  for (const format of ['1.1', '1.0']) {
    it(`finds the earliest job started since the claim (format ${format})`, async () => {
      process.env['ORCHESJOB_STANDIN_FORMAT'] = format;
      const before = Date.now();
      const first = await startJob('k');
      const c = client();
      expect(await c.jobStartedSince('k', before)).toEqual({ kind: 'found', jobId: first });
      // A claim after the job, in a later second, is not the job's.
      expect(await c.jobStartedSince('k', Date.now() + 2000)).toEqual({ kind: 'none' });
      expect(invocations().at(-1)?.argv).toEqual(['status', '--run-key', 'k', '--all']);
    });
  }

  it('of several jobs since the claim, takes the earliest (1.0: times to the millisecond)', async () => {
    process.env['ORCHESJOB_STANDIN_FORMAT'] = '1.0';
    const before = Date.now();
    const first = await startJob('k');
    const second = await startJob('k');
    expect(second).not.toBe(first);
    expect(await client().jobStartedSince('k', before)).toEqual({ kind: 'found', jobId: first });
  });

  it('reads 1.1 epoch seconds as whole seconds: a job in the claim\'s own second counts', async () => {
    const jobId = await startJob('k');
    const status = JSON.parse(fs.readFileSync(path.join(dir, 'jobs', `${jobId}.json`), 'utf8')) as { started_at_ms: number };
    // A claim written later in the same second as the start (the start's JSON says only the second).
    const sameSecond = Math.floor(status.started_at_ms / 1000) * 1000 + 999;
    expect(await client().jobStartedSince('k', sameSecond)).toEqual({ kind: 'found', jobId });
  });

  it('exit 3 (run key not found) means no job was ever started', async () => {
    expect(await client().jobStartedSince('never-started', 0)).toEqual({ kind: 'none' });
  });

  it('exit 2 (argparse rejected --all) asks again without it', async () => {
    // An orchesjob that knows no `--all`, then the stand-in itself in the same process.
    const bin = script(
      'orchesjob-without-all',
      [
        '#!/usr/bin/env node',
        "if (process.argv.includes('--all')) {",
        "  process.stderr.write('usage: orchesjob status [-h] (--run-key RUN_KEY | --job-id JOB_ID)\\norchesjob: error: unrecognized arguments: --all\\n');",
        '  process.exit(2);',
        '}',
        `await import(${JSON.stringify(pathToFileURL(STANDIN).href)});`,
        '',
      ].join('\n'),
    );
    const jobId = await startJob('k');
    const c = new OrchesjobClient(bin);
    expect(await c.jobStartedSince('k', 0)).toEqual({ kind: 'found', jobId });
    expect(invocations().at(-1)?.argv).toEqual(['status', '--run-key', 'k']);
    // Without --all, an unknown run key is exit 3 too.
    expect(await c.jobStartedSince('never-started', 0)).toEqual({ kind: 'none' });
  });

  it('any other failure, or an answer that is not JSON, leaves it unknown', async () => {
    const failing = new OrchesjobClient(script('orchesjob-fails', "#!/bin/sh\necho 'database is locked' >&2\nexit 5\n"));
    expect(await failing.jobStartedSince('k', 0)).toEqual({
      kind: 'unknown',
      error: 'orchesjob status --run-key k failed with exit code 5: database is locked',
    });
    const chatty = new OrchesjobClient(script('orchesjob-chatty', '#!/bin/sh\necho hello\n'));
    expect(await chatty.jobStartedSince('k', 0)).toEqual({
      kind: 'unknown',
      error: 'orchesjob status --run-key k printed no JSON: hello\n',
    });
  });

  it('rejects with a general error when orchesjob cannot be run', async () => {
    const bin = path.join(dir, 'no-such-orchesjob');
    const lookup = new OrchesjobClient(bin).jobStartedSince('k', 0);
    await expect(lookup).rejects.toBeInstanceOf(ReserverError);
    await expect(lookup).rejects.toMatchObject({
      code: 'GENERAL',
      message: `orchesjob executable not found: ${bin} (set --orchesjob-bin or ORCHESJOB_BIN)`,
    });
  });
});

describe('OrchesjobClient.jobStatus', () => {
  it("returns the job's JSON, or why orchesjob could not say", async () => {
    const jobId = await startJob('k');
    expect(await client().jobStatus(jobId)).toEqual({ kind: 'json', value: expect.objectContaining({ job_id: jobId, run_key: 'k' }) });
    expect(await client().jobStatus('no-such-job')).toEqual({
      kind: 'failed',
      message: 'orchesjob status --job-id no-such-job failed with exit code 3: orchesjob: Job not found: no-such-job',
    });
  });

  it('returns the raw output when it is not JSON', async () => {
    const c = new OrchesjobClient(script('orchesjob-raw', "#!/bin/sh\necho 'job is fine'\necho 'note' >&2\n"));
    expect(await c.jobStatus('j')).toEqual({ kind: 'raw', stdout: 'job is fine\n', stderr: 'note\n' });
  });
});

describe('OrchesjobClient.result and cancel: the call that counts', () => {
  it('result falls back to `status` when orchesjob has no `result`', async () => {
    const jobId = await startJob('k');
    const outcome = await client().result(jobId);
    expect(outcome).toMatchObject({ code: 0, signal: null, stderr: '' });
    expect(JSON.parse(outcome.stdout)).toMatchObject({ job_id: jobId, status: 'SUCCEEDED' });
    expect(invocations().slice(1).map((i) => i.argv)).toEqual([
      ['result', '--job-id', jobId],
      ['status', '--job-id', jobId],
    ]);
  });

  it('result is called alone when orchesjob has it', async () => {
    process.env['ORCHESJOB_STANDIN_ACCEPT_RESULT_CANCEL'] = '1';
    const jobId = await startJob('k');
    const outcome = await client().result(jobId);
    expect(JSON.parse(outcome.stdout)).toEqual({ job_id: jobId, run_key: 'k', status: 'SUCCEEDED', exit_code: 0, stdout: '', stderr: '' });
    expect(invocations().slice(1).map((i) => i.argv)).toEqual([['result', '--job-id', jobId]]);
  });

  it('cancel falls back to `abort`, and its failure is returned as it is', async () => {
    process.env['ORCHESJOB_STANDIN_JOB_SECONDS'] = '30';
    const jobId = await startJob('k');
    const stopped = await client().cancel(jobId);
    expect(stopped.code).toBe(0);
    expect(JSON.parse(stopped.stdout)).toMatchObject({ job_id: jobId, status: 'ABORTED', aborted: true });
    const again = await client().cancel(jobId);
    expect(again).toEqual({ code: 4, signal: null, stdout: '', stderr: `orchesjob: Job is not running: ${jobId} status=ABORTED\n` });
    expect(invocations().slice(1).map((i) => i.argv)).toEqual([
      ['cancel', '--job-id', jobId],
      ['abort', '--job-id', jobId],
      ['cancel', '--job-id', jobId],
      ['abort', '--job-id', jobId],
    ]);
  });

  it('an exit 2 that is not an unknown subcommand is not a reason to fall back', async () => {
    process.env['ORCHESJOB_STANDIN_ACCEPT_RESULT_CANCEL'] = '1';
    const outcome = await client().cancel('a/b');
    expect(outcome).toEqual({ code: 2, signal: null, stdout: '', stderr: 'orchesjob: Invalid job_id: contains path separator\n' });
    expect(invocations().map((i) => i.argv)).toEqual([['cancel', '--job-id', 'a/b']]);
  });

  it('a missing executable is a general error naming it', async () => {
    const bin = path.join(dir, 'no-such-orchesjob');
    await expect(new OrchesjobClient(bin).result('j')).rejects.toMatchObject({
      code: 'GENERAL',
      message: `orchesjob executable not found: ${bin} (set --orchesjob-bin or ORCHESJOB_BIN)`,
    });
  });
});

describe('OrchesjobClient: recovery and the start-up check', () => {
  it('finds a running start by its argv (through its #! interpreter) and kills it', async () => {
    fs.writeFileSync(path.join(dir, 'faults.json'), JSON.stringify({ '*': { mode: 'hang' } }));
    const c = client();
    const argv = c.startArgv([], spec('k'));
    const start = c.start(argv, 60_000);
    await waitFor(() => invocations().length === 1);
    const [invocation] = invocations();
    const pid = invocation?.pid ?? -1;
    strays.push(pid);
    expect(c.runningStarts(argv)).toEqual([pid]);
    expect(c.runningStarts(c.startArgv([], spec('another-key')))).toEqual([]);
    c.killStart(pid);
    const outcome = await start;
    expect(outcome).toMatchObject({ ok: false, exitCode: null });
    expect(!outcome.ok && outcome.error).toMatch(/\nkilled by SIGKILL\n/);
    expect(c.runningStarts(argv)).toEqual([]);
  });

  it('the start-up check passes where a child can be started', async () => {
    expect(await new OrchesjobClient(path.join(dir, 'no-such-orchesjob')).checkCanStartChild()).toBeNull();
  });
});
