#!/usr/bin/env node
/**
 * orchesjob stand-in — a simulated `orchesjob` CLI for tests and the demo.
 *
 * Written from the public behaviour of rmuraki/orchesjob (Python, argparse, SQLite):
 * same subcommands, option names, JSON field names, stderr messages ("orchesjob: ...")
 * and exit codes. Jobs are NOT executed: a job is RUNNING until started_at + duration,
 * then SUCCEEDED (exit_code 0); the status is computed whenever a job is read.
 * Plain Node 20 ESM, built-in modules only.
 *
 * Environment
 *   ORCHESJOB_STANDIN_DIR           state folder (required; exit 1 if unset). Created if missing.
 *   ORCHESJOB_STANDIN_FORMAT        "1.1" (default): started_at/finished_at/... are epoch seconds
 *                                   with *_iso twins; "1.0": they are ISO strings, 1.0 field set.
 *   ORCHESJOB_STANDIN_JOB_SECONDS   simulated job duration, may be fractional (default 0 = done at once).
 *   ORCHESJOB_STANDIN_ACCEPT_RESULT_CANCEL=1
 *                                   also accept `result (--job-id ID|--run-key K)` (prints
 *                                   {job_id,run_key,status,exit_code,stdout:"",stderr:""}) and
 *                                   `cancel (--job-id ID|--run-key K)` (same as abort). The real
 *                                   orchesjob has neither: argparse "invalid choice", exit 2.
 *   ORCHESJOB_STANDIN_LOCK_TIMEOUT_MS  how long to wait for a run-key lock before exit 5 (default 30000).
 *
 * State folder layout
 *   invocations.jsonl   one line per invocation, written first: {"argv":[...],"pid":N,"ts_ms":N}
 *   executions.jsonl    one line per job created: {"job_id","run_key","command","ts_ms"}
 *   jobs/<job_id>.json  job records
 *   runkeys/<h>.json    per run key: {run_key, job_ids (oldest first), current_job_id}
 *   locks/<h>.lock      per-run-key lock file (O_EXCL, holds "<pid> <ts_ms>"; stale when the pid is
 *                       dead or after 10 s).  <h> = first 32 hex chars of sha256(run_key).
 *   fault-counts/<h>.json, unlocks/<h>.json, logs/<job_id>.stdout|.stderr (empty files)
 *   faults.json         optional fault table, see below
 *
 * faults.json — read at every `start`: { "<run key>" | "*": { "mode": "...", "times": N?, ... } }
 *   An exact run key wins over "*". `times` (optional): apply only to the first N starts of that
 *   run key (counted per run key, under its lock, in fault-counts/). Modes:
 *     {"mode":"exit","code":7,"stderr":"boom","stdout":""?}  print, exit with code (default 1), no job
 *     {"mode":"non-json"}           print "this is not json", exit 0, no job
 *     {"mode":"no-job-id"}          print {"accepted":false}, exit 0, no job
 *     {"mode":"hang"}               sleep forever before creating a job (SIGTERM/SIGKILL end it)
 *     {"mode":"slow","ms":1500}     wait ms before creating the job, then behave normally
 *     {"mode":"die-after-create"}   create the job (jobs/, executions.jsonl), then SIGKILL itself
 *                                   without printing (shell sees 137)
 *     {"mode":"hang-after-create"}  create the job, then sleep forever without printing
 *     {"mode":"none"}               behave normally (useful with the job options below)
 *   Every mode that creates a job also honours "job_seconds": N (duration of that job, overrides
 *   ORCHESJOB_STANDIN_JOB_SECONDS) and "job_exit_code": N (non-zero => job ends FAILED).
 *   The *-after-create modes act only when that start really created a job (not for existing:true).
 *   To add a mode: add an entry to FAULT_MODES (before: runs before the job decision; afterCreate:
 *   runs after a job was created; both may exit, hang or return to continue normally).
 *
 * Behaviour summary (mirrors orchesjob 1.1)
 *   start --run-key K [--sync] [--strict] [--start-timeout S] -- CMD...
 *     active job for K            -> that job, accepted:false, existing:true (no new job)
 *     finished job + --strict     -> that finished job, accepted:false, existing:true, exit 0
 *                                    (the real orchesjob does not refuse; `unlock` allows one more)
 *     otherwise                   -> new job, accepted:true; async start reports status RUNNING
 *                                    (as the real one does once the target is spawned); --sync waits
 *                                    until the job is finished and reports its final status.
 *   status (--job-id ID | --run-key K | --running) [--all]   --all: array newest first
 *   abort  (--job-id ID | --run-key K) [--reason R] [--grace-seconds S]   -> status ABORTED
 *   logs   (--job-id ID | --run-key K) [--stream stdout|stderr]           -> empty output
 *   unlock --run-key K [--reason R] [--ttl 30m]   rerun (--job-id ID | --run-key K) [--sync] [--reason R]
 *   clean, _worker: accepted by the parser, not simulated (exit 1).
 * Exit codes: 0 ok, 1 error, 2 invalid arguments, 3 job / run key not found, 4 invalid state,
 *   5 lock error.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const EXIT_OK = 0;
const EXIT_ERROR = 1;
const EXIT_INVALID_ARGS = 2;
const EXIT_NOT_FOUND = 3;
const EXIT_INVALID_STATE = 4;
const EXIT_LOCK_ERROR = 5;

const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'LOST', 'CANCELLED', 'ABORTED']);
const ACTIVE = new Set(['STARTING', 'RUNNING']);
const LOCK_STALE_MS = 10_000;

class Exit extends Error {
  constructor(code) {
    super(`exit ${code}`);
    this.code = code;
  }
}

/** Print "orchesjob: msg" on stderr and exit with code. */
function die(msg, code = EXIT_ERROR) {
  process.stderr.write(`orchesjob: ${msg}\n`);
  throw new Exit(code);
}

function standinDie(msg) {
  process.stderr.write(`orchesjob-standin: ${msg}\n`);
  throw new Exit(EXIT_ERROR);
}

function out(data) {
  process.stdout.write(`${JSON.stringify(data)}\n`);
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms) {
  if (ms > 0) Atomics.wait(sleepCell, 0, 0, ms);
}

function hangForever() {
  setInterval(() => {}, 1 << 30);
  return new Promise(() => {});
}

// ---------------------------------------------------------------------------
// Setup (runs before anything else)
// ---------------------------------------------------------------------------

const argv = process.argv.slice(2);
const DIR = process.env.ORCHESJOB_STANDIN_DIR;
if (!DIR) {
  process.stderr.write(
    'orchesjob-standin: ORCHESJOB_STANDIN_DIR is not set (it must name the stand-in state folder)\n',
  );
  process.exit(EXIT_ERROR);
}
fs.mkdirSync(path.join(DIR, 'jobs'), { recursive: true });
fs.appendFileSync(
  path.join(DIR, 'invocations.jsonl'),
  `${JSON.stringify({ argv, pid: process.pid, ts_ms: Date.now() })}\n`,
);

const FORMAT = process.env.ORCHESJOB_STANDIN_FORMAT || '1.1';
const ACCEPT_RESULT_CANCEL = process.env.ORCHESJOB_STANDIN_ACCEPT_RESULT_CANCEL === '1';

// ---------------------------------------------------------------------------
// Small file store
// ---------------------------------------------------------------------------

const P = {
  job: (id) => path.join(DIR, 'jobs', `${id}.json`),
  runKey: (k) => path.join(DIR, 'runkeys', `${keyHash(k)}.json`),
  lock: (k) => path.join(DIR, 'locks', `${keyHash(k)}.lock`),
  faultCount: (k) => path.join(DIR, 'fault-counts', `${keyHash(k)}.json`),
  unlock: (k) => path.join(DIR, 'unlocks', `${keyHash(k)}.json`),
  log: (id, stream) => path.join(DIR, 'logs', `${id}.${stream}`),
};

function keyHash(runKey) {
  return crypto.createHash('sha256').update(runKey).digest('hex').slice(0, 32);
}

function readJson(p) {
  try {
    return JSON.parse(fs.readFileSync(p, 'utf8'));
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw e;
  }
}

function writeJsonAtomic(p, obj) {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  const tmp = `${p}.tmp-${process.pid}-${crypto.randomUUID()}`;
  fs.writeFileSync(tmp, JSON.stringify(obj));
  fs.renameSync(tmp, p);
}

function pidAlive(pid) {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** Run fn while holding the lock of runKey (O_EXCL lock file, retried with a short sleep). */
function withLock(runKey, fn) {
  const lockPath = P.lock(runKey);
  fs.mkdirSync(path.dirname(lockPath), { recursive: true });
  const timeoutMs = Number(process.env.ORCHESJOB_STANDIN_LOCK_TIMEOUT_MS || 30_000);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = fs.openSync(lockPath, 'wx');
      fs.writeSync(fd, `${process.pid} ${Date.now()}`);
      fs.closeSync(fd);
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    if (lockIsStale(lockPath)) {
      const aside = `${lockPath}.stale-${crypto.randomUUID()}`;
      try {
        fs.renameSync(lockPath, aside);
        fs.rmSync(aside, { force: true });
      } catch {
        /* someone else took care of it */
      }
      continue;
    }
    if (Date.now() >= deadline) {
      die(`lock error: timed out after ${timeoutMs} ms waiting for the lock of run_key: ${runKey}`, EXIT_LOCK_ERROR);
    }
    sleepSync(3 + Math.floor(Math.random() * 12));
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lockPath, { force: true });
  }
}

function lockIsStale(lockPath) {
  try {
    const st = fs.statSync(lockPath);
    if (Date.now() - st.mtimeMs > LOCK_STALE_MS) return true;
    const pid = Number.parseInt(fs.readFileSync(lockPath, 'utf8').split(' ')[0], 10);
    // An empty file is a lock being written right now: not stale.
    return Number.isInteger(pid) && !pidAlive(pid);
  } catch {
    return false; // vanished meanwhile: just retry
  }
}

function readJob(jobId) {
  return readJson(P.job(jobId));
}

function runKeyIndex(runKey) {
  return readJson(P.runKey(runKey));
}

function defaultJobSeconds() {
  const raw = process.env.ORCHESJOB_STANDIN_JOB_SECONDS;
  if (raw === undefined || raw === '') return 0;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) standinDie(`ORCHESJOB_STANDIN_JOB_SECONDS must be a number >= 0, got ${JSON.stringify(raw)}`);
  return n;
}

/** Create a job for runKey. Call with the run-key lock held. */
function createJob({ runKey, command, index, rerunOf, rerunReason, jobSeconds, jobExitCode }) {
  const jobId = crypto.randomUUID();
  const now = Date.now();
  const job = {
    job_id: jobId,
    run_key: runKey,
    command,
    creator_pid: process.pid,
    started_at_ms: now,
    duration_ms: Math.round((jobSeconds ?? defaultJobSeconds()) * 1000),
    final_exit_code: jobExitCode ?? 0,
    attempt_no: (index?.job_ids.length ?? 0) + 1,
    rerun_of_job_id: rerunOf ?? null,
    rerun_reason: rerunReason ?? null,
    aborted_at_ms: null,
    abort_reason: null,
    stdout_file: P.log(jobId, 'stdout'),
    stderr_file: P.log(jobId, 'stderr'),
  };
  writeJsonAtomic(P.job(jobId), job);
  fs.mkdirSync(path.join(DIR, 'logs'), { recursive: true });
  fs.writeFileSync(job.stdout_file, '');
  fs.writeFileSync(job.stderr_file, '');
  writeJsonAtomic(P.runKey(runKey), {
    run_key: runKey,
    job_ids: [...(index?.job_ids ?? []), jobId],
    current_job_id: jobId,
  });
  fs.appendFileSync(
    path.join(DIR, 'executions.jsonl'),
    `${JSON.stringify({ job_id: jobId, run_key: runKey, command, ts_ms: now })}\n`,
  );
  return job;
}

/** Status of a job at nowMs: { status, exit_code, finished_ms }. */
function view(job, nowMs = Date.now()) {
  if (job.aborted_at_ms != null) return { status: 'ABORTED', exit_code: null, finished_ms: job.aborted_at_ms };
  const end = job.started_at_ms + job.duration_ms;
  if (nowMs < end) return { status: 'RUNNING', exit_code: null, finished_ms: null };
  const code = job.final_exit_code ?? 0;
  return { status: code === 0 ? 'SUCCEEDED' : 'FAILED', exit_code: code, finished_ms: end };
}

// ---------------------------------------------------------------------------
// Output formats
// ---------------------------------------------------------------------------

function pad(n, w = 2) {
  return String(n).padStart(w, '0');
}

/** Local-time ISO 8601 with offset, like Python's datetime.astimezone().isoformat(). */
function localIso(ms, withFraction) {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const base = new Date(ms + off * 60_000).toISOString().slice(0, 19);
  const frac = withFraction && ms % 1000 !== 0 ? `.${pad(ms % 1000, 3)}000` : '';
  const a = Math.abs(off);
  return `${base}${frac}${off >= 0 ? '+' : '-'}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

/** Put timestamp field `name` (and in 1.1 its `name_iso` twin) on o. */
function putTs(o, name, ms) {
  if (FORMAT === '1.0') {
    o[name] = ms == null ? null : localIso(ms, true);
  } else {
    const secs = ms == null ? null : Math.floor(ms / 1000);
    o[name] = secs;
    o[`${name}_iso`] = secs == null ? null : localIso(secs * 1000, false);
  }
}

function formatJob(job, v = view(job)) {
  if (FORMAT === '1.0') {
    const o = {
      job_id: job.job_id,
      run_key: job.run_key,
      command: job.command,
      pid: job.creator_pid,
      status: v.status,
      exit_code: v.exit_code,
      stdout_file: job.stdout_file,
      stderr_file: job.stderr_file,
    };
    putTs(o, 'started_at', job.started_at_ms);
    putTs(o, 'finished_at', v.finished_ms);
    return o;
  }
  const o = {
    job_id: job.job_id,
    run_key: job.run_key,
    command: job.command,
    pid: job.creator_pid,
    pid_kind: 'target',
    worker_pid: null,
    target_pid: job.creator_pid,
    status: v.status,
    exit_code: v.exit_code,
    stdout_file: job.stdout_file,
    stderr_file: job.stderr_file,
    attempt_no: job.attempt_no,
    rerun_of_job_id: job.rerun_of_job_id,
    rerun_reason: job.rerun_reason,
    abort_reason: job.abort_reason,
  };
  putTs(o, 'started_at', job.started_at_ms);
  putTs(o, 'finished_at', v.finished_ms);
  putTs(o, 'updated_at', Math.max(job.started_at_ms, v.finished_ms ?? 0));
  putTs(o, 'aborted_at', job.aborted_at_ms);
  return o;
}

function startResponse(job, v, { existing, mode, strict, strictOverrideUsed = false }) {
  if (FORMAT === '1.0') {
    const o = {
      accepted: !existing,
      existing,
      mode,
      strict,
      run_key: job.run_key,
      job_id: job.job_id,
      pid: job.creator_pid,
      command: job.command,
      status: v.status,
      stdout_file: job.stdout_file,
      stderr_file: job.stderr_file,
      exit_code: v.exit_code,
    };
    putTs(o, 'started_at', job.started_at_ms);
    putTs(o, 'finished_at', v.finished_ms);
    return o;
  }
  return {
    ...formatJob(job, v),
    accepted: !existing,
    existing,
    mode,
    strict,
    strict_override_used: strictOverrideUsed,
  };
}

// ---------------------------------------------------------------------------
// argparse look-alike
// ---------------------------------------------------------------------------

const flag = { value: false };
const val = (metavar, extra = {}) => ({ value: true, metavar, ...extra });
const RK_JID = { '--run-key': val('RUN_KEY'), '--job-id': val('JOB_ID') };

const COMMANDS = {
  start: {
    usage: `usage: orchesjob start [-h] --run-key RUN_KEY [--sync]
                       [--start-timeout START_TIMEOUT] [--strict]
                       ...`,
    options: { '--run-key': val('RUN_KEY', { required: true }), '--sync': flag, '--start-timeout': val('START_TIMEOUT', { float: true }), '--strict': flag },
    remainder: true,
    run: cmdStart,
  },
  status: {
    usage: `usage: orchesjob status [-h] (--run-key RUN_KEY | --job-id JOB_ID | --running)
                        [--all]`,
    options: { ...RK_JID, '--running': flag, '--all': flag },
    group: ['--run-key', '--job-id', '--running'],
    run: cmdStatus,
  },
  logs: {
    usage: `usage: orchesjob logs [-h] (--run-key RUN_KEY | --job-id JOB_ID)
                      [--stream {stdout,stderr}]`,
    options: { ...RK_JID, '--stream': val('STREAM', { choices: ['stdout', 'stderr'] }) },
    group: ['--run-key', '--job-id'],
    run: cmdLogs,
  },
  clean: {
    usage: `usage: orchesjob clean [-h] [--before DATETIME] [--after DATETIME] [--all]
                       [--job-id JOB_ID] [--run-key RUN_KEY] [--dry-run]`,
    options: { '--before': val('DATETIME'), '--after': val('DATETIME'), '--all': flag, ...RK_JID, '--dry-run': flag },
    run: () => standinDie("'clean' is not simulated by the stand-in"),
  },
  abort: {
    usage: `usage: orchesjob abort [-h] (--run-key RUN_KEY | --job-id JOB_ID)
                       [--reason REASON] [--grace-seconds GRACE_SECONDS]`,
    options: { ...RK_JID, '--reason': val('REASON'), '--grace-seconds': val('GRACE_SECONDS', { float: true }) },
    group: ['--run-key', '--job-id'],
    run: cmdAbort,
  },
  unlock: {
    usage: `usage: orchesjob unlock [-h] --run-key RUN_KEY [--reason REASON] [--ttl TTL]`,
    options: { '--run-key': val('RUN_KEY', { required: true }), '--reason': val('REASON'), '--ttl': val('TTL') },
    run: cmdUnlock,
  },
  rerun: {
    usage: `usage: orchesjob rerun [-h] (--run-key RUN_KEY | --job-id JOB_ID) [--sync]
                       [--start-timeout START_TIMEOUT] [--reason REASON]`,
    options: { ...RK_JID, '--sync': flag, '--start-timeout': val('START_TIMEOUT', { float: true }), '--reason': val('REASON') },
    group: ['--run-key', '--job-id'],
    run: cmdRerun,
  },
  _worker: {
    usage: `usage: orchesjob _worker [-h] --job-id JOB_ID`,
    options: { '--job-id': val('JOB_ID', { required: true }) },
    run: () => standinDie("'_worker' is not simulated by the stand-in"),
  },
};
if (ACCEPT_RESULT_CANCEL) {
  COMMANDS.result = {
    usage: `usage: orchesjob result [-h] (--run-key RUN_KEY | --job-id JOB_ID)`,
    options: { ...RK_JID },
    group: ['--run-key', '--job-id'],
    run: cmdResult,
  };
  COMMANDS.cancel = {
    usage: `usage: orchesjob cancel [-h] (--run-key RUN_KEY | --job-id JOB_ID)`,
    options: { ...RK_JID, '--reason': val('REASON') },
    group: ['--run-key', '--job-id'],
    run: cmdAbort,
  };
}

const CHOICES = Object.keys(COMMANDS);
const TOP_USAGE = `usage: orchesjob [-h] [--version]\n                 {${CHOICES.join(',')}} ...`;
const VERSION = FORMAT === '1.0' ? '1.0.2' : '1.1.0';

function argError(usage, prog, msg) {
  process.stderr.write(`${usage}\n${prog}: error: ${msg}\n`);
  throw new Exit(EXIT_INVALID_ARGS);
}

function looksLikeOption(s) {
  return s.length > 1 && s.startsWith('-') && !/^-\d+(\.\d*)?$/.test(s);
}

function parseFloatArg(s) {
  const t = s.trim().toLowerCase();
  if (/^[+-]?(inf|infinity|nan)$/.test(t)) return Number(t.replace('infinity', 'inf').replace('inf', 'Infinity').replace('nan', 'NaN'));
  if (t === '' || !/^[+-]?(\d[\d_]*\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(t)) return null;
  return Number(t.replace(/_/g, ''));
}

/** Parse the arguments of subcommand name; returns { args, extras }. */
function parseSub(name, rest) {
  const spec = COMMANDS[name];
  const prog = `orchesjob ${name}`;
  const fail = (msg) => argError(spec.usage, prog, msg);
  const names = [...Object.keys(spec.options), '--help'];
  const args = {};
  const seen = new Set();
  const extras = [];
  let command = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--' || !looksLikeOption(a)) {
      if (spec.remainder) {
        command = rest.slice(i);
        break;
      }
      if (a === '--') {
        extras.push(...rest.slice(i + 1));
        break;
      }
      extras.push(a);
      continue;
    }
    if (a === '-h') return help(spec.usage);
    let [opt, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (!names.includes(opt)) {
      const m = names.filter((n) => n.startsWith(opt) && opt.startsWith('--'));
      if (m.length > 1) fail(`ambiguous option: ${opt} could match ${m.join(', ')}`);
      if (m.length === 1) opt = m[0];
    }
    if (opt === '--help') return help(spec.usage);
    const o = spec.options[opt];
    if (!o) {
      extras.push(a);
      continue;
    }
    if (spec.group?.includes(opt)) {
      const other = spec.group.find((g) => g !== opt && seen.has(g));
      if (other) fail(`argument ${opt}: not allowed with argument ${other}`);
    }
    seen.add(opt);
    const dest = opt.slice(2).replace(/-/g, '_');
    if (!o.value) {
      if (inline !== undefined) fail(`argument ${opt}: ignored explicit argument '${inline}'`);
      args[dest] = true;
      continue;
    }
    let v = inline;
    if (v === undefined) {
      if (i + 1 >= rest.length || looksLikeOption(rest[i + 1])) fail(`argument ${opt}: expected one argument`);
      v = rest[++i];
    }
    if (o.float) {
      const f = parseFloatArg(v);
      if (f === null) fail(`argument ${opt}: invalid float value: '${v}'`);
      v = f;
    }
    if (o.choices && !o.choices.includes(v)) {
      fail(`argument ${opt}: invalid choice: '${v}' (choose from ${o.choices.map((c) => `'${c}'`).join(', ')})`);
    }
    args[dest] = v;
  }
  const missing = Object.entries(spec.options).filter(([n, o]) => o.required && !seen.has(n)).map(([n]) => n);
  if (missing.length) fail(`the following arguments are required: ${missing.join(', ')}`);
  if (spec.group && !spec.group.some((g) => seen.has(g))) fail(`one of the arguments ${spec.group.join(' ')} is required`);
  if (spec.remainder) args.command = command;
  return { args, extras };
}

function help(usage) {
  process.stdout.write(`${usage}\n\n(orchesjob stand-in: see the comment block of ${process.argv[1]})\n`);
  throw new Exit(EXIT_OK);
}

function parse(all) {
  const extras = [];
  let i = 0;
  for (; i < all.length && looksLikeOption(all[i]); i++) {
    const a = all[i];
    if (a === '-h' || a === '--help') help(TOP_USAGE);
    if (a === '--version' || (a.length > 3 && '--version'.startsWith(a))) {
      process.stdout.write(`orchesjob ${VERSION}\n`);
      throw new Exit(EXIT_OK);
    }
    if (a === '--') {
      i++;
      break;
    }
    extras.push(a);
  }
  if (i >= all.length) argError(TOP_USAGE, 'orchesjob', 'the following arguments are required: subcommand');
  const name = all[i];
  if (!Object.hasOwn(COMMANDS, name)) {
    argError(
      TOP_USAGE,
      'orchesjob',
      `argument subcommand: invalid choice: '${name}' (choose from ${CHOICES.map((c) => `'${c}'`).join(', ')})`,
    );
  }
  const sub = parseSub(name, all.slice(i + 1));
  extras.push(...sub.extras);
  if (extras.length) argError(TOP_USAGE, 'orchesjob', `unrecognized arguments: ${extras.join(' ')}`);
  return { name, args: sub.args };
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

const FAULT_MODES = {
  exit: {
    before(f) {
      if (f.stdout) process.stdout.write(String(f.stdout).endsWith('\n') ? String(f.stdout) : `${f.stdout}\n`);
      if (f.stderr != null) process.stderr.write(String(f.stderr).endsWith('\n') ? String(f.stderr) : `${f.stderr}\n`);
      throw new Exit(Number.isInteger(f.code) ? f.code : EXIT_ERROR);
    },
  },
  'non-json': {
    before() {
      process.stdout.write('this is not json\n');
      throw new Exit(EXIT_OK);
    },
  },
  'no-job-id': {
    before() {
      out({ accepted: false });
      throw new Exit(EXIT_OK);
    },
  },
  hang: { before: () => hangForever() },
  slow: { before: (f) => new Promise((r) => setTimeout(r, Number(f.ms) || 0)) },
  'die-after-create': {
    afterCreate() {
      process.kill(process.pid, 'SIGKILL');
      return hangForever(); // SIGKILL is delivered at once; never reached in practice
    },
  },
  'hang-after-create': { afterCreate: () => hangForever() },
  none: {},
};

function readFaults() {
  const p = path.join(DIR, 'faults.json');
  let text;
  try {
    text = fs.readFileSync(p, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') return {};
    throw e;
  }
  try {
    const f = JSON.parse(text);
    if (f === null || typeof f !== 'object' || Array.isArray(f)) throw new Error('top level must be an object');
    return f;
  } catch (e) {
    return standinDie(`cannot use ${p}: ${e.message}`);
  }
}

/** The fault that applies to this start of runKey, or null. Counts starts when `times` is set. */
function activeFault(runKey) {
  const faults = readFaults();
  const f = Object.hasOwn(faults, runKey) ? faults[runKey] : faults['*'];
  if (!f) return null;
  if (!Object.hasOwn(FAULT_MODES, f.mode)) {
    standinDie(`unknown fault mode ${JSON.stringify(f.mode)} for run key ${JSON.stringify(runKey)} (known: ${Object.keys(FAULT_MODES).join(', ')})`);
  }
  if (f.times == null) return f;
  return withLock(runKey, () => {
    const p = P.faultCount(runKey);
    const count = readJson(p)?.count ?? 0;
    writeJsonAtomic(p, { run_key: runKey, count: count + 1 });
    return count < Number(f.times) ? f : null;
  });
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

function validateJobId(jobId) {
  if (jobId.includes('/') || jobId.includes('\\')) die('Invalid job_id: contains path separator', EXIT_INVALID_ARGS);
}

/** Resolve --job-id / --run-key to a job record (exit 3 when unknown). */
function resolveJob(args) {
  let jobId = args.job_id;
  if (jobId) {
    validateJobId(jobId);
  } else {
    const idx = runKeyIndex(args.run_key);
    if (!idx) die('run_key not found', EXIT_NOT_FOUND);
    jobId = idx.current_job_id;
  }
  const job = readJob(jobId);
  if (!job) die(`Job not found: ${jobId}`, EXIT_NOT_FOUND);
  return job;
}

/** Wait (polling, so an abort is seen) until the job is finished; returns the fresh record. */
async function waitFinished(jobId) {
  for (;;) {
    const job = readJob(jobId);
    const v = view(job);
    if (TERMINAL.has(v.status)) return job;
    const left = job.started_at_ms + job.duration_ms - Date.now();
    await new Promise((r) => setTimeout(r, Math.max(1, Math.min(left, 50))));
  }
}

function takeUnlock(runKey) {
  const p = P.unlock(runKey);
  const u = readJson(p);
  if (!u || u.used_at_ms != null || (u.expires_at_ms != null && u.expires_at_ms <= Date.now())) return null;
  writeJsonAtomic(p, { ...u, used_at_ms: Date.now() });
  return u;
}

async function cmdStart(args) {
  let command = args.command;
  if (command[0] === '--') command = command.slice(1);
  if (command.length === 0) die('command is required (provide it after --)', EXIT_INVALID_ARGS);
  const runKey = args.run_key;
  const strict = Boolean(args.strict);
  const mode = args.sync ? 'sync' : 'async';

  const fault = activeFault(runKey);
  const handler = fault ? FAULT_MODES[fault.mode] : {};
  if (handler.before) await handler.before(fault);

  const r = withLock(runKey, () => {
    const index = runKeyIndex(runKey);
    const current = index ? readJob(index.current_job_id) : null;
    if (current && !TERMINAL.has(view(current).status)) return { job: current, existing: true };
    const override = current && strict ? takeUnlock(runKey) : null;
    if (current && strict && !override) return { job: current, existing: true };
    const job = createJob({
      runKey,
      command,
      index,
      rerunOf: current?.job_id,
      rerunReason: override?.reason,
      jobSeconds: fault?.job_seconds,
      jobExitCode: fault?.job_exit_code,
    });
    return { job, existing: false, strictOverrideUsed: Boolean(override) };
  });

  if (!r.existing && handler.afterCreate) await handler.afterCreate(fault);

  let job = r.job;
  let v;
  if (args.sync) {
    job = await waitFinished(job.job_id);
    v = view(job);
  } else {
    v = view(job);
    // A freshly spawned job is reported RUNNING even when its simulated duration is 0.
    if (!r.existing && v.status !== 'ABORTED') v = { status: 'RUNNING', exit_code: null, finished_ms: null };
  }
  out(startResponse(job, v, { existing: r.existing, mode, strict, strictOverrideUsed: r.strictOverrideUsed }));
}

function cmdStatus(args) {
  if (args.running) {
    const dir = path.join(DIR, 'jobs');
    const jobs = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => readJson(path.join(dir, f)))
      .filter((j) => j && ACTIVE.has(view(j).status))
      .sort((a, b) => a.started_at_ms - b.started_at_ms);
    out(jobs.map((j) => formatJob(j)));
    return;
  }
  if (args.all) {
    if (!args.run_key) die('status --all requires --run-key', EXIT_INVALID_ARGS);
    const idx = runKeyIndex(args.run_key);
    if (!idx) die(`No jobs found for run_key: ${args.run_key}`, EXIT_NOT_FOUND);
    const jobs = idx.job_ids.map(readJob).filter(Boolean).reverse(); // newest first
    out(jobs.map((j) => formatJob(j)));
    return;
  }
  out(formatJob(resolveJob(args)));
}

function cmdAbort(args) {
  const found = resolveJob(args);
  const job = withLock(found.run_key, () => {
    const j = readJob(found.job_id);
    const v = view(j);
    if (!ACTIVE.has(v.status)) die(`Job is not running: ${j.job_id} status=${v.status}`, EXIT_INVALID_STATE);
    const updated = { ...j, aborted_at_ms: Date.now(), abort_reason: args.reason ?? null };
    writeJsonAtomic(P.job(j.job_id), updated);
    return updated;
  });
  out({
    ...formatJob(job),
    aborted: true,
    sent_term_target: false,
    sent_term_worker: false,
    sent_kill_target: false,
    sent_kill_worker: false,
  });
}

function cmdResult(args) {
  const job = resolveJob(args);
  const v = view(job);
  out({ job_id: job.job_id, run_key: job.run_key, status: v.status, exit_code: v.exit_code, stdout: '', stderr: '' });
}

function cmdLogs(args) {
  const job = resolveJob(args);
  const file = args.stream === 'stderr' ? job.stderr_file : job.stdout_file;
  if (!file || !fs.existsSync(file)) die(`Log file not found: ${file}`, EXIT_NOT_FOUND);
  process.stdout.write(fs.readFileSync(file));
}

function parseTtlMs(value) {
  if (value == null) return null;
  const t = value.trim().toLowerCase();
  if (!t) die('Invalid ttl: empty', EXIT_INVALID_ARGS);
  const m = /^(-?\d+)([smhd]?)$/.exec(t);
  if (!m) die(`Invalid ttl: '${t}'. Use seconds or suffix s/m/h/d`, EXIT_INVALID_ARGS);
  const n = Number(m[1]);
  if (n <= 0) die('ttl must be positive', EXIT_INVALID_ARGS);
  return n * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2]] * 1000;
}

function cmdUnlock(args) {
  const runKey = args.run_key;
  const ttlMs = parseTtlMs(args.ttl);
  const now = Date.now();
  withLock(runKey, () => {
    const idx = runKeyIndex(runKey);
    if (!idx) die('run_key not found', EXIT_NOT_FOUND);
    const v = view(readJob(idx.current_job_id));
    if (!TERMINAL.has(v.status)) die(`Cannot unlock active job: status=${v.status}`, EXIT_INVALID_STATE);
    writeJsonAtomic(P.unlock(runKey), {
      run_key: runKey,
      reason: args.reason ?? null,
      allowed_at_ms: now,
      expires_at_ms: ttlMs == null ? null : now + ttlMs,
      used_at_ms: null,
    });
  });
  const o = { unlocked: true, run_key: runKey, reason: args.reason ?? null };
  putTs(o, 'allowed_at', now);
  putTs(o, 'expires_at', ttlMs == null ? null : now + ttlMs);
  out(o);
}

async function cmdRerun(args) {
  const source = resolveJob(args);
  const job = withLock(source.run_key, () => {
    const s = readJob(source.job_id);
    const v = view(s);
    if (!TERMINAL.has(v.status)) die(`Cannot rerun active job: status=${v.status}`, EXIT_INVALID_STATE);
    return createJob({
      runKey: s.run_key,
      command: s.command,
      index: runKeyIndex(s.run_key),
      rerunOf: s.job_id,
      rerunReason: args.reason ?? null,
    });
  });
  const final = args.sync ? await waitFinished(job.job_id) : job;
  const v = args.sync ? view(final) : { status: 'RUNNING', exit_code: null, finished_ms: null };
  out({ ...startResponse(final, v, { existing: false, mode: args.sync ? 'sync' : 'async', strict: false }), rerun: true });
}

// ---------------------------------------------------------------------------

async function main() {
  if (FORMAT !== '1.0' && FORMAT !== '1.1') standinDie(`ORCHESJOB_STANDIN_FORMAT must be 1.0 or 1.1, got ${JSON.stringify(FORMAT)}`);
  const { name, args } = parse(argv);
  await COMMANDS[name].run(args);
}

main().then(
  () => {
    process.exitCode = EXIT_OK;
  },
  (e) => {
    if (e instanceof Exit) {
      process.exitCode = e.code;
    } else {
      process.stderr.write(`orchesjob-standin: internal error: ${e?.stack ?? e}\n`);
      process.exitCode = EXIT_ERROR;
    }
  },
);
