// The walhub command as an administrator runs it: check, host-key, serve's
// start-up refusals, and key reloads on a running server.
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AES_INSTRUCTIONS, CIPHERS_OFFERED } from '../helpers/ciphers.js';
import { CLI, startHub, startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { requireProgram } from '../helpers/programs.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';

const run = promisify(execFile);

async function walhub(args: string[], env?: NodeJS.ProcessEnv): Promise<{ status: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], env ? { env } : {});
    return { status: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { status: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'walhub-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe('walhub check', () => {
  it('names the file, the key and what was expected, one line per problem, and exits 1', async () => {
    const config = await writeConfig(
      'bad.toml',
      'listen = ["127.0.0.1"]\nusre = "walhub"\n[limits]\nlogin_grace_time = "soon"\nmax_sessions = 0\n',
    );
    const result = await walhub(['check', '--config', config]);
    expect(result.status).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      `walhub: ${config}: usre: unknown key (expected one of listen, user, host_keys, authorized_keys, archive, audit_log, servers, limits, fips_algorithms, metrics, proxy, cache)`,
      `walhub: ${config}: listen: expected "host:port" or "[ipv6]:port", got "127.0.0.1"`,
      `walhub: ${config}: limits.login_grace_time: expected a duration like "30s", "5m" or "1h", from 1s to 576h`,
      `walhub: ${config}: limits.max_sessions: expected a whole number from 1 to 100000`,
    ]);
  });

  it('says which formats it cannot decode, and that -j cannot compress, on a host without the bzip2, xz and lz4 programs', async () => {
    const config = await writeConfig('programs.toml', `archive = ${JSON.stringify(dir)}\nauthorized_keys = ${JSON.stringify(join(dir, 'no-keys'))}\n`);
    const result = await walhub(['check', '--config', config], { ...process.env, PATH: join(dir, 'no-programs') });
    expect(result.stdout).toContain('decoders      gzip, zstd, snappy (not available: bzip2, xz, lz4)\n');
    expect(result.stdout).toContain('encoders      gzip (not available: bzip2)\n');
  });

  it('names the ciphers it offers, which depend on whether the CPU has AES instructions', async () => {
    const config = await writeConfig('ciphers.toml', `archive = ${JSON.stringify(dir)}\nauthorized_keys = ${JSON.stringify(join(dir, 'no-keys'))}\n`);
    const result = await walhub(['check', '--config', config]);
    const why = AES_INSTRUCTIONS ? 'this CPU has AES instructions' : 'no AES instructions found in /proc/cpuinfo';
    expect(result.stdout).toContain(`ciphers       ${CIPHERS_OFFERED.join(', ')} (${why})\n`);
  });

  it('serve refuses the same configuration with the same lines', async () => {
    const config = await writeConfig('bad2.toml', 'user = 7\n');
    const result = await walhub(['serve', '--config', config]);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`walhub: ${config}: user: expected a non-empty string\n`);
  });

  it('reports bad authorized_keys lines with their line numbers and exits 1', async () => {
    const key = await createClientKey(dir, 'check-a');
    await writeFile(join(dir, 'authorized_keys'), `servers="pg1" ${key.publicLine}\n${key.publicLine}\ncommand="sh" ${key.publicLine}\n`);
    const config = await writeConfig('keys.toml', `authorized_keys = "authorized_keys"\nhost_keys = ["nokey_ed25519"]\narchive = "archive"\n`);
    const result = await walhub(['check', '--config', config]);
    expect(result.status).toBe(1);
    expect(result.stdout).toContain(`${key.fingerprint} check-a servers=pg1`);
    expect(result.stderr).toContain(`${join(dir, 'authorized_keys')}:2: servers="..." is required`);
    expect(result.stderr).toContain(`${join(dir, 'authorized_keys')}:3: command= is refused: walhub runs only get-wal`);
  });

  it('prints a summary and exits 0 for a good configuration', async () => {
    // Its own copy of the shipped default: a user may change the checkout's etc/walhub.toml, as the README says.
    const shipped = await readFile(new URL('../../etc/walhub.toml', import.meta.url), 'utf8');
    const config = await writeConfig('default.toml', shipped.replace(/^listen = .*$/m, 'listen = ["127.0.0.1:2299"]'));
    const result = await walhub(['check', '--config', config]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('listen        127.0.0.1:2299');
    expect(result.stdout).toContain('user          walhub');
    // The shipped default's archive is under the checkout, where nothing has put WAL.
    expect(result.stderr).toBe(`walhub: warning: the archive root ${join(dir, '..', 'var', 'archive')} does not exist: every get-wal is "not found" on this node\n`);
    expect(result.stdout.trim().split('\n').at(-1)).toBe('ok (1 warning(s))');
  });

  it('warns of an archive root that is missing or empty, which a node behind a balancer would serve "not found" from, and still exits 0', async () => {
    const empty = join(dir, 'empty-archive');
    await mkdir(empty, { recursive: true });
    await writeFile(join(dir, 'archive_keys'), '');
    for (const [archive, what] of [[empty, 'is empty'], [join(dir, 'no-archive'), 'does not exist']] as const) {
      const config = await writeConfig('archive.toml', `authorized_keys = "archive_keys"\nhost_keys = ["nokey_ed25519"]\narchive = ${JSON.stringify(archive)}\n`);
      const result = await walhub(['check', '--config', config]);
      expect(result.status).toBe(0);
      expect(result.stderr).toBe(`walhub: warning: the archive root ${archive} ${what}: every get-wal is "not found" on this node\n`);
      expect(result.stdout.trim().split('\n').at(-1)).toBe('ok (1 warning(s))');
    }
  });

  it('warns, with line numbers, of an expired key, a server ID the archive lacks, a key name used twice and a from= no address matches, and still exits 0', async () => {
    const [a, b, c, d] = await Promise.all(['warn-a', 'warn-b', 'warn-c', 'warn-d'].map((name) => createClientKey(dir, name)));
    await mkdir(join(dir, 'warn-archive', 'pg1'), { recursive: true });
    const keys = join(dir, 'warn_keys');
    await writeFile(
      keys,
      [
        `servers="pg1",expiry-time="20200101" ${a!.publicLine}`,
        `servers="pg1,pg9" ${b!.publicLine}`,
        `servers="*" ${c!.publicLine.replace(/warn-c$/, 'warn-a')}`,
        `servers="pg1",from="!10.1.0.0/16" ${d!.publicLine}`,
      ].join('\n'),
    );
    const config = await writeConfig('warn.toml', `authorized_keys = "warn_keys"\nhost_keys = ["nokey_ed25519"]\narchive = "warn-archive"\n`);
    const result = await walhub(['check', '--config', config]);
    expect(result.status).toBe(0);
    expect(result.stderr.trim().split('\n')).toEqual([
      `walhub: warning: ${keys}:1: the key warn-a expired on ${new Date(2020, 0, 1).toISOString()}; every login with it is refused`,
      `walhub: warning: ${keys}:2: the key warn-b is allowed pg9, which the archive does not have (yet)`,
      `walhub: warning: ${keys}:3: the key name warn-a is also used on line 1: the audit log cannot tell the two keys apart by name`,
      `walhub: warning: ${keys}:4: the key warn-d has from="!10.1.0.0/16", only negations, which no address matches; every login with it is refused (for every address but those, put * first: from="*,!10.1.0.0/16")`,
    ]);
    expect(result.stdout.trim().split('\n').at(-1)).toBe('ok (4 warning(s))');
  });

  it('says "no such file" for a configuration that is not there', async () => {
    const missing = join(dir, 'nowhere.toml');
    const result = await walhub(['check', '--config', missing]);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`walhub: ${missing}: cannot read: no such file\n`);
  });
});

describe('walhub serve start-up', () => {
  it('names the address in use and the setting to change, in one line', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const { port } = busy.address() as AddressInfo;
    try {
      const config = await writeConfig('busy.toml', `listen = ["127.0.0.1:${port}"]\nhost_keys = ["busy_ed25519"]\nauthorized_keys = "busy_keys"\narchive = "archive"\naudit_log = "busy-audit.log"\n`);
      const result = await walhub(['serve', '--config', config]);
      expect(result.status).toBe(1);
      expect(result.stderr).toBe(`walhub: cannot start: 127.0.0.1:${port} is already in use (another walhub or sshd?): change "listen" in ${config}\n`);
    } finally {
      busy.close();
    }
  });

  it.each([['check'], ['host-key']])('walhub %s into a pipe that is already closed ends quietly, not with an EPIPE stack', async (command) => {
    const config = await writeConfig(`pipe-${command}.toml`, `host_keys = ["pipe_${command}_ed25519"]\n`);
    await run(requireProgram('ssh-keygen', 'openssh-client'), ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, `pipe_${command}_ed25519`)]);
    // `true` reads nothing and is gone long before node has started: every write meets a closed pipe.
    const { stdout, stderr } = await run('/bin/bash', ['-c', `${process.execPath} ${CLI} ${command} --config ${config} | true; echo "status \${PIPESTATUS[0]}"`]);
    expect(stderr).not.toMatch(/EPIPE|Error|at /);
    expect(stdout).toMatch(/^status [01]\n$/);
  });

  it('builds dist/cli.js executable, so a symlink on PATH runs it', async () => {
    const link = join(dir, 'walhub');
    await symlink(CLI, link);
    const { stdout } = await run(link, ['--version']);
    expect(stdout).toMatch(/^walhub \d+\.\d+\.\d+\n$/);
  });
});

describe('host keys', () => {
  let hub: Hub | undefined;
  afterEach(async () => {
    await hub?.stop();
    hub = undefined;
  });

  it('creates an ed25519 host key at first start, mode 0600, whose fingerprint ssh-keygen agrees with', async () => {
    hub = await startHub();
    const created = hub.logLines.find((l) => l.msg === 'host key') as { path: string; fingerprint: string };
    const { mode } = await import('node:fs').then((fs) => fs.statSync(created.path));
    expect(mode & 0o777).toBe(0o600);
    const { stdout } = await run(requireProgram('ssh-keygen', 'openssh-client'), ['-l', '-E', 'sha256', '-f', created.path]);
    expect(stdout.split(' ')[1]).toBe(created.fingerprint);
    const printed = await walhub(['host-key', '--config', hub.configPath]);
    expect(printed.stdout).toContain(`# ${created.fingerprint} ssh-ed25519 ${created.path}\n`);
  });

  it('prints known_hosts lines for the name standbys use, never for a wildcard address', async () => {
    const config = await writeConfig('wild.toml', 'listen = ["0.0.0.0:2222", "[::]:2222"]\nhost_keys = ["wild_ed25519"]\n');
    await run(requireProgram('ssh-keygen', 'openssh-client'), ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'wild_ed25519')]);
    const publicKey = (await readFile(join(dir, 'wild_ed25519.pub'), 'utf8')).split(' ').slice(0, 2).join(' ');
    const bare = await walhub(['host-key', '--config', config]);
    expect(bare.status).toBe(0);
    expect(bare.stdout).not.toContain('0.0.0.0');
    expect(bare.stdout).toContain('# listening on all addresses: run walhub host-key --host NAME');
    const named = await walhub(['host-key', '--config', config, '--host', 'backup.example']);
    expect(named.stdout.split('\n').filter((l) => !l.startsWith('#') && l !== '')).toEqual([`[backup.example]:2222 ${publicKey}`]);
  });

  it('refuses a host key that group or others may read, as sshd does', async () => {
    const config = await writeConfig('open.toml', 'host_keys = ["open_ed25519"]\nauthorized_keys = "ak"\narchive = "archive"\naudit_log = "audit.log"\nlisten = ["127.0.0.1:0"]\n');
    const first = await walhub(['host-key', '--config', config]);
    expect(first.status).toBe(1);
    await run(requireProgram('ssh-keygen', 'openssh-client'), ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'open_ed25519')]);
    await chmod(join(dir, 'open_ed25519'), 0o644);
    const result = await walhub(['serve', '--config', config]);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      `walhub: ${join(dir, 'open_ed25519')}: permissions 0644 are too open: a private host key must not be readable by group or others (chmod 600)\n`,
    );
  });
});

describe('authorized_keys reloads on a running server', () => {
  let hub: Hub;
  let a: ClientKey;
  let b: ClientKey;
  beforeAll(async () => {
    ({ hub, keys: { a } } = await startHubWithStandbys({ a: 'servers="*"' }));
    b = await createClientKey(hub.dir, 'b');
  });
  afterAll(async () => {
    await hub?.stop();
  });

  it('keeps the last good set when the file cannot be read, and logs why', async () => {
    // It exists and reading it fails (EISDIR), even for root; a deleted file revokes every key instead (keys-hostile.test.ts).
    await rm(hub.authorizedKeys);
    await mkdir(hub.authorizedKeys);
    await hub.waitForLog((l) => l.msg === 'cannot read authorized keys; the last good set stays in force' && l.err === 'EISDIR: illegal operation on a directory, read');
    const result = await sshExec(hub, a, 'get-wal --test nosuch x');
    expect(result.status).toBe(3);
    await rmdir(hub.authorizedKeys);
  });

  /** A hub sent `signal` on its first log line, while it is still starting; and whether the signal went. */
  async function signalledWhileStarting(signal: NodeJS.Signals): Promise<{ early: Hub; signalled: boolean }> {
    let signalled = false;
    const early = await startHub({
      onLog: (line, child) => {
        if (line.msg === 'host key' && !signalled) signalled = child.kill(signal);
      },
    });
    return { early, signalled };
  }

  it('stays up through a SIGHUP sent while it starts (systemctl reload right after start)', async () => {
    const { early, signalled } = await signalledWhileStarting('SIGHUP');
    try {
      expect(signalled).toBe(true);
      // Handled before the reload handler existed, or by it: either way, not the signal's default of ending the process.
      await early.waitForLog((l) => typeof l.msg === 'string' && /^SIGHUP/.test(l.msg));
    } finally {
      expect(await early.stop()).toBe(0);
    }
  });

  it("never opens Node's inspector on a SIGUSR1 (logrotate's reopen) sent while it starts", async () => {
    const { early, signalled } = await signalledWhileStarting('SIGUSR1');
    try {
      expect(signalled).toBe(true);
      // A reopen afterwards: the process is up and its own handler answers.
      early.process.kill('SIGUSR1');
      await early.waitForLog((l) => l.msg === 'SIGUSR1: reopening the audit log');
      expect(early.stderr()).not.toMatch(/Debugger listening/);
    } finally {
      expect(await early.stop()).toBe(0);
    }
  });

  it('skips a bad line, keeps the rest, and re-reads on SIGHUP', async () => {
    await writeFile(hub.authorizedKeys, `servers="*" ${a.publicLine}\nservers="" ${b.publicLine}\n`);
    await hub.waitForLog((l) => typeof l.msg === 'string' && l.msg.endsWith(':2: servers= needs a list of server IDs, or "*"'));
    const loaded = hub.logLines.filter((l) => l.msg === 'authorized keys loaded').length;
    hub.process.kill('SIGHUP');
    await hub.waitForLog(() => hub.logLines.filter((l) => l.msg === 'authorized keys loaded').length > loaded);
    expect((await sshExec(hub, a, 'get-wal --test nosuch x')).status).toBe(3);
    expect((await sshExec(hub, b, 'get-wal --test nosuch x')).status).toBe(255);
    expect(await readFile(hub.authorizedKeys, 'utf8')).toContain(b.publicLine);
  });
});
