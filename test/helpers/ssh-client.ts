import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireProgram } from './programs.js';

const run = promisify(execFile);

export interface ClientKey {
  readonly name: string;
  readonly privatePath: string;
  /** `ssh-ed25519 AAAA... name` */
  readonly publicLine: string;
  readonly fingerprint: string;
}

/** A standby key made by the real ssh-keygen. */
export async function createClientKey(dir: string, name: string, type: 'ed25519' | 'rsa' | 'ecdsa' = 'ed25519'): Promise<ClientKey> {
  const keygen = requireProgram('ssh-keygen', 'openssh-client');
  const privatePath = join(dir, `id_${name}`);
  await run(keygen, ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '3072'] : []), '-N', '', '-C', name, '-f', privatePath]);
  const publicLine = (await readFile(`${privatePath}.pub`, 'utf8')).trim();
  const { stdout } = await run(keygen, ['-l', '-E', 'sha256', '-f', `${privatePath}.pub`]);
  return { name, privatePath, publicLine, fingerprint: stdout.split(' ')[1]! };
}

export interface SshTarget {
  readonly port: number;
  readonly knownHosts: string;
  readonly host?: string;
  readonly user?: string;
}

export interface SshResult {
  readonly status: number | null;
  /** The first MiB of stdout, for assertions on small outputs. */
  readonly stdout: Buffer;
  readonly bytes: number;
  readonly sha256: string;
  readonly stderr: string;
}

const KEPT_STDOUT = 1 << 20;

/** The real OpenSSH client, as a standby's restore_command runs it. */
export function sshArgs(target: SshTarget, key: ClientKey | undefined, extra: readonly string[] = [], logLevel = 'ERROR'): string[] {
  return [
    '-T',
    '-p', String(target.port),
    ...(key ? ['-i', key.privatePath, '-o', 'IdentitiesOnly=yes'] : ['-o', 'PubkeyAuthentication=no']),
    '-o', `UserKnownHostsFile=${target.knownHosts}`,
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'BatchMode=yes',
    '-o', `LogLevel=${logLevel}`,
    '-o', 'ConnectTimeout=10',
    ...extra,
    `${target.user ?? 'walhub'}@${target.host ?? '127.0.0.1'}`,
  ];
}

export function sshExec(
  target: SshTarget,
  key: ClientKey | undefined,
  command: string | undefined,
  options: { extra?: readonly string[]; timeoutMs?: number; logLevel?: string; forceTty?: boolean } = {},
): Promise<SshResult> {
  const ssh = requireProgram('ssh', 'openssh-client');
  const base = sshArgs(target, key, options.extra, options.logLevel);
  // -tt asks for a pty even without a terminal, as `RequestTTY force` in ssh_config does.
  const args = [...(options.forceTty ? ['-tt', ...base.filter((a) => a !== '-T')] : base), ...(command === undefined ? [] : [command])];
  return new Promise((resolve, reject) => {
    const child = spawn(ssh, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const kept: Buffer[] = [];
    const hash = createHash('sha256');
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      if (bytes < KEPT_STDOUT) kept.push(chunk);
      bytes += chunk.length;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const timeoutMs = options.timeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ssh ${command ?? ''} did not finish in ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: Buffer.concat(kept).subarray(0, KEPT_STDOUT), bytes, sha256: hash.digest('hex'), stderr });
    });
  });
}
