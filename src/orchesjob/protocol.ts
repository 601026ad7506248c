/**
 * What orchesjob's answers mean: its exit codes and the JSON it prints, in both of its formats. Pure
 * functions of what a call printed, so that every rule here is read in one place.
 *
 * Formats: orchesjob 1.0 prints times as ISO strings (`"started_at": "2026-05-04T09:00:00+09:00"`);
 * 1.1 prints epoch seconds with an ISO twin (`"started_at": 1777852800, "started_at_iso": "..."`).
 */

/** argparse rejected the command line (an unknown subcommand or option). */
export const EXIT_ARGPARSE_REJECTED = 2;
/** The job or run key asked about is not known. */
export const EXIT_NOT_FOUND = 3;

/** What one orchesjob call did. `code` is null when it was killed by a signal. */
export interface OrchesjobOutcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** How a start ended: a job id, or why there is none (`exitCode` null: it never ran, or was killed). */
export type StartOutcome =
  | { readonly ok: true; readonly jobId: string; readonly recovered?: boolean }
  | { readonly ok: false; readonly error: string; readonly exitCode: number | null };

/** What orchesjob says about jobs of a run key started since a claim. */
export type JobLookup =
  | { readonly kind: 'found'; readonly jobId: string }
  | { readonly kind: 'none' }
  | { readonly kind: 'unknown'; readonly error: string };

/**
 * orchesjob's view of one job: its JSON as printed, its raw output when that is not JSON, or why it
 * could not say (the message the user sees).
 */
export type JobStatus =
  | { readonly kind: 'json'; readonly value: unknown }
  | { readonly kind: 'raw'; readonly stdout: string; readonly stderr: string }
  | { readonly kind: 'failed'; readonly message: string };

/**
 * True when orchesjob's argument parser rejected the subcommand itself: the real orchesjob has no
 * `result` and no `cancel`, and argparse then exits 2 with `invalid choice`.
 */
export function rejectedSubcommand(outcome: OrchesjobOutcome): boolean {
  return outcome.code === EXIT_ARGPARSE_REJECTED && outcome.stderr.includes('invalid choice');
}

/** Read `orchesjob start`'s JSON: an object with a non-empty string `job_id`. */
export function parseStartOutput(stdout: string): StartOutcome {
  const text = stdout.trim();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, exitCode: 0, error: `orchesjob returned non-JSON output: ${text.slice(0, 500)}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, exitCode: 0, error: 'orchesjob start did not return a JSON object.' };
  }
  const jobId = (value as Record<string, unknown>)['job_id'];
  if (typeof jobId !== 'string' || jobId === '') {
    return { ok: false, exitCode: 0, error: 'orchesjob start output does not contain job_id.' };
  }
  return { ok: true, jobId };
}

/** `orchesjob status --job-id`'s answer as the user sees it. */
export function parseJobStatus(jobId: string, outcome: OrchesjobOutcome): JobStatus {
  if (outcome.code !== 0) {
    return {
      kind: 'failed',
      message: `orchesjob status --job-id ${jobId} failed with exit code ${outcome.code ?? outcome.signal}: ${outcome.stderr.trim()}`,
    };
  }
  try {
    return { kind: 'json', value: JSON.parse(outcome.stdout) };
  } catch {
    return { kind: 'raw', stdout: outcome.stdout, stderr: outcome.stderr };
  }
}

/**
 * Read `orchesjob status --run-key K [--all]`: the earliest job of `runKey` started at or after
 * `sinceMs`. Exit 3 (run key not found) means no job was ever started for it. Epoch seconds are whole,
 * so a job started in the claim's own second counts as started after it.
 */
export function parseJobStartedSince(runKey: string, sinceMs: number, outcome: OrchesjobOutcome): JobLookup {
  if (outcome.code === EXIT_NOT_FOUND) return { kind: 'none' };
  if (outcome.code !== 0) {
    return {
      kind: 'unknown',
      error: `orchesjob status --run-key ${runKey} failed with exit code ${outcome.code ?? outcome.signal}: ${outcome.stderr.trim()}`,
    };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(outcome.stdout);
  } catch {
    return { kind: 'unknown', error: `orchesjob status --run-key ${runKey} printed no JSON: ${outcome.stdout.slice(0, 200)}` };
  }
  const jobs = (Array.isArray(parsed) ? parsed : [parsed]) as unknown[];
  const found = earliestJobSince(jobs, runKey, Math.floor(sinceMs / 1000) * 1000);
  return found === null ? { kind: 'none' } : { kind: 'found', jobId: found };
}

/** The job id of the earliest job of `runKey` in `jobs` started at or after `sinceSecondMs`. */
function earliestJobSince(jobs: readonly unknown[], runKey: string, sinceSecondMs: number): string | null {
  let best: { jobId: string; startedMs: number } | null = null;
  for (const job of jobs) {
    if (job === null || typeof job !== 'object') continue;
    const fields = job as Record<string, unknown>;
    const jobId = fields['job_id'];
    const startedMs = startedAtMs(fields['started_at']);
    if (typeof jobId !== 'string' || jobId === '' || startedMs === null) continue;
    // Asked by run key, a job that names none is the key's; one that names another key is not ours.
    if (fields['run_key'] !== undefined && fields['run_key'] !== runKey) continue;
    if (startedMs < sinceSecondMs) continue;
    if (best === null || startedMs < best.startedMs) best = { jobId, startedMs };
  }
  return best?.jobId ?? null;
}

/** `started_at` in milliseconds, from either format: epoch seconds (1.1) or an ISO string (1.0). */
export function startedAtMs(value: unknown): number | null {
  if (typeof value === 'number' && Number.isFinite(value)) return value * 1000;
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}
