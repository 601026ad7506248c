/**
 * `reschedule`, `requeue` and `wait` through the gate: a key granted them acts only on its own run-key
 * prefix (another key's reservation is "not found", exit 4, and is left as it was); the actor is
 * `gate:<key>`; `pause` and `resume` can never be granted.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Sandbox } from '../support/harness.js';
import { CLI, envFor, ledgerEvents, reserve, sandbox, startDispatcher, status, writeFaults } from '../support/harness.js';

function policy(sb: Sandbox, verbs: string): string {
  const file = join(sb.dir, 'policy.toml');
  writeFileSync(file, `db = "${sb.db}"\n[keys.k]\nverbs = ${verbs}\nrun_key_prefix = "p/"\ncommands = ["/bin/true", "/bin/echo"]\n`, { mode: 0o600 });
  return file;
}

function gate(sb: Sandbox, file: string, line: string) {
  const args = [CLI, 'gate', '--policy', file, '--key', 'k', '--syslog-socket', join(sb.dir, 'no-syslog.sock')];
  const r = spawnSync(process.execPath, args, { env: envFor(sb, { SSH_ORIGINAL_COMMAND: line }), encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const nowSec = () => Math.floor(Date.now() / 1000);

describe('operator controls through the gate', () => {
  it('reschedules and requeues the key\'s own reservations only, as gate:<key>', async () => {
    const sb = sandbox();
    const file = policy(sb, '["reserve", "reschedule", "requeue", "status"]');
    await reserve(sb, 'p/mine', ['/bin/echo'], ['--not-before', String(nowSec() + 3600)]);
    await reserve(sb, 'other', ['echo'], ['--not-before', String(nowSec() + 3600)]);
    const at = nowSec() + 7200;

    const ok = gate(sb, file, `orchesjob-reserver reschedule --run-key p/mine --not-before ${at}`);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ rescheduled: true, reservation: { run_key: 'p/mine', not_before: at } });
    const theirs = gate(sb, file, `orchesjob-reserver reschedule --run-key other --not-before ${at}`);
    expect(theirs.code).toBe(4);
    const id = (await status(sb, 'other')).reservation_id;
    expect(gate(sb, file, `orchesjob-reserver reschedule --reservation-id ${id} --not-before ${at}`).code).toBe(4);
    expect((await status(sb, 'other')).not_before).toBeLessThan(at);
    const moved = ledgerEvents(sb.db).find((e) => e.type === 'Rescheduled');
    expect(moved?.actor).toBe('gate:k');
    expect(ledgerEvents(sb.db).filter((e) => e.type === 'Rescheduled')).toHaveLength(1);

    writeFaults(sb, { 'p/fails': { mode: 'exit', code: 1, stderr: 'no', times: 1 } });
    await reserve(sb, 'p/fails');
    const d = await startDispatcher(sb);
    await d.waitForLine((l) => l.event === 'dispatch_failed');
    const requeued = gate(sb, file, 'orchesjob-reserver requeue --run-key p/fails');
    expect(requeued.code, requeued.stderr).toBe(0);
    await d.waitForLine((l) => l.event === 'dispatch_succeeded', 6000);
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    expect((await status(sb, 'p/fails')).reservation_status).toBe('DISPATCHED');
  });

  it('waits for the key\'s own reservation; a verb not granted is refused (exit 3); pause can never be granted', async () => {
    const sb = sandbox();
    await reserve(sb, 'p/w');
    await reserve(sb, 'elsewhere');
    const d = await startDispatcher(sb);
    await d.waitForCount((l) => l.event === 'dispatch_succeeded', 2, 6000);
    expect(await d.stop()).toEqual({ code: 0, signal: null });

    const file = policy(sb, '["wait"]');
    const waited = gate(sb, file, 'orchesjob-reserver wait --run-key p/w --timeout 5');
    expect(waited.code, waited.stderr).toBe(0);
    expect(JSON.parse(waited.stdout).reservation.reservation_status).toBe('DISPATCHED');
    expect(gate(sb, file, 'orchesjob-reserver wait --run-key elsewhere --timeout 1').code).toBe(4);
    expect(gate(sb, file, 'orchesjob-reserver requeue --run-key p/w').code).toBe(3);

    const refused = gate(sb, policy(sb, '["pause"]'), 'orchesjob-reserver status --run-key p/w');
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('can never be granted');
  });
});
