// What a standby's administrator sets up to fetch WAL through walhub: the
// postgres user's own copy of the standby key and of walhub's known_hosts line,
// and the restore_command lines the README gives, built here exactly as they
// go into postgresql.conf.
import { chmod, copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Hub } from './hub.js';
import { asPostgres, chownToPostgres, spawnAsPostgres } from './postgres.js';
import { requireProgram } from './programs.js';
import type { ClientKey } from './ssh-client.js';

export interface StandbyAccess {
  /** A dir owned by postgres, mode 0700, like ~postgres/.ssh. */
  readonly dir: string;
  readonly keyPath: string;
  readonly knownHosts: string;
  /** Where ControlMaster sockets go. */
  readonly controlDir: string;
  readonly port: number;
  /** Ends any ControlMaster left running (`ssh -O exit`) and removes dir. */
  cleanup(): Promise<void>;
}

export type RestoreForm = 'plain' | 'recommended';

/** Copies the key and known_hosts where the postgres user can read them, as on a standby. */
export async function createStandbyAccess(hub: Hub, key: ClientKey, parent = tmpdir()): Promise<StandbyAccess> {
  const dir = await mkdtemp(join(parent, 'walhub-ssh-'));
  const keyPath = join(dir, 'id_walhub');
  const knownHosts = join(dir, 'known_hosts');
  const controlDir = join(dir, 'cm');
  await copyFile(key.privatePath, keyPath);
  await copyFile(hub.knownHosts, knownHosts);
  await mkdir(controlDir);
  await chmod(keyPath, 0o600);
  await chmod(dir, 0o700);
  for (const path of [dir, keyPath, knownHosts, controlDir]) await chownToPostgres(path);
  return {
    dir,
    keyPath,
    knownHosts,
    controlDir,
    port: hub.port,
    async cleanup() {
      await stopControlMaster({ controlDir, port: hub.port });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// What any standby needs: its key, the hub's host key, and never a prompt.
function toSshCommand(access: StandbyAccess): string {
  return [
    'ssh -T',
    `-p ${access.port}`,
    `-i ${access.keyPath} -o IdentitiesOnly=yes`,
    `-o UserKnownHostsFile=${access.knownHosts} -o StrictHostKeyChecking=yes`,
    '-o BatchMode=yes',
  ].join(' ');
}

/**
 * The restore_command value (before postgresql.conf quoting).
 *
 * plain: the one-liner. When walhub cannot be reached, ssh exits 255, and
 * PostgreSQL takes any status above 125 as fatal: a standby shuts down.
 *
 * recommended: also
 * - ConnectTimeout, so a dead network costs seconds, not minutes;
 * - ControlMaster/ControlPersist, one SSH connection for many segments (walhub
 *   takes several sessions per connection); `%%C` is how postgresql.conf writes
 *   ssh's %C (PostgreSQL would turn %p and %r into its own values);
 * - 255 (ssh could not connect, or the connection broke) becomes 5, "not
 *   available now": a standby retries after wal_retrieve_retry_interval. Every
 *   other status passes through; 143 (SIGTERM at shutdown) must stay as it is.
 *   Plain /bin/sh, no quotes: the line needs no quoting in postgresql.conf.
 */
export function toRestoreCommand(access: StandbyAccess, server: string, form: RestoreForm, getWalOptions: readonly string[] = []): string {
  const ssh = toSshCommand(access);
  const getWal = ['get-wal', ...getWalOptions, server].join(' ');
  if (form === 'plain') return `${ssh} walhub@127.0.0.1 ${getWal} %f > %p`;
  return (
    `${ssh} -o ConnectTimeout=10 -o ControlMaster=auto -o ControlPersist=60 -o ControlPath=${access.controlDir}/%%C ` +
    `walhub@127.0.0.1 ${getWal} %f > %p; rc=$?; [ $rc -eq 255 ] && rc=5; exit $rc`
  );
}

/** PostgreSQL's own expansion (src/common/archive.c): %f, %p and %%; any other % stays as written. */
export function expandRestoreCommand(command: string, wal: string, dest: string): string {
  return command.replace(/%([fp%])/g, (_all, letter: string) => (letter === 'f' ? wal : letter === 'p' ? dest : '%'));
}

export interface RestoreRun {
  /** The shell's exit status, as PostgreSQL's system() sees it (128+n for a signal). */
  readonly status: number;
  readonly stderr: string;
}

/** Runs a restore_command by hand as the postgres user (or `user`), with /bin/sh -c as PostgreSQL does. */
export function runRestoreCommand(command: string, wal: string, dest: string, opts: { cwd?: string; user?: string } = {}): Promise<RestoreRun> {
  const sh = requireProgram('sh', 'dash');
  const child = spawnAsPostgres(sh, ['-c', expandRestoreCommand(command, wal, dest)], { cwd: opts.cwd ?? '/', ...(opts.user ? { user: opts.user } : {}) });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  child.stdout?.resume();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? 128 + (signal ? constants.signals[signal] : 0), stderr });
    });
  });
}

/** `ssh -O exit` to the ControlMaster in access.controlDir, if one is running (quietly: there may be none). */
async function stopControlMaster(access: Pick<StandbyAccess, 'controlDir' | 'port'>): Promise<void> {
  const ssh = requireProgram('ssh', 'openssh-client');
  await asPostgres(ssh, [
    '-O', 'exit', '-o', `ControlPath=${access.controlDir}/%C`, '-p', String(access.port), 'walhub@127.0.0.1',
  ]).catch(() => undefined);
}
