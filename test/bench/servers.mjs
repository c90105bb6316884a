// The two servers under comparison, both on loopback, and the stock OpenSSH
// client that talks to them: walhub (`node dist/cli.js serve`) and OpenSSH's
// sshd with its own sshd_config, host key and authorized_keys.
import { existsSync, readFileSync } from 'node:fs';
import { chown, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defer, findFreePort, findProgram, makeDir, readText, run, start, waitUntil } from './lib.mjs';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/**
 * The node options walhub is served with, as `npm start` and the systemd unit
 * run it (package.json's start script: `node FLAGS dist/cli.js serve`), so
 * that the bench measures what users run.
 */
export const SERVE_NODE_FLAGS = (() => {
  const { scripts } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const match = /^node((?:\s+--\S+)*)\s+dist\/cli\.js serve$/.exec(scripts.start);
  if (!match) throw new Error(`package.json's start script is not "node [--flags] dist/cli.js serve": ${scripts.start}`);
  return match[1].trim().split(/\s+/).filter(Boolean);
})();

/** An ed25519 key made by ssh-keygen; owned by `owner` (the user whose ssh will use it) when given. */
export async function makeClientKey(dir, name, owner) {
  const path = join(dir, `id_${name}`);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path]);
  if (owner) await chown(path, owner.uid, owner.gid);
  return { path, publicLine: (await readFile(`${path}.pub`, 'utf8')).trim() };
}

/** The readahead cache as walhub ships it (issue 8): on by default, 256 MiB, 4 segments ahead. */
export const CACHE_DEFAULTS = { memory: '256MiB', readahead: 4 };
/** The defaults, with the whole budget taken at start. */
export const CACHE_PREALLOCATED = { preallocate: true };
/** The cache turned off: nothing read ahead, nothing kept, every fetch cold. */
export const CACHE_OFF = { memory: 0 };

/** A `[cache]` table for walhub.toml: undefined writes none (the build's defaults). */
export function cacheToml(cache) {
  if (!cache) return '';
  return ['[cache]', ...Object.entries(cache).map(([k, v]) => `${k} = ${JSON.stringify(v)}`), ''].join('\n');
}

/**
 * Whether a walhub build knows the `[cache]` table with these settings (by
 * default the table that turns it off): `walhub check` on a config with it.
 * Resolves true, or false when the build rejects `cache` or one of its keys
 * as unknown; any other failure is a broken bench.
 */
export async function buildKnowsCache(dir, cli = CLI, cache = CACHE_OFF) {
  await makeDir(join(dir, 'archive'));
  await writeFile(join(dir, 'authorized_keys'), '', { mode: 0o600 });
  const config = join(dir, 'walhub.toml');
  await writeFile(
    config,
    ['user = "walhub"', 'host_keys = ["ssh_host_ed25519_key"]', 'authorized_keys = "authorized_keys"', 'archive = "archive"', 'audit_log = "audit.log"', cacheToml(cache)].join('\n'),
  );
  const answer = await run(process.execPath, [cli, 'check', '--config', config]).then(
    () => '',
    (error) => error.message,
  );
  if (answer === '') return true;
  if (/\bcache(\.\w+)?: unknown key\b/.test(answer)) return false;
  throw new Error(`walhub check on a config with [cache] failed for another reason: ${answer}`);
}

/**
 * `walhub serve` on 127.0.0.1, port 0 read back from its log. Every start in
 * the same `dir` reuses the host key walhub created the first time and appends
 * to the same audit log (dir/audit.log). `cache`: the [cache] settings, or
 * undefined for none written.
 * Resolves { pid, port, knownHosts, auditLog, stop() }.
 */
export async function startWalhub({ dir, archive, authorizedKeys, extraToml = '', cache, cli = CLI }) {
  await writeFile(join(dir, 'authorized_keys'), authorizedKeys.map((l) => `${l}\n`).join(''), { mode: 0o600 });
  const config = join(dir, 'walhub.toml');
  await writeFile(
    config,
    [
      'listen = ["127.0.0.1:0"]',
      'user = "walhub"',
      'host_keys = ["ssh_host_ed25519_key"]',
      'authorized_keys = "authorized_keys"',
      `archive = ${JSON.stringify(archive)}`,
      'audit_log = "audit.log"',
      extraToml,
      cacheToml(cache),
    ].join('\n'),
  );
  const child = start(process.execPath, [...SERVE_NODE_FLAGS, cli, 'serve', '--config', config]);
  const lines = [];
  let stderr = '';
  let buffered = '';
  child.stdout.setEncoding('utf8').on('data', (text) => {
    buffered += text;
    const parts = buffered.split('\n');
    buffered = parts.pop();
    for (const line of parts) {
      try {
        lines.push(JSON.parse(line));
      } catch {
        lines.push({ msg: line });
      }
    }
  });
  child.stderr.setEncoding('utf8').on('data', (t) => (stderr += t));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const stop = defer(`walhub ${child.pid}`, async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  });
  const find = (predicate) => {
    if (child.exitCode !== null) throw new Error(`walhub exited (${child.exitCode}): ${stderr.trim()}`);
    return lines.find(predicate);
  };
  const listening = await waitUntil('walhub to listen', () => find((l) => l.msg === 'listening'), { timeoutMs: 20_000 });
  const hostLine = await waitUntil('walhub known_hosts line', () => find((l) => typeof l.known_hosts === 'string'));
  const knownHosts = join(dir, 'known_hosts');
  await writeFile(knownHosts, `${hostLine.known_hosts}\n`, { mode: 0o644 });
  return { pid: child.pid, port: listening.port, knownHosts, user: 'walhub', auditLog: join(dir, 'audit.log'), lines, stop };
}

/**
 * OpenSSH sshd -D on 127.0.0.1 with everything in `dir`. Must run as root (it
 * switches to the login user). authorizedKeys: [{ options?, key }] for root.
 * Resolves { port, knownHosts, stop() }.
 */
export async function startSshd({ dir, authorizedKeys }) {
  const sshd = findProgram('sshd');
  if (!sshd) throw new Error('sshd not found');
  // Debian's sshd refuses to start without its privilege separation directory;
  // systemd creates it for the packaged service, so a bare start must too.
  if (!existsSync('/run/sshd')) {
    await makeDir('/run/sshd', { mode: 0o755 });
    defer('/run/sshd', () => rmdir('/run/sshd').catch(() => {}));
  }
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-sshd', '-f', join(dir, 'ssh_host_ed25519_key')]);
  // No ~/.bashrc for the login shell: HOME is pointed at an empty directory
  // (environment= below), because sshd runs every command through the user's
  // shell and Debian's bash reads ~/.bashrc when started by sshd; on a developer
  // machine that can add seconds (pyenv init) that have nothing to do with sshd.
  const home = await makeDir(join(dir, 'home'));
  const keysFile = join(dir, 'authorized_keys');
  const lines = authorizedKeys.map(({ options, key }) => `${[`environment="HOME=${home}"`, ...(options ? [options] : [])].join(',')} ${key}\n`);
  await writeFile(keysFile, lines.join(''), { mode: 0o644 });
  const log = join(dir, 'sshd.log');
  for (let attempt = 1; ; attempt++) {
    const port = await findFreePort();
    const config = join(dir, 'sshd_config');
    await writeFile(
      config,
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${join(dir, 'ssh_host_ed25519_key')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${keysFile}`,
        'PermitUserEnvironment HOME',
        'StrictModes no',
        'UsePAM no',
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PrintMotd no',
        'MaxStartups 100',
        'LogLevel INFO',
        '',
      ].join('\n'),
    );
    await writeFile(log, '');
    const child = start(sshd, ['-D', '-f', config, '-E', log], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    const listening = await waitUntil('sshd to listen', async () => {
      if (child.exitCode !== null) return 'exited';
      return (await readText(log)).includes('Server listening on') ? 'up' : undefined;
    });
    if (listening === 'exited') {
      const why = (await readText(log)).trim();
      if (attempt < 3 && /Address already in use/.test(why)) continue; // the free port was taken meanwhile
      throw new Error(`sshd did not start: ${why}`);
    }
    const stop = defer(`sshd ${child.pid}`, async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    });
    const hostKey = (await readFile(join(dir, 'ssh_host_ed25519_key.pub'), 'utf8')).trim().split(' ').slice(0, 2).join(' ');
    const knownHosts = join(dir, 'known_hosts');
    await writeFile(knownHosts, `[127.0.0.1]:${port} ${hostKey}\n`, { mode: 0o644 });
    return { port, knownHosts, user: 'root', log, stop };
  }
}

/**
 * Arguments of the stock OpenSSH client, as a standby's restore_command
 * would use it. `-F none`: no ssh_config of this machine changes the result.
 */
export function sshArgs(target, key, extra = [], { logLevel = 'ERROR' } = {}) {
  return [
    '-F', 'none',
    '-T',
    '-p', String(target.port),
    '-i', key.path,
    '-o', 'IdentitiesOnly=yes',
    '-o', `UserKnownHostsFile=${target.knownHosts}`,
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'BatchMode=yes',
    '-o', `LogLevel=${logLevel}`,
    ...extra,
    `${target.user}@127.0.0.1`,
  ];
}

/**
 * A ControlMaster for `target` at `controlPath`, persisting in the background; stopped with `ssh -O exit`.
 * `extra`: more client options for the master (it negotiates the connection's algorithms).
 */
export async function startMaster(target, key, controlPath, { as, extra = [] } = {}) {
  const args = sshArgs(target, key, ['-o', `ControlPath=${controlPath}`, ...extra]);
  // -f: ssh forks once authenticated; the foreground process exits 0 then.
  await run('ssh', ['-M', '-N', '-f', '-o', 'ControlPersist=60', ...args], { as, timeoutMs: 20_000 });
  await run('ssh', ['-O', 'check', ...args], { as });
  return defer(`ssh master ${controlPath}`, () => stopMaster(target, key, controlPath, { as }));
}

/** `ssh -O exit` on a control socket, if it is there. */
export async function stopMaster(target, key, controlPath, { as } = {}) {
  if (!existsSync(controlPath)) return;
  await run('ssh', ['-O', 'exit', ...sshArgs(target, key, ['-o', `ControlPath=${controlPath}`])], { as }).catch(() => {});
}

/** The algorithms a fresh connection negotiates (from `ssh -v`), e.g. { kex, cipher }. */
export async function describeConnection(target, key, command) {
  const args = [...sshArgs(target, key, [], { logLevel: 'DEBUG1' }), command];
  const { stderr } = await run('ssh', args).catch((e) => ({ stderr: e.message }));
  const kex = /kex: algorithm: (\S+)/.exec(stderr)?.[1];
  const cipher = /kex: server->client cipher: (\S+) MAC: (\S+)/.exec(stderr);
  return { kex, cipher: cipher ? (cipher[2] === '<implicit>' ? cipher[1] : `${cipher[1]} ${cipher[2]}`) : undefined };
}
