process.env.TZ = 'Asia/Tokyo';

import { describe, expect, it } from 'vitest';
import type { Reservation } from '../../src/events/index.js';
import { NOT_PAUSED } from '../../src/events/control.js';
import { localTime, pausedBanner, relative, reservationDetail, reservationsTable } from '../../src/table.js';

const NOW = 1_777_830_000; // 2026-05-03T17:40:00Z = 2026-05-04 02:40:00 +09:00

const base: Reservation = {
  reservationId: '01J0000000000000000000000',
  runKey: 'nightly-backup',
  status: 'RESERVED',
  jobId: null,
  command: ['/usr/local/bin/backup.sh', '--label', 'a b'],
  orchesjobStartOptions: ['--strict'],
  metadata: { dag_id: 'd' },
  notBefore: NOW + 7200,
  expiresAt: null,
  createdAt: NOW - 180,
  createdAtMs: (NOW - 180) * 1000,
  updatedAt: NOW - 180,
  dispatchedAt: null,
  lastError: null,
  version: 1,
  maxAttempts: 1,
  retryDelay: 0,
  attempts: 0,
  retryAt: null,
  claim: null,
  cleaned: false,
};

describe('--format table', () => {
  it('says how far a time is from now, in its largest unit', () => {
    expect(relative(NOW + 7200, NOW)).toBe('in 2h');
    expect(relative(NOW - 180, NOW)).toBe('3m ago');
    expect(relative(NOW + 2, NOW)).toBe('now');
    expect(relative(NOW - 3 * 86_400, NOW)).toBe('3d ago');
    expect(relative(NOW + 45, NOW)).toBe('in 45s');
  });

  it('shows local times with their offset', () => {
    expect(new Date(2026, 0, 1).getTimezoneOffset()).toBe(-540);
    expect(localTime(NOW, NOW)).toBe('2026-05-04 02:40:00 +09:00 (now)');
    expect(localTime(null, NOW)).toBe('-');
  });

  it('lists one line per reservation under a header, errors cut to their first line', () => {
    const failed: Reservation = {
      ...base,
      runKey: 'daily-import',
      status: 'DISPATCH_FAILED',
      notBefore: null,
      lastError: 'orchesjob command failed: orchesjob start\nexit_code=7\nstderr=boom',
    };
    const lines = reservationsTable([base, failed], NOW).trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^RUN KEY\s+STATUS\s+DUE\s+EXPIRES\s+CREATED\s+JOB ID\s+LAST ERROR$/);
    expect(lines[1]).toContain('nightly-backup  RESERVED');
    expect(lines[1]).toContain('2026-05-04 04:40:00 +09:00 (in 2h)');
    expect(lines[1]).toContain('3m ago');
    expect(lines[2]).toContain('DISPATCH_FAILED');
    expect(lines[2]).toContain('2026-05-04 02:37:00 +09:00 (3m ago)'); // due at creation
    expect(lines[2]?.endsWith('orchesjob command failed: orchesjob start')).toBe(true);
    expect(reservationsTable([], NOW)).toBe('(no reservations)\n');
  });

  it('details one reservation a field per line, quoting arguments that need it', () => {
    const text = reservationDetail({ ...base, status: 'DISPATCHED', jobId: 'job-1' }, NOW, { status: 'RUNNING' });
    expect(text).toContain("command         /usr/local/bin/backup.sh --label 'a b'\n");
    expect(text).toContain('job id          job-1\n');
    expect(text).toContain('job status      RUNNING\n');
  });
});

describe('the paused banner', () => {
  const paused = { paused: true, reason: 'storage maintenance\nsecond line', until: NOW + 3600, since: NOW - 600, actor: 'cli:pause', version: 1 };

  it('heads list and status while a pause is in force, with since, until and the reason\'s first line', () => {
    const banner = pausedBanner(paused, NOW);
    expect(banner).toMatch(/^DISPATCHING PAUSED since .*\(10m ago\), until .*\(in 1h\): storage maintenance\n\n$/);
    expect(reservationsTable([], NOW, paused)).toBe(`${banner}(no reservations)\n`);
    expect(reservationDetail(base, NOW, undefined, paused).startsWith(banner)).toBe(true);
    expect(pausedBanner({ ...paused, until: null, reason: null }, NOW)).toMatch(/until resume\n\n$/);
  });

  it('is absent while not paused, and once the pause\'s until has passed', () => {
    expect(pausedBanner(NOT_PAUSED, NOW)).toBe('');
    expect(pausedBanner({ ...paused, until: NOW - 1 }, NOW)).toBe('');
    expect(reservationsTable([], NOW, NOT_PAUSED)).toBe('(no reservations)\n');
  });
});
