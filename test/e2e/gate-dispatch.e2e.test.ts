/**
 * `run --policy` (issue 15): a reservation made through the gate is checked against its key's policy
 * as the file says when it is due. One no longer allowed ends DISPATCH_FAILED, "refused by policy",
 * without a retry and without a start; one still allowed, and every reservation made on the host, is
 * started as before; without --policy nothing is checked.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Sandbox } from '../support/dispatcher.js';
import { CLI, cli, envFor, sandbox, startDispatcher, startInvocations, status, useDispatcherHarness } from '../support/dispatcher.js';

useDispatcherHarness();

function policy(sb: Sandbox, commands: string, extra = ''): string {
  const file = join(sb.dir, 'policy.toml');
  writeFileSync(file, `db = "${sb.db}"\n[keys.k]\nverbs = ["reserve"]\nrun_key_prefix = "p/"\ncommands = ${commands}\n${extra}`, { mode: 0o600 });
  return file;
}

function gated(sb: Sandbox, file: string, line: string): void {
  const r = spawnSync(process.execPath, [CLI, 'gate', '--policy', file, '--key', 'k'], { env: envFor(sb, { SSH_ORIGINAL_COMMAND: line }), encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

describe('run --policy', () => {
  it('fails a gated reservation its key may no longer make, starts the others', async () => {
    const sb = sandbox();
    const file = policy(sb, '["/bin/true", "/bin/echo"]');
    gated(sb, file, 'orchesjob-reserver reserve --run-key p/revoked --max-attempts 3 -- /bin/echo hi');
    gated(sb, file, 'orchesjob-reserver reserve --run-key p/kept -- /bin/true');
    expect((await cli(sb, ['reserve', '--run-key', 'local', '--', '/bin/echo', 'hi'])).code).toBe(0);
    policy(sb, '["/bin/true"]'); // /bin/echo revoked after the reservation was made
    const d = await startDispatcher(sb, ['--policy', file]);
    await d.waitForCount((l) => l.event === 'dispatch_succeeded' || l.event === 'dispatch_failed', 3, 10_000);
    await d.stop();
    const revoked = await status(sb, 'p/revoked');
    expect(revoked).toMatchObject({ reservation_status: 'DISPATCH_FAILED', job_id: null });
    expect(revoked.last_error).toBe('refused by policy: command "/bin/echo" is not allowed for this key (key k)');
    expect((await status(sb, 'p/kept')).reservation_status).toBe('DISPATCHED');
    expect((await status(sb, 'local')).reservation_status).toBe('DISPATCHED');
    expect(startInvocations(sb, 'p/revoked')).toEqual([]);
  });

  it('an invalid policy at dispatch time refuses every gated reservation; at start, run exits 1', async () => {
    const sb = sandbox();
    const file = policy(sb, '["/bin/true"]');
    const due = Math.floor(Date.now() / 1000) + 2;
    gated(sb, file, `orchesjob-reserver reserve --run-key p/a --not-before ${due} -- /bin/true`);
    const d = await startDispatcher(sb, ['--policy', file]);
    writeFileSync(file, 'not toml [');
    expect((await cli(sb, ['reserve', '--run-key', 'p/b', '--not-before', String(due), '--', '/bin/true'])).code).toBe(0);
    await d.waitForCount((l) => l.event === 'dispatch_succeeded' || l.event === 'dispatch_failed', 2, 10_000);
    await d.stop();
    expect((await status(sb, 'p/a')).last_error).toMatch(/^refused by policy: policy .* is not valid TOML/);
    expect((await status(sb, 'p/b')).reservation_status).toBe('DISPATCHED');
    const bad = await cli(sb, ['run', '--policy', file, '--poll-interval', '0.1']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('is not valid TOML');
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
