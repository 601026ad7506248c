/**
 * Retries the user asks for: `reserve --max-attempts N --retry-delay S`. A failed start with attempts
 * left is recorded (DispatchAttemptFailed) and tried again after the delay; the last failure ends in
 * DISPATCH_FAILED with every attempt's error in the history; expires_at still wins.
 */
import { describe, expect, it } from 'vitest';
import { cliOk, executions, expectWellFormed, ledgerEvents, runCli, sandbox, startDispatcher, status, writeFaults } from '../support/harness.js';

describe('dispatcher retries', () => {
  it('tries again after the delay and succeeds on the third attempt', async () => {
    const sb = sandbox();
    writeFaults(sb, { flaky: { mode: 'exit', code: 9, stderr: 'transient', times: 2 } });
    const d = await startDispatcher(sb, ['--poll-interval', '5']);
    await cliOk(sb, ['reserve', '--run-key', 'flaky', '--max-attempts', '3', '--retry-delay', '1', '--', 'echo', 'x']);
    const done = await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'flaky', 10_000);
    await d.stop();
    expectWellFormed(d);
    const attempts = d.events('dispatch_attempt_failed');
    expect(attempts.map((l) => [l.attempt, l.max_attempts, l.exit_code])).toEqual([
      [1, 3, 9],
      [2, 3, 9],
    ]);
    expect(attempts[0]?.error).toContain('stderr=transient');
    // Never before the retry time (whole seconds): each retry's claim comes at or after retry_at.
    const claims = ledgerEvents(sb.db).filter((e) => e.type === 'DispatchClaimed');
    expect(claims).toHaveLength(3);
    expect(claims[1]!.recorded_at_ms).toBeGreaterThanOrEqual(attempts[0]!.retry_at * 1000);
    expect(claims[2]!.recorded_at_ms).toBeGreaterThanOrEqual(attempts[1]!.retry_at * 1000);
    expect(await status(sb, 'flaky')).toMatchObject({ reservation_status: 'DISPATCHED', job_id: done.job_id, last_error: null });
    expect(executions(sb).filter((e) => e.run_key === 'flaky')).toHaveLength(1);
  });

  it('ends in DISPATCH_FAILED after the last attempt, every error kept in the history', async () => {
    const sb = sandbox();
    writeFaults(sb, { doomed: { mode: 'exit', code: 3, stderr: 'always' } });
    const d = await startDispatcher(sb);
    await cliOk(sb, ['reserve', '--run-key', 'doomed', '--max-attempts', '2', '--retry-delay', '0', '--', 'false']);
    await d.waitForLine((l) => l.event === 'dispatch_failed' && l.run_key === 'doomed', 10_000);
    await d.stop();
    expect(d.events('dispatch_attempt_failed')).toHaveLength(1);
    expect(await status(sb, 'doomed')).toMatchObject({ reservation_status: 'DISPATCH_FAILED' });
    const history = (await cliOk(sb, ['history', '--run-key', 'doomed'])).events.map((e: { type: string }) => e.type);
    expect(history).toEqual(['Reserved', 'DispatchClaimed', 'DispatchAttemptFailed', 'DispatchClaimed', 'DispatchFailed']);
  });

  it('expires_at wins over a pending retry', async () => {
    const sb = sandbox();
    writeFaults(sb, { late: { mode: 'exit', code: 1, stderr: 'no' } });
    const d = await startDispatcher(sb);
    const expiresAt = Math.floor(Date.now() / 1000) + 2;
    await cliOk(sb, ['reserve', '--run-key', 'late', '--max-attempts', '5', '--retry-delay', '30', '--expires-at', String(expiresAt), '--', 'true']);
    await d.waitForLine((l) => l.event === 'reservation_expired' && l.run_key === 'late', 10_000);
    await d.stop();
    expect(await status(sb, 'late')).toMatchObject({ reservation_status: 'EXPIRED', last_error: 'expired before dispatch' });
    expect(d.events('dispatch_attempt_failed')).toHaveLength(1);
  });

  it('rejects bad --max-attempts / --retry-delay (exit 2)', async () => {
    const sb = sandbox();
    for (const args of [['--max-attempts', '0'], ['--max-attempts', 'x'], ['--max-attempts', '101'], ['--retry-delay', '-1'], ['--retry-delay', '1.5']]) {
      const r = await runCli(['reserve', '--run-key', 'k', ...args, '--', 'true'], { home: sb });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
    }
  });
});
