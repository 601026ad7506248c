/**
 * A private sshd for `test/e2e/gate-ssh.e2e.test.ts`: Debian's openssh-server on 127.0.0.1 and a free
 * port, its own host key, sshd_config, authorized_keys and pid file in the test's temp folder, run as
 * the current user; and the real `ssh`, `scp` and `sftp` clients in BatchMode. sshd (as root) insists
 * on its privilege-separation folder /run/sshd, which the system may not have: it runs in a mount
 * namespace of its own (`unshare -m`) with a private tmpfs on /run, so no system file is touched.
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Tracked } from './rsyslog.js';
import { freePort, spawnTracked, waitForListener } from './rsyslog.js';

export const SSHD = '/usr/sbin/sshd';

export function sshdInstalled(): boolean {
  try {
    accessSync(SSHD, constants.X_OK);
    accessSync('/usr/bin/ssh', constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface Sshd {
  readonly process: Tracked;
  readonly port: number;
  /** The client's private key. */
  readonly identity: string;
}

export interface SshResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function keygen(file: string): void {
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
}

/**
 * Start sshd in `dir` with `authorizedKeys(publicKey)` as its authorized_keys and `setEnv` set in
 * every session (sshd gives a session a fresh environment: SetEnv is how the test's paths reach it).
 */
export async function startSshd(dir: string, authorizedKeys: (publicKey: string) => string, setEnv: Record<string, string>): Promise<Sshd> {
  const hostKey = join(dir, 'host_ed25519');
  const identity = join(dir, 'client_ed25519');
  keygen(hostKey);
  keygen(identity);
  writeFileSync(join(dir, 'authorized_keys'), authorizedKeys(readFileSync(`${identity}.pub`, 'utf8').trim()), { mode: 0o600 });
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'UsePAM no',
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      // Allowed here, so that what refuses a forward in the test is the key's `restrict`.
      'AllowTcpForwarding yes',
      'Subsystem sftp /usr/lib/openssh/sftp-server',
      `SetEnv ${Object.entries(setEnv).map(([k, v]) => `${k}=${v}`).join(' ')}`,
      '',
    ].join('\n'),
  );
  const check = spawnSync(SSHD, ['-t', '-f', config], { encoding: 'utf8' });
  if (check.status !== 0 && !/privilege separation/.test(check.stderr)) throw new Error(`sshd -t: ${check.stderr}`);
  const script = `mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && exec ${SSHD} -D -e -f ${config}`;
  const process = spawnTracked('unshare', ['-m', 'sh', '-c', script], { cwd: dir });
  await waitForListener(port).catch((error: unknown) => {
    throw new Error(`${String(error)}\n${process.output()}`);
  });
  return { process, port, identity };
}

const CLIENT_OPTIONS = ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];

/** Run a client (`ssh`, `scp`, `sftp`) against the sshd; `args` follow the common options. */
export function client(program: 'ssh' | 'scp' | 'sftp', sshd: Sshd, args: readonly string[], input = ''): Promise<SshResult> {
  const portFlag = program === 'ssh' ? '-p' : '-P';
  return new Promise((resolve, reject) => {
    const child = spawn(program, [...CLIENT_OPTIONS, '-i', sshd.identity, portFlag, String(sshd.port), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.end(input);
  });
}

/** `ssh root@127.0.0.1 LINE`: the line is SSH_ORIGINAL_COMMAND on the server, as the provider's exec_command sends it. */
export function ssh(sshd: Sshd, line: string): Promise<SshResult> {
  return client('ssh', sshd, ['-T', 'root@127.0.0.1', line]);
}
