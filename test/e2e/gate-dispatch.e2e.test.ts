/**
 * `run --policy` (issue 15): a reservation made through the gate is checked against its key's policy
 * as the file says when it is due. One no longer allowed is refused (DispatchRefused: DISPATCH_FAILED,
 * "refused by policy", never claimed, never started); one still allowed, and every reservation made on
 * the host, is started as before; a policy that cannot be read then holds the gated ones until it can;
 * without --policy nothing is checked.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Sandbox } from '../support/harness.js';
import { CLI, envFor, runCli, sandbox, startDispatcher, startInvocations, status } from '../support/harness.js';

function policy(sb: Sandbox, commands: string, extra = ''): string {
  const file = join(sb.dir, 'policy.toml');
  writeFileSync(file, `db = "${sb.db}"\n[keys.k]\nverbs = ["reserve"]\nrun_key_prefix = "p/"\ncommands = ${commands}\n${extra}`, { mode: 0o600 });
  return file;
}

function gate(sb: Sandbox, file: string, line: string): ReturnType<typeof spawnSync> {
  const args = [CLI, 'gate', '--policy', file, '--key', 'k', '--syslog-socket', join(sb.dir, 'no-syslog.sock')];
  return spawnSync(process.execPath, args, { env: envFor(sb, { SSH_ORIGINAL_COMMAND: line }), encoding: 'utf8' });
}

function gated(sb: Sandbox, file: string, line: string): void {
  const r = gate(sb, file, line);
  expect(r.status, String(r.stderr)).toBe(0);
}

const settled = (l: { event: string }) => ['dispatch_succeeded', 'dispatch_failed', 'dispatch_refused'].includes(l.event);

describe('run --policy', () => {
  it('refuses a gated reservation its key may no longer make (dispatch_refused, never claimed), starts the others', async () => {
    const sb = sandbox();
    const file = policy(sb, '["/bin/true", "/bin/echo"]');
    gated(sb, file, 'orchesjob-reserver reserve --run-key p/revoked --max-attempts 3 -- /bin/echo hi');
    gated(sb, file, 'orchesjob-reserver reserve --run-key p/kept -- /bin/true');
    expect((await runCli(['reserve', '--run-key', 'local', '--', '/bin/echo', 'hi'], { home: sb })).code).toBe(0);
    policy(sb, '["/bin/true"]'); // /bin/echo revoked after the reservation was made
    const d = await startDispatcher(sb, ['--policy', file]);
    await d.waitForCount(settled, 3, 10_000);
    await d.stop();
    const reason = 'refused by policy: command "/bin/echo" is not allowed for this key (key k)';
    const revoked = await status(sb, 'p/revoked');
    expect(revoked).toMatchObject({ reservation_status: 'DISPATCH_FAILED', job_id: null, last_error: reason });
    expect(d.events('dispatch_refused')).toEqual([expect.objectContaining({ run_key: 'p/revoked', error: reason })]);
    expect(d.lines.filter((l) => l.run_key === 'p/revoked').map((l) => l.event)).toEqual(['dispatch_refused']);
    expect(d.events('orchesjob_start_call').map((l) => l.run_key).sort()).toEqual(['local', 'p/kept']);
    expect((await status(sb, 'p/kept')).reservation_status).toBe('DISPATCHED');
    expect((await status(sb, 'local')).reservation_status).toBe('DISPATCHED');
    expect(startInvocations(sb, 'p/revoked')).toEqual([]);
    const history = await runCli(['history', '--run-key', 'p/revoked'], { home: sb });
    expect(JSON.parse(history.stdout).events.map((e: { type: string }) => e.type)).toEqual(['Reserved', 'DispatchRefused']);
  });

  it('an invalid policy at dispatch time holds gated reservations (RESERVED, expiry applies) until it is fixed; at start, run exits 1', async () => {
    const sb = sandbox();
    const file = policy(sb, '["/bin/true"]');
    const due = Math.floor(Date.now() / 1000) + 2;
    gated(sb, file, `orchesjob-reserver reserve --run-key p/a --not-before ${due} -- /bin/true`);
    gated(sb, file, `orchesjob-reserver reserve --run-key p/e --not-before ${due} --expires-at ${due + 2} -- /bin/true`);
    // One slot: the held ones, first in the queue, must not keep p/b waiting.
    const d = await startDispatcher(sb, ['--policy', file, '--poll-interval', '0.2', '--error-sleep', '0.2', '--max-concurrent-starts', '1']);
    writeFileSync(file, 'not toml [');
    expect((await runCli(['reserve', '--run-key', 'p/b', '--not-before', String(due), '--', '/bin/true'], { home: sb })).code).toBe(0);
    await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'p/b', 10_000);
    await d.waitForLine((l) => l.event === 'reservation_expired' && l.run_key === 'p/e', 10_000);
    expect((await status(sb, 'p/a')).reservation_status).toBe('RESERVED');
    const errors = d.stderr.trimEnd().split('\n').map((l) => JSON.parse(l) as { event: string; error: string });
    expect(errors.length).toBeGreaterThan(0);
    for (const e of errors) {
      expect(e.event).toBe('dispatcher_error');
      expect(e.error).toMatch(/^gated reservations held \(left RESERVED\) until the policy can be read: policy .* is not valid TOML/);
    }
    policy(sb, '["/bin/true"]');
    await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'p/a', 10_000);
    await d.stop();
    expect(d.events('dispatch_refused')).toEqual([]);
    writeFileSync(file, 'not toml [');
    const bad = await runCli(['run', '--policy', file, '--poll-interval', '0.1'], { home: sb });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('is not valid TOML');
  });

  it('measures metadata as the ledger stores it, at the gate and at dispatch alike', async () => {
    const sb = sandbox();
    const metadata = '{"a": [1e20, 1e20]}'; // 19 bytes typed; {"a":[100000000000000000000,100000000000000000000]} is 51
    const line = `orchesjob-reserver reserve --run-key p/m --metadata-json '${metadata}' -- /bin/true`;
    const tight = policy(sb, '["/bin/true"]', 'max_metadata_bytes = 40\n');
    const refused = gate(sb, tight, line);
    expect(refused.status).toBe(3);
    expect(String(refused.stderr)).toContain("metadata of 51 bytes is over this key's limit of 40");
    const file = policy(sb, '["/bin/true"]', 'max_metadata_bytes = 51\n');
    gated(sb, file, line);
    const d = await startDispatcher(sb, ['--policy', file]);
    await d.waitForLine(settled, 10_000);
    await d.stop();
    expect((await status(sb, 'p/m')).reservation_status).toBe('DISPATCHED');
  });

  it('run --help names --policy in its Usage line and its options', async () => {
    const help = await runCli(['run', '--help'], { home: sandbox() });
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: orchesjob-reserver run .*\[--policy PATH\]/m);
    expect(help.stdout).toMatch(/--policy=<PATH> +The gate's policy/);
  });

  it('without --policy, a gated reservation is started as before', async () => {
    const sb = sandbox();
    const file = policy(sb, '["/bin/echo"]');
    gated(sb, file, 'orchesjob-reserver reserve --run-key p/x -- /bin/echo');
    policy(sb, '[]');
    const d = await startDispatcher(sb);
    await d.waitForLine((l) => l.event === 'dispatch_succeeded', 10_000);
    await d.stop();
    expect((await status(sb, 'p/x')).reservation_status).toBe('DISPATCHED');
  });
});
