/**
 * End to end through a real sshd (issue 15): the deploy/authorized_keys line (only its paths and key
 * replaced) locks a key to `gate`, with a policy in the test's folder; the real ssh client sends the
 * command lines the Airflow provider builds (test/support/provider-command.py, shlex.quote), and every
 * escape. Each refusal exits 3, leaves the ledger unchanged (`events` before and after), and reaches a
 * real rsyslogd (imuxsock on a socket in the temp folder, facility auth written to a file).
 * Needs sshd, ssh and rsyslogd: skipped without them, failed under CI=true.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Sandbox } from '../support/harness.js';
import { CLI, runCli, runStandin, sandbox, STANDIN } from '../support/harness.js';
import type { Rsyslogd } from '../support/rsyslog.js';
import { renderShipped, RSYSLOGD, startRsyslogd, waitUntil } from '../support/rsyslog.js';
import type { Sshd, SshResult } from '../support/sshd.js';
import { client, ssh, sshdInstalled, startSshd } from '../support/sshd.js';

const AVAILABLE = sshdInstalled() && RSYSLOGD !== null;
if (!AVAILABLE && process.env['CI'] === 'true') throw new Error('CI=true: sshd, ssh and rsyslogd must be installed (.ci/run installs them)');
const PROVIDER = join(import.meta.dirname, '../support/provider-command.py');

interface World {
  readonly sb: Sandbox;
  readonly home: string;
  readonly db: string;
  readonly sshd: Sshd;
  readonly rsyslogd: Rsyslogd;
  readonly auditLog: string;
}

/** The policy of the tests: deploy/policy.toml with its database and commands replaced. */
function writePolicy(sb: Sandbox): string {
  const home = sb.dir;
  const file = join(home, 'policy.toml');
  const text = renderShipped('policy.toml', [
    ['/var/lib/orchesjob/reserver.sqlite3', sb.db],
    ['["/jobs/import.sh", "/opt/jobs/"]', `["/jobs/import.sh", "${home}/jobs/"]`],
  ]);
  writeFileSync(file, `${text}\n[keys.other]\nverbs = ["reserve", "status"]\nrun_key_prefix = "other/"\ncommands = ["/jobs/import.sh"]\n`, { mode: 0o644 });
  return file;
}

async function withWorld(fn: (w: World) => Promise<void>): Promise<void> {
  const sb = sandbox();
  const home = sb.dir;
  const policy = writePolicy(sb);
  mkdirSync(join(home, 'jobs'));
  const socket = join(home, 'log.sock');
  const auditLog = join(home, 'auth.log');
  const rsyslogd = startRsyslogd(home, 'audit', `input(type="imuxsock" Socket="${socket}" CreatePath="on")\nauth.* action(type="omfile" file="${auditLog}")\n`);
  const line = (publicKey: string) =>
    renderShipped('authorized_keys', [
      ['orchesjob-reserver gate --policy /etc/orchesjob-reserver/policy.toml', `${process.execPath} ${CLI} gate --policy ${policy}`],
      ['--syslog-socket /dev/log', `--syslog-socket ${socket}`],
      ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIReplaceWithTheOrchestratorsPublicKey airflow-prod', publicKey],
    ]);
  let sshd: Sshd | undefined;
  try {
    await waitUntil(() => existsSync(socket), 10_000, () => `rsyslogd socket ${socket}:\n${rsyslogd.output()}`);
    sshd = await startSshd(home, line, {
      ORCHESJOB_BIN: STANDIN,
      ORCHESJOB_STANDIN_DIR: sb.oj,
    });
    await fn({ sb, home, db: sb.db, sshd, rsyslogd, auditLog });
  } finally {
    await sshd?.process.stop();
    await rsyslogd.stop();
  }
}

/** The provider's command lines for `requests`. */
function providerLines(requests: readonly object[]): string[] {
  const r = spawnSync('python3', [PROVIDER], { input: requests.map((q) => JSON.stringify(q)).join('\n') + '\n', encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as string);
}

async function ledger(sb: Sandbox): Promise<string> {
  const r = await runCli(['events'], { home: sb });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

function refused(r: SshResult): string {
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 3, stdout: '' });
  const last = JSON.parse(r.stderr.trimEnd().split('\n').pop() as string) as { error: string };
  expect(last.error).toMatch(/^not permitted: /);
  return last.error;
}

/** The audit lines rsyslogd wrote so far, once it has written at least `count`. */
async function auditLines(w: World, count: number): Promise<string[]> {
  const read = () => (existsSync(w.auditLog) ? readFileSync(w.auditLog, 'utf8').trimEnd().split('\n') : []);
  await waitUntil(() => read().length >= count, 10_000, () => `${count} lines in ${w.auditLog}: ${read().join('\n')}`);
  return read();
}

// One ssh connection (key exchange, then node starting the gate) is half a second alone and more when
// the other e2e files share the CPU (vitest runs four side by side): the escapes test makes 30 of them.
describe.skipIf(!AVAILABLE)('gate through a real sshd', { timeout: 120_000 }, () => {
  it("reserves every command line the Airflow provider builds; the sensor's orchesjob status runs on the host's orchesjob", async () => {
    await withWorld(async (w) => {
      writeFileSync(join(w.home, 'jobs', 'x.sh'), '#!/bin/sh\n');
      const requests = [
        { run_key: 'prod/plain', command: ['/jobs/import.sh'] },
        { run_key: 'prod/all', command: [`${w.home}/jobs/x.sh`, 'a b', "it's", '$(id)', '`id`', ';|&<>*?[]~', 'é😀'], not_before: '2030-01-01T02:00:00+09:00', expires_at: '2030-01-02', metadata: { dag_id: 'd', text: "quotes ' \" $HOME `x` é" }, start_options: ['--strict'] },
        { run_key: 'prod/paths', bin: '/usr/local/bin/orchesjob-reserver', db: w.db, orchesjob_bin: STANDIN, command: ['/jobs/import.sh'], env: { ORCHESJOB_HOME: w.home, ORCHESJOB_RESERVER_HOME: w.home } },
        { run_key: 'prod/metadata-json', metadata_json: '{"a": [1, 2]}', command: ['/jobs/import.sh', '--run-key', 'x', '--db', '/tmp/y'] },
      ];
      const lines = providerLines(requests);
      for (const [i, line] of lines.entries()) {
        const r = await ssh(w.sshd, line);
        expect({ code: r.code, stderr: r.stderr }, line).toEqual({ code: 0, stderr: '' });
        const request = requests[i] as { run_key: string; command: string[] };
        expect(JSON.parse(r.stdout).reservation).toMatchObject({ run_key: request.run_key, command: request.command, reservation_status: 'RESERVED' });
      }
      const history = await runCli(['history', '--run-key', 'prod/all'], { home: w.sb });
      expect(history.json.events[0]).toMatchObject({ type: 'Reserved', actor: 'gate:airflow-prod' });
      expect(history.json.events[0].data.metadata.text).toBe("quotes ' \" $HOME `x` é");
      // Read back through the gate: status, list (only this key's), history.
      const status = await ssh(w.sshd, "orchesjob-reserver status --run-key 'prod/all'");
      expect(JSON.parse(status.stdout).reservation.orchesjob_start_options).toEqual(['--strict']);
      expect(JSON.parse((await ssh(w.sshd, 'orchesjob-reserver list')).stdout).reservations).toHaveLength(4);
      // The sensor: the host's orchesjob (the stand-in) answers, its output and exit code passed through.
      const [sensor] = providerLines([{ sensor: true, run_key: 'prod/plain', orchesjob_home: w.home }]);
      const polled = await ssh(w.sshd, sensor as string);
      expect({ code: polled.code, stdout: polled.stdout }).toEqual({ code: 3, stdout: '' });
      expect(polled.stderr).toContain('orchesjob:');
      expect(readFileSync(join(w.sb.oj, 'invocations.jsonl'), 'utf8')).toContain('"status","--run-key","prod/plain"');
    });
  });

  it('refuses each escape with exit 3, leaves the ledger unchanged, and logs it to syslog with the key, verb, run key and reason', async () => {
    await withWorld(async (w) => {
      const own = await ssh(w.sshd, 'orchesjob-reserver reserve --run-key prod/own -- /jobs/import.sh');
      expect(own.code, own.stderr).toBe(0);
      const otherLocal = await runCli(['reserve', '--run-key', 'other/theirs', '--', '/jobs/import.sh'], { home: w.sb });
      expect(otherLocal.code).toBe(0);
      const job = await runStandin(['start', '--run-key', 'not-a-reservation', '--', '/bin/true'], { home: w.sb });
      const jobId = JSON.parse(job.stdout).job_id as string;
      const before = await ledger(w.sb);
      const r = (run_key: string, extra: object = {}) => providerLines([{ run_key, command: ['/jobs/import.sh'], ...extra }])[0] as string;
      const escapes: Array<[string, RegExp]> = [
        [`${r('prod/a')}; touch ${w.home}/pwned`, /";" outside quotes/],
        [`${r('prod/a')} && touch ${w.home}/pwned`, /"&" outside quotes/],
        [`orchesjob-reserver list | tee ${w.home}/pwned`, /"\|" outside quotes/],
        ['orchesjob-reserver status --run-key "$(touch pwned)"', /"\$" inside double quotes/],
        ['orchesjob-reserver status --run-key `touch pwned`', /backtick outside single quotes/],
        [`orchesjob-reserver list > ${w.home}/pwned`, /">" outside quotes/],
        ['orchesjob-reserver list < /etc/passwd', /"<" outside quotes/],
        [`orchesjob-reserver list\ntouch ${w.home}/pwned`, /newline outside quotes/],
        ['orchesjob-reserver reserve --run-key prod/g -- /jobs/*', /"\*" outside quotes/],
        [r('prod/a', { db: join(w.home, 'other.sqlite3') }), /--db .* is not the gate's database/],
        [r('prod/a', { orchesjob_bin: '/bin/sh' }), /--orchesjob-bin \/bin\/sh is not the host's orchesjob/],
        [r('prod/a', { env: { ORCHESJOB_HOME: '/tmp' } }), /ORCHESJOB_HOME=\/tmp names another database/],
        [r('prod/a', { env: { LD_PRELOAD: '/tmp/x.so' } }), /the variable LD_PRELOAD may not be set/],
        ['orchesjob-reserver run', /the verb "run" is not allowed/],
        ['orchesjob-reserver clean --all', /the verb "clean" is not allowed/],
        ['orchesjob-reserver gate --policy /tmp/p --key x', /the verb "gate" is not allowed/],
        ['sh -c id', /the program must be orchesjob-reserver/],
        [r('other/mine'), /outside this key's prefix "prod\/"/],
        [providerLines([{ run_key: 'prod/a', command: ['/bin/sh', '-c', 'id'] }])[0] as string, /command "\/bin\/sh" is not allowed/],
        [providerLines([{ run_key: 'prod/a', command: [`${w.home}/jobs/../../bin/sh`] }])[0] as string, /is not allowed for this key/],
        [r('prod/a', { start_options: ['--bypass'] }), /start option "--bypass" is not allowed/],
        [r('prod/a', { metadata: { blob: 'x'.repeat(5000) } }), /over this key's limit of 4096/],
        ['orchesjob status --run-key other/theirs', /outside this key's prefix/],
        [`orchesjob status --job-id ${jobId}`, /is not the job of one of this key's reservations/],
        ['orchesjob start --run-key prod/x -- /bin/sh', /only "orchesjob status" goes through the gate/],
        ["orchesjob-reserver 'orchesjob status' --run-key prod/a", /the verb "orchesjob status" contains a blank/],
      ];
      for (const [line, reason] of escapes) expect(refused(await ssh(w.sshd, line)), line).toMatch(reason);
      // Another key's run key answers as one that does not exist.
      for (const verb of ['status', 'result', 'cancel', 'history']) {
        const r4 = await ssh(w.sshd, `orchesjob-reserver ${verb} --run-key other/theirs`);
        expect({ code: r4.code, stdout: r4.stdout, stderr: r4.stderr }).toEqual({ code: 4, stdout: '', stderr: '{"error": "Reservation not found."}\n' });
      }
      expect(JSON.parse((await ssh(w.sshd, 'orchesjob-reserver list')).stdout).reservations.map((x: { run_key: string }) => x.run_key)).toEqual(['prod/own']);
      expect(existsSync(join(w.home, 'pwned'))).toBe(false);
      expect(await ledger(w.sb)).toBe(before);
      const lines = await auditLines(w, escapes.length);
      expect(lines).toHaveLength(escapes.length);
      const first = JSON.parse((lines[0] as string).replace(/^.*orchesjob-reserver-gate\[\d+\]: /, ''));
      const firstLine = (escapes[0] as [string, RegExp])[0];
      expect(first).toEqual({
        event: 'gate_refused',
        key: 'airflow-prod',
        verb: null,
        run_key: null,
        reason: expect.stringContaining('";" outside quotes'),
        command_bytes: Buffer.byteLength(firstLine),
        command_sha256: createHash('sha256').update(firstLine).digest('hex'),
      });
      const prefix = JSON.parse((lines[17] as string).replace(/^.*orchesjob-reserver-gate\[\d+\]: /, ''));
      expect(prefix).toMatchObject({ key: 'airflow-prod', verb: 'reserve', run_key: 'other/mine' });
    });
  });

  it('an audit line the client makes huge or full of control characters still reaches the system log, capped, with the hash of the whole line', async () => {
    await withWorld(async (w) => {
      const lines = [`orchesjob-reserver ${'v'.repeat(110_000)} --run-key prod/a`, `orchesjob-reserver '${'\x01'.repeat(24_000)}'`];
      for (const line of lines) refused(await ssh(w.sshd, line));
      const logged = (await auditLines(w, 2)).map((l) => JSON.parse(l.replace(/^.*orchesjob-reserver-gate\[\d+\]: /, '')));
      for (const [i, line] of lines.entries()) {
        expect(logged[i]).toMatchObject({
          event: 'gate_refused',
          key: 'airflow-prod',
          command_bytes: Buffer.byteLength(line),
          command_sha256: createHash('sha256').update(line).digest('hex'),
        });
      }
      expect(logged[0].verb).toMatch(/^v+…\(\+\d+ chars\)$/);
      expect(logged[1].verb).toMatch(/^\x01+…\(\+\d+ chars\)$/);
      expect(Math.max(...readFileSync(w.auditLog, 'utf8').split('\n').map((l) => l.length))).toBeLessThan(2048);
    });
  });

  it('refuses an interactive login, scp and sftp; restrict refuses port forwards', async () => {
    await withWorld(async (w) => {
      const before = await ledger(w.sb);
      const login = await client('ssh', w.sshd, ['-T', 'root@127.0.0.1']);
      expect(refused(login)).toContain('an interactive login');
      writeFileSync(join(w.home, 'payload'), 'x');
      const scp = await client('scp', w.sshd, ['-O', join(w.home, 'payload'), `root@127.0.0.1:${w.home}/copied`]);
      expect(scp.code).not.toBe(0);
      const sftp = await client('sftp', w.sshd, ['-b', '-', 'root@127.0.0.1'], `put ${join(w.home, 'payload')} ${w.home}/copied2\n`);
      expect(sftp.code).not.toBe(0);
      expect(existsSync(join(w.home, 'copied')) || existsSync(join(w.home, 'copied2'))).toBe(false);
      const stdio = await client('ssh', w.sshd, ['-W', `127.0.0.1:${w.sshd.port}`, 'root@127.0.0.1']);
      expect(stdio.code).toBe(255);
      expect(stdio.stderr).toMatch(/administratively prohibited|open failed|stdio forwarding failed/);
      const remote = await client('ssh', w.sshd, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', '0:127.0.0.1:9', 'root@127.0.0.1']);
      expect(remote.code).toBe(255);
      expect(await ledger(w.sb)).toBe(before);
      const lines = await auditLines(w, 3);
      expect(lines.join('\n')).toContain('an interactive login');
    });
  });
});

describe('gate without unix-dgram (an optional dependency that could not be built)', () => {
  it('still refuses with exit 3, and says on stderr that the audit line could not be written', () => {
    const sb = sandbox();
    const home = sb.dir;
    const policy = writePolicy(sb);
    const blocker = join(home, 'no-unix-dgram.cjs');
    writeFileSync(blocker, "const M = require('module'); const r = M._resolveFilename; M._resolveFilename = function (request, ...rest) { if (request === 'unix-dgram') throw Object.assign(new Error(\"Cannot find module 'unix-dgram'\"), { code: 'MODULE_NOT_FOUND' }); return r.call(this, request, ...rest); };\n");
    const r = spawnSync(process.execPath, ['--require', blocker, CLI, 'gate', '--policy', policy, '--key', 'airflow-prod', '--syslog-socket', join(home, 'log.sock')], {
      env: { PATH: process.env['PATH'], SSH_ORIGINAL_COMMAND: 'orchesjob-reserver run' },
      encoding: 'utf8',
    });
    expect({ code: r.status, stdout: r.stdout }).toEqual({ code: 3, stdout: '' });
    const [notice, error] = r.stderr.trimEnd().split('\n');
    expect(notice).toMatch(/^orchesjob-reserver gate: the audit line could not be written: cannot load unix-dgram .*Cannot find module 'unix-dgram'/);
    expect(JSON.parse(error as string).error).toBe('not permitted: the verb "run" is not allowed for this key');
  });
});
