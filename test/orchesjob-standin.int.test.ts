import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const STANDIN = path.join(HERE, 'support', 'orchesjob-standin.mjs');
const BENCH = path.join(HERE, '..', 'bench', 'orchesjob.sh');

type Env = Record<string, string | undefined>;
type Run = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number };
type Job = Record<string, unknown>;

let dir = '';

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orchesjob-standin-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function envFor(extra: Env = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ORCHESJOB_STANDIN_DIR: dir };
  for (const k of Object.keys(env)) if (k.startsWith('ORCHESJOB_STANDIN_') && k !== 'ORCHESJOB_STANDIN_DIR') delete env[k];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

function run(args: string[], extra: Env = {}): Run {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [STANDIN, ...args], { env: envFor(extra), encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

function runAsync(args: string[], extra: Env = {}): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [STANDIN, ...args], { env: envFor(extra) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 }));
  });
}

/** Parse the single JSON line a successful call prints. */
function json<T = Job>(r: Run): T {
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout.endsWith('\n')).toBe(true);
  expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
  return JSON.parse(r.stdout) as T;
}

function lines(name: string): Job[] {
  const p = path.join(dir, name);
  if (!fs.existsSync(p)) return [];
  return fs
    .readFileSync(p, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l: string) => JSON.parse(l) as Job);
}

const executions = (runKey?: string) => lines('executions.jsonl').filter((e) => runKey === undefined || e.run_key === runKey);
const writeFaults = (faults: unknown) => fs.writeFileSync(path.join(dir, 'faults.json'), JSON.stringify(faults));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, ms = 10_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(20);
  }
}

const START_FIELDS_11 = [
  'accepted', 'existing', 'mode', 'strict', 'strict_override_used', 'run_key', 'job_id', 'pid', 'command', 'status',
  'stdout_file', 'stderr_file', 'exit_code', 'started_at', 'started_at_iso', 'finished_at', 'finished_at_iso',
  'attempt_no', 'rerun_of_job_id',
];
const STATUS_FIELDS_10 = ['job_id', 'run_key', 'command', 'pid', 'status', 'exit_code', 'stdout_file', 'stderr_file', 'started_at', 'finished_at'];
const START_FIELDS_10 = ['accepted', 'existing', 'mode', 'strict', 'run_key', 'job_id', 'pid', 'command', 'status', 'stdout_file', 'stderr_file', 'exit_code', 'started_at', 'finished_at'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TOP_CHOICES = "'start', 'status', 'logs', 'clean', 'abort', 'unlock', 'rerun', '_worker'";

describe('orchesjob stand-in: setup and logging', () => {
  it('exits 1 with a clear message when ORCHESJOB_STANDIN_DIR is unset', () => {
    const r = run(['status', '--run-key', 'k'], { ORCHESJOB_STANDIN_DIR: undefined });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ORCHESJOB_STANDIN_DIR is not set/);
    expect(r.stdout).toBe('');
  });

  it('logs every invocation to invocations.jsonl, even failing ones', () => {
    run(['start', '--run-key', 'k', '--', 'echo', 'hi there']);
    run(['status', '--job-id', 'nope']);
    run(['result', '--job-id', 'x']);
    const inv = lines('invocations.jsonl');
    expect(inv.map((l) => l.argv)).toEqual([
      ['start', '--run-key', 'k', '--', 'echo', 'hi there'],
      ['status', '--job-id', 'nope'],
      ['result', '--job-id', 'x'],
    ]);
    for (const l of inv) {
      expect(Number.isInteger(l.pid)).toBe(true);
      expect(Math.abs((l.ts_ms as number) - Date.now())).toBeLessThan(60_000);
    }
  });

  it('prints its version like argparse', () => {
    expect(run(['--version']).stdout).toBe('orchesjob 1.1.0\n');
    expect(run(['--version'], { ORCHESJOB_STANDIN_FORMAT: '1.0' }).stdout).toBe('orchesjob 1.0.2\n');
  });
});

describe('orchesjob stand-in: start / status / abort (format 1.1)', () => {
  it('start creates a job, prints one JSON line and records the execution', () => {
    const d = json(run(['start', '--run-key', 'k1', '--', 'echo', 'a', 'b']));
    for (const f of START_FIELDS_11) expect(d).toHaveProperty(f);
    expect(d).toMatchObject({
      accepted: true, existing: false, mode: 'async', strict: false, strict_override_used: false,
      run_key: 'k1', command: ['echo', 'a', 'b'], status: 'RUNNING', exit_code: null, finished_at: null, attempt_no: 1,
    });
    expect(d.job_id).toMatch(UUID);
    expect(Number.isInteger(d.started_at)).toBe(true);
    expect(Math.abs((d.started_at as number) - Date.now() / 1000)).toBeLessThan(60);
    expect(new Date(d.started_at_iso as string).getTime() / 1000).toBe(d.started_at);
    expect(fs.existsSync(path.join(dir, 'jobs', `${d.job_id}.json`))).toBe(true);
    expect(executions()).toEqual([{ job_id: d.job_id, run_key: 'k1', command: ['echo', 'a', 'b'], ts_ms: expect.any(Number) }]);
  });

  it('with the default duration 0 every start is a new execution; status shows SUCCEEDED', () => {
    const d1 = json(run(['start', '--run-key', 'k', '--', 'true']));
    const d2 = json(run(['start', '--run-key', 'k', '--', 'true']));
    expect(d2.job_id).not.toBe(d1.job_id);
    expect(d2).toMatchObject({ accepted: true, existing: false, attempt_no: 2, rerun_of_job_id: d1.job_id });
    expect(executions('k')).toHaveLength(2);

    const s = json(run(['status', '--run-key', 'k']));
    expect(s).toMatchObject({ job_id: d2.job_id, status: 'SUCCEEDED', exit_code: 0 });
    expect(s.finished_at).toBeGreaterThanOrEqual(s.started_at as number);
    expect(s).not.toHaveProperty('accepted');
    expect(json(run(['status', '--job-id', d1.job_id as string]))).toMatchObject({ job_id: d1.job_id, status: 'SUCCEEDED' });

    const all = json<Job[]>(run(['status', '--run-key', 'k', '--all']));
    expect(all.map((j) => j.job_id)).toEqual([d2.job_id, d1.job_id]);
  });

  it('while a job is active, start returns it with existing:true and creates nothing', () => {
    const env = { ORCHESJOB_STANDIN_JOB_SECONDS: '30' };
    const d1 = json(run(['start', '--run-key', 'k', '--', 'sleep', '30'], env));
    const d2 = json(run(['start', '--run-key', 'k', '--', 'other'], env));
    expect(d2).toMatchObject({ accepted: false, existing: true, job_id: d1.job_id, status: 'RUNNING', command: ['sleep', '30'] });
    expect(executions('k')).toHaveLength(1);
    expect(json(run(['status', '--run-key', 'k']))).toMatchObject({ status: 'RUNNING', finished_at: null });
  });

  it('a fractional duration ends on time; --sync waits for the end', () => {
    const env = { ORCHESJOB_STANDIN_JOB_SECONDS: '0.4' };
    const d = json(run(['start', '--run-key', 'k', '--', 'x'], env));
    expect(json(run(['status', '--job-id', d.job_id as string])).status).toBe('RUNNING');
    const r = run(['start', '--run-key', 'k', '--sync', '--', 'x'], env);
    const s = json(r);
    expect(s).toMatchObject({ job_id: d.job_id, existing: true, mode: 'sync', status: 'SUCCEEDED', exit_code: 0 });
    const r2 = run(['start', '--run-key', 'k', '--sync', '--', 'x'], env);
    expect(json(r2)).toMatchObject({ existing: false, mode: 'sync', status: 'SUCCEEDED', attempt_no: 2 });
    expect(r2.ms).toBeGreaterThanOrEqual(400);
  });

  it('--strict returns the finished job instead of starting again (real orchesjob behaviour); unlock allows one more', () => {
    const d1 = json(run(['start', '--run-key', 'k', '--strict', '--', 'x']));
    expect(d1).toMatchObject({ accepted: true, strict: true });
    const d2 = json(run(['start', '--run-key', 'k', '--strict', '--', 'x']));
    expect(d2).toMatchObject({ accepted: false, existing: true, strict: true, job_id: d1.job_id, status: 'SUCCEEDED' });
    expect(executions('k')).toHaveLength(1);

    expect(json(run(['unlock', '--run-key', 'k', '--reason', 'again']))).toMatchObject({ unlocked: true, run_key: 'k', reason: 'again' });
    const d3 = json(run(['start', '--run-key', 'k', '--strict', '--', 'x']));
    expect(d3).toMatchObject({ accepted: true, strict_override_used: true, rerun_of_job_id: d1.job_id, rerun_reason: 'again', attempt_no: 2 });
    expect(json(run(['start', '--run-key', 'k', '--strict', '--', 'x']))).toMatchObject({ existing: true, job_id: d3.job_id });
    expect(executions('k')).toHaveLength(2);
  });

  it('abort stops a running job; aborting again is exit 4; then start creates a new job', () => {
    const env = { ORCHESJOB_STANDIN_JOB_SECONDS: '30' };
    const d = json(run(['start', '--run-key', 'k', '--', 'x'], env));
    const a = json(run(['abort', '--run-key', 'k', '--reason', 'stop it'], env));
    expect(a).toMatchObject({ job_id: d.job_id, status: 'ABORTED', aborted: true, abort_reason: 'stop it', exit_code: null });
    expect(a.aborted_at).not.toBeNull();
    expect(a.finished_at).not.toBeNull();
    expect(json(run(['status', '--job-id', d.job_id as string], env)).status).toBe('ABORTED');

    const again = run(['abort', '--job-id', d.job_id as string], env);
    expect(again.code).toBe(4);
    expect(again.stderr).toBe(`orchesjob: Job is not running: ${d.job_id} status=ABORTED\n`);

    const d2 = json(run(['start', '--run-key', 'k', '--', 'x'], env));
    expect(d2).toMatchObject({ accepted: true, rerun_of_job_id: d.job_id });
  });

  it('unknown job or run key: exit 3', () => {
    const cases: [string[], string][] = [
      [['status', '--job-id', 'no-such-job'], 'orchesjob: Job not found: no-such-job\n'],
      [['status', '--run-key', 'no-such-key'], 'orchesjob: run_key not found\n'],
      [['status', '--run-key', 'no-such-key', '--all'], 'orchesjob: No jobs found for run_key: no-such-key\n'],
      [['abort', '--run-key', 'no-such-key'], 'orchesjob: run_key not found\n'],
      [['abort', '--job-id', 'no-such-job'], 'orchesjob: Job not found: no-such-job\n'],
    ];
    for (const [args, stderr] of cases) {
      const r = run(args);
      expect(r.code, args.join(' ')).toBe(3);
      expect(r.stderr).toBe(stderr);
      expect(r.stdout).toBe('');
    }
  });

  it('status --running lists active jobs only; logs prints the (empty) log', () => {
    json(run(['start', '--run-key', 'done', '--', 'x']));
    const d = json(run(['start', '--run-key', 'busy', '--', 'x'], { ORCHESJOB_STANDIN_JOB_SECONDS: '30' }));
    expect(json<Job[]>(run(['status', '--running'])).map((j) => j.job_id)).toEqual([d.job_id]);
    const l = run(['logs', '--run-key', 'busy', '--stream', 'stderr']);
    expect([l.code, l.stdout, l.stderr]).toEqual([0, '', '']);
  });
});

describe('orchesjob stand-in: format 1.0', () => {
  it('uses ISO strings and the 1.0 field set', () => {
    const env = { ORCHESJOB_STANDIN_FORMAT: '1.0' };
    const d = json(run(['start', '--run-key', 'k', '--', 'x'], env));
    expect(Object.keys(d)).toEqual(START_FIELDS_10);
    expect(typeof d.started_at).toBe('string');
    expect(d.started_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?[+-]\d\d:\d\d$/);
    expect(Math.abs(new Date(d.started_at as string).getTime() - Date.now())).toBeLessThan(60_000);
    const s = json(run(['status', '--job-id', d.job_id as string], env));
    expect(Object.keys(s)).toEqual(STATUS_FIELDS_10);
    expect(s.status).toBe('SUCCEEDED');
    expect(typeof s.finished_at).toBe('string');
  });

  it('rejects an unknown format value', () => {
    const r = run(['status', '--run-key', 'k'], { ORCHESJOB_STANDIN_FORMAT: '2.0' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ORCHESJOB_STANDIN_FORMAT/);
  });
});

describe('orchesjob stand-in: argparse errors (exit 2)', () => {
  it('result and cancel do not exist', () => {
    for (const sub of ['result', 'cancel']) {
      const r = run([sub, '--job-id', 'x']);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        'usage: orchesjob [-h] [--version]\n' +
          '                 {start,status,logs,clean,abort,unlock,rerun,_worker} ...\n' +
          `orchesjob: error: argument subcommand: invalid choice: '${sub}' (choose from ${TOP_CHOICES})\n`,
      );
    }
  });

  it('reports argparse-style errors for bad arguments', () => {
    const cases: [string[], RegExp][] = [
      [[], /^usage: orchesjob .*\norchesjob: error: the following arguments are required: subcommand\n$/s],
      [['start', '--', 'x'], /^usage: orchesjob start .*\norchesjob start: error: the following arguments are required: --run-key\n$/s],
      [['start', '--run-key'], /orchesjob start: error: argument --run-key: expected one argument\n$/],
      [['status'], /orchesjob status: error: one of the arguments --run-key --job-id --running is required\n$/],
      [['status', '--run-key', 'a', '--job-id', 'b'], /orchesjob status: error: argument --job-id: not allowed with argument --run-key\n$/],
      [['status', '--run-key', 'a', '--bogus'], /^usage: orchesjob \[-h\].*\norchesjob: error: unrecognized arguments: --bogus\n$/s],
      [['abort', '--job-id', 'j', '--grace-seconds', 'soon'], /orchesjob abort: error: argument --grace-seconds: invalid float value: 'soon'\n$/],
      [['start', '--s', 'k', '--', 'x'], /ambiguous option: --s could match --sync, --start-timeout, --strict\n$/],
      [['start', '--run-key', 'k'], /^orchesjob: command is required \(provide it after --\)\n$/],
      [['status', '--job-id', 'a/b'], /^orchesjob: Invalid job_id: contains path separator\n$/],
      [['status', '--job-id', 'x', '--all'], /^orchesjob: status --all requires --run-key\n$/],
    ];
    for (const [args, re] of cases) {
      const r = run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(re);
    }
    expect(executions()).toHaveLength(0);
  });

  it('accepts --run-key=K, abbreviations and options after the command as part of it', () => {
    const d = json(run(['start', '--run=k', '--sync', 'cmd', '--strict']));
    expect(d).toMatchObject({ run_key: 'k', mode: 'sync', strict: false, command: ['cmd', '--strict'] });
  });
});

describe('orchesjob stand-in: ORCHESJOB_STANDIN_ACCEPT_RESULT_CANCEL=1', () => {
  const env = { ORCHESJOB_STANDIN_ACCEPT_RESULT_CANCEL: '1', ORCHESJOB_STANDIN_JOB_SECONDS: '30' };

  it('accepts result and cancel', () => {
    const d = json(run(['start', '--run-key', 'k', '--', 'x'], env));
    expect(json(run(['result', '--job-id', d.job_id as string], env))).toEqual({
      job_id: d.job_id, run_key: 'k', status: 'RUNNING', exit_code: null, stdout: '', stderr: '',
    });
    expect(json(run(['cancel', '--job-id', d.job_id as string], env))).toMatchObject({ job_id: d.job_id, status: 'ABORTED' });
    expect(run(['cancel', '--job-id', d.job_id as string], env).code).toBe(4);
    expect(run(['result', '--job-id', 'nope'], env).code).toBe(3);
  });
});

describe('orchesjob stand-in: faults.json', () => {
  it('exit: prints stderr, exits with the code, creates no job', () => {
    writeFaults({ k: { mode: 'exit', code: 7, stderr: 'boom' } });
    const r = run(['start', '--run-key', 'k', '--', 'x']);
    expect([r.code, r.stdout, r.stderr]).toEqual([7, '', 'boom\n']);
    expect(executions()).toHaveLength(0);
    json(run(['start', '--run-key', 'other', '--', 'x'])); // other keys unaffected
    expect(executions()).toHaveLength(1);
  });

  it('non-json and no-job-id: exit 0, no job', () => {
    writeFaults({ a: { mode: 'non-json' }, b: { mode: 'no-job-id' } });
    const a = run(['start', '--run-key', 'a', '--', 'x']);
    expect([a.code, a.stdout]).toEqual([0, 'this is not json\n']);
    const b = run(['start', '--run-key', 'b', '--', 'x']);
    expect(b.code).toBe(0);
    expect(JSON.parse(b.stdout)).not.toHaveProperty('job_id');
    expect(executions()).toHaveLength(0);
  });

  it('times: applies to the first N starts of each key only; "*" matches any key; exact key wins', () => {
    writeFaults({ '*': { mode: 'exit', code: 9, times: 2 }, special: { mode: 'non-json', times: 1 } });
    expect(run(['start', '--run-key', 'k', '--', 'x']).code).toBe(9);
    expect(run(['start', '--run-key', 'k', '--', 'x']).code).toBe(9);
    expect(json(run(['start', '--run-key', 'k', '--', 'x'])).accepted).toBe(true);
    expect(run(['start', '--run-key', 'j', '--', 'x']).code).toBe(9);
    expect(run(['start', '--run-key', 'special', '--', 'x']).stdout).toBe('this is not json\n');
    expect(json(run(['start', '--run-key', 'special', '--', 'x'])).accepted).toBe(true);
    expect(executions().map((e) => e.run_key)).toEqual(['k', 'special']);
  });

  it('slow: waits before creating the job, then behaves normally', () => {
    writeFaults({ k: { mode: 'slow', ms: 600 } });
    const r = run(['start', '--run-key', 'k', '--', 'x']);
    expect(json(r).accepted).toBe(true);
    expect(r.ms).toBeGreaterThanOrEqual(600);
    expect(executions('k')).toHaveLength(1);
  });

  it('hang: never answers, creates no job, dies on SIGTERM', async () => {
    writeFaults({ k: { mode: 'hang' } });
    const child = spawn(process.execPath, [STANDIN, 'start', '--run-key', 'k', '--', 'x'], { env: envFor() });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const closed = new Promise<[number | null, string | null]>((r) => child.on('close', (c, s) => r([c, s])));
    await waitFor(() => lines('invocations.jsonl').length === 1);
    await sleep(400);
    expect(child.exitCode).toBeNull();
    child.kill('SIGTERM');
    expect(await closed).toEqual([null, 'SIGTERM']);
    expect(stdout).toBe('');
    expect(executions()).toHaveLength(0);
    // the lock was not left behind: the next start of k (fault removed) works at once
    writeFaults({});
    expect(json(run(['start', '--run-key', 'k', '--', 'x'])).accepted).toBe(true);
  });

  it('die-after-create: job recorded, process killed by SIGKILL without output', () => {
    writeFaults({ k: { mode: 'die-after-create', times: 1, job_seconds: 30 } });
    const r = run(['start', '--run-key', 'k', '--', 'x']);
    expect([r.code, r.signal, r.stdout]).toEqual([null, 'SIGKILL', '']);
    const ex = executions('k');
    expect(ex).toHaveLength(1);
    const jobId = ex[0]?.job_id;
    expect(fs.existsSync(path.join(dir, 'jobs', `${String(jobId)}.json`))).toBe(true);
    // a retry finds the job that was created (still running)
    expect(json(run(['start', '--run-key', 'k', '--', 'x']))).toMatchObject({ existing: true, job_id: jobId });
  });

  it('hang-after-create: job recorded, no output until killed', async () => {
    writeFaults({ k: { mode: 'hang-after-create' } });
    const child = spawn(process.execPath, [STANDIN, 'start', '--run-key', 'k', '--', 'x'], { env: envFor() });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const closed = new Promise<[number | null, string | null]>((r) => child.on('close', (c, s) => r([c, s])));
    await waitFor(() => executions('k').length === 1);
    await sleep(200);
    expect(child.exitCode).toBeNull();
    child.kill('SIGKILL');
    expect(await closed).toEqual([null, 'SIGKILL']);
    expect(stdout).toBe('');
    expect(json(run(['status', '--run-key', 'k'])).job_id).toBe(executions('k')[0]?.job_id);
  });

  it('job_exit_code makes the job end FAILED', () => {
    writeFaults({ k: { mode: 'none', job_exit_code: 3 } });
    const d = json(run(['start', '--run-key', 'k', '--sync', '--', 'x']));
    expect(d).toMatchObject({ status: 'FAILED', exit_code: 3 });
  });

  it('an unknown mode or broken faults.json is exit 1', () => {
    writeFaults({ k: { mode: 'explode' } });
    expect(run(['start', '--run-key', 'k', '--', 'x'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/unknown fault mode "explode"/) });
    fs.writeFileSync(path.join(dir, 'faults.json'), '{nope');
    expect(run(['start', '--run-key', 'k', '--', 'x']).code).toBe(1);
  });
});

describe('orchesjob stand-in: concurrency and locking', () => {
  it('concurrent starts of one key create exactly one job', async () => {
    const env = { ORCHESJOB_STANDIN_JOB_SECONDS: '60' };
    const rs = await Promise.all(Array.from({ length: 16 }, () => runAsync(['start', '--run-key', 'same', '--', 'x'], env)));
    const ds = rs.map((r) => json(r));
    expect(new Set(ds.map((d) => d.job_id)).size).toBe(1);
    expect(ds.filter((d) => d.accepted)).toHaveLength(1);
    expect(executions('same')).toHaveLength(1);
  });

  it('concurrent starts of many keys: one job per key; with duration 0 no start is lost', async () => {
    const keys = Array.from({ length: 6 }, (_, i) => `key-${i}`);
    const rs = await Promise.all(keys.flatMap((k) => [0, 1, 2].map(() => runAsync(['start', '--run-key', k, '--', 'x']))));
    for (const r of rs) expect(json(r).accepted).toBe(true);
    expect(lines('invocations.jsonl')).toHaveLength(18);
    for (const k of keys) {
      expect(executions(k)).toHaveLength(3);
      expect(json<Job[]>(run(['status', '--run-key', k, '--all'])).map((j) => j.attempt_no)).toEqual([3, 2, 1]);
    }
  });

  it('a lock held by a live process beyond the timeout is exit 5; a dead holder is ignored', () => {
    const hash = crypto.createHash('sha256').update('k').digest('hex').slice(0, 32);
    const lock = path.join(dir, 'locks', `${hash}.lock`);
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    fs.writeFileSync(lock, `${process.pid} ${Date.now()}`);
    const r = run(['start', '--run-key', 'k', '--', 'x'], { ORCHESJOB_STANDIN_LOCK_TIMEOUT_MS: '300' });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/^orchesjob: lock error: .*run_key: k\n$/);
    expect(executions()).toHaveLength(0);

    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    fs.writeFileSync(lock, `${dead.stdout} ${Date.now()}`);
    expect(json(run(['start', '--run-key', 'k', '--', 'x'])).accepted).toBe(true);
    expect(fs.existsSync(lock)).toBe(false);
  });
});

describe('bench/orchesjob.sh', () => {
  it('prints one start JSON line with a unique job id; other subcommands exit 2', () => {
    const sh = (args: string[]) => spawnSync(BENCH, args, { encoding: 'utf8' });
    const a = sh(['start', '--run-key', 'k"1', '--sync', '--', 'echo', 'a\\b']);
    const b = sh(['start', '--run-key', 'k"1', '--', 'echo']);
    expect([a.status, b.status]).toEqual([0, 0]);
    const da = JSON.parse(a.stdout);
    const db = JSON.parse(b.stdout);
    expect(da).toMatchObject({ accepted: true, existing: false, run_key: 'k"1', status: 'RUNNING', command: ['echo', 'a\\b'] });
    expect(da.job_id).not.toBe(db.job_id);
    expect(sh(['status', '--run-key', 'k']).status).toBe(2);
    expect(sh(['start', '--', 'x']).status).toBe(2);
  });
});
