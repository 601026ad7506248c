/**
 * The shipped monitoring files: the alert rules of deploy/prometheus/ pass `promtool check rules` and
 * their unit tests (`promtool test rules`), and the systemd unit, `Type=notify` with a watchdog and
 * `--metrics-file` in node_exporter's default textfile folder, passes `systemd-analyze verify` (with
 * only its ExecStart path pointed at the built CLI, which is not installed in /usr/local/bin here).
 *
 * Skipped without promtool or systemd-analyze; under CI=true, failed (.ci/run installs prometheus and systemd).
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, sandbox } from '../support/harness.js';
import { PROMTOOL, requireUnderCi } from '../support/prometheus.js';
import { DEPLOY, findExecutable, renderShipped } from '../support/rsyslog.js';

const SYSTEMD_ANALYZE = findExecutable('systemd-analyze', ['/usr/bin', '/bin']);
requireUnderCi({ promtool: PROMTOOL, 'systemd-analyze': SYSTEMD_ANALYZE }, 'prometheus and systemd');
const RULES = join(DEPLOY, 'prometheus');

describe.skipIf(PROMTOOL === null)('deploy/prometheus', () => {
  it('passes promtool check rules', () => {
    const r = spawnSync(PROMTOOL as string, ['check', 'rules', 'orchesjob-reserver.rules.yml'], { cwd: RULES, encoding: 'utf8' });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(r.stdout).toMatch(/SUCCESS: 5 rules found/);
  });

  it('passes its unit tests (promtool test rules): every alert fires when it should and not before', () => {
    const r = spawnSync(PROMTOOL as string, ['test', 'rules', 'orchesjob-reserver.rules.test.yml'], { cwd: RULES, encoding: 'utf8' });
    expect({ status: r.status, out: r.stdout.trim(), err: r.stderr }).toEqual({
      status: 0,
      out: 'Unit Testing:  orchesjob-reserver.rules.test.yml\n  SUCCESS',
      err: '',
    });
  });

  it('has a test for each alert of the rules', () => {
    const names = (file: string, pattern: RegExp) =>
      new Set([...renderShipped(`prometheus/${file}`, []).matchAll(pattern)].map((m) => m[1]));
    const alerts = names('orchesjob-reserver.rules.yml', /^\s+- alert: (\S+)$/gm);
    expect([...alerts].sort()).toEqual([
      'OrchesjobReserverDispatchFailures',
      'OrchesjobReserverDispatcherDown',
      'OrchesjobReserverDueReservationWaiting',
      'OrchesjobReserverExpiries',
      'OrchesjobReserverPausedTooLong',
    ]);
    expect(names('orchesjob-reserver.rules.test.yml', /^\s+alertname: (\S+)$/gm)).toEqual(alerts);
  });
});

describe.skipIf(SYSTEMD_ANALYZE === null)('deploy/orchesjob-reserver.service', () => {
  it('is Type=notify with a watchdog, writes the metrics for node_exporter, and passes systemd-analyze verify', () => {
    const unit = renderShipped('orchesjob-reserver.service', [['ExecStart=/usr/local/bin/orchesjob-reserver run', `ExecStart=${CLI} run`]]);
    expect(unit).toMatch(/^Type=notify$/m);
    expect(unit).toMatch(/^NotifyAccess=main$/m);
    expect(unit).toMatch(/^WatchdogSec=60$/m);
    expect(unit).toMatch(/^KillMode=process$/m);
    expect(unit).toMatch(/^ExecStart=\S+ run --metrics-file \/var\/lib\/prometheus\/node-exporter\/orchesjob_reserver\.prom$/m);
    const file = join(sandbox().dir, 'orchesjob-reserver.service');
    writeFileSync(file, unit);
    const r = spawnSync(SYSTEMD_ANALYZE as string, ['verify', file], { encoding: 'utf8' });
    // verify exits 0 on an unknown key too: what it prints is the verdict.
    expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ status: 0, stdout: '', stderr: '' });
  });
});
