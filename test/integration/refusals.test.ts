// What walhub refuses, as the stock OpenSSH client shows it to a person.
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { spawn as spawnPty } from 'node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendKey, startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { requireProgram } from '../helpers/programs.js';
import { createClientKey, sshArgs, sshExec, type ClientKey } from '../helpers/ssh-client.js';

const WAL = '000000010000000000000003';
let hub: Hub;
let standbyA: ClientKey;
let standbyB: ClientKey;
let expired: ClientKey;
let elsewhere: ClientKey;
let stranger: ClientKey;

beforeAll(async () => {
  // Logins fail here on purpose, several in a row from 127.0.0.1: without
  // penalties, which test/integration/penalties.test.ts covers.
  ({ hub, keys: { 'standby-a': standbyA, 'standby-b': standbyB, expired, elsewhere } } = await startHubWithStandbys(
    {
      'standby-a': 'servers="pg1"',
      'standby-b': 'servers="pg2"',
      expired: 'servers="pg1",expiry-time="20200101"',
      elsewhere: 'servers="pg1",from="10.99.0.0/16,!127.0.0.1"',
    },
    { extraToml: '[limits]\npenalty_auth_failure = "0s"\n' },
  ));
  stranger = await createClientKey(hub.dir, 'stranger');
  for (const id of ['pg1', 'pg2']) await mkdir(join(hub.archive, id));
});

afterAll(async () => {
  await hub?.stop();
});

describe('authentication', () => {
  it.each([
    ['an unknown key', () => stranger, 'walhub'],
    ['an expired key', () => expired, 'walhub'],
    ['a key used from an address its from= excludes', () => elsewhere, 'walhub'],
    ['a known key with the wrong user name', () => standbyA, 'postgres'],
  ])('refuses %s', async (_what, key, user) => {
    const result = await sshExec({ ...hub, user }, key(), `get-wal pg1 ${WAL}`);
    expect(result.status).toBe(255);
    expect(result.stderr).toContain('Permission denied (publickey)');
    expect(result.bytes).toBe(0);
  });

  it('refuses a client that offers no key at all', async () => {
    const result = await sshExec(hub, undefined, `get-wal pg1 ${WAL}`);
    expect(result.status).toBe(255);
    expect(result.stderr).toContain('Permission denied (publickey)');
  });

  it('gives a key for another server the same answer as an unknown server', async () => {
    const other = await sshExec(hub, standbyB, `get-wal pg1 ${WAL}`);
    const unknown = await sshExec(hub, standbyB, `get-wal nosuch ${WAL}`);
    expect(other.status).toBe(3);
    expect(unknown.status).toBe(3);
    expect(other.stderr).toBe(`walhub: unknown server, or not allowed for this key (pg1 ${WAL})\n`);
    expect(unknown.stderr).toBe(other.stderr.replace('pg1', 'nosuch'));
  });

  it('accepts a key added while the server runs, without a restart', async () => {
    const late = await createClientKey(hub.dir, 'late');
    const before = await sshExec(hub, late, `get-wal --test pg1 dummy`);
    expect(before.status).toBe(255);
    await appendKey(hub, late, 'servers="pg1"');
    await hub.waitForLog((l) => l.msg === 'authorized keys loaded' && l.keys === 5);
    const after = await sshExec(hub, late, `get-wal --test pg1 dummy`);
    expect(after.status).toBe(0);
    expect(after.stdout.toString()).toBe('Ready to retrieve WAL files from the server pg1\n');
  });

  it('records refused logins with the fingerprint offered and the reason', async () => {
    await sshExec(hub, stranger, `get-wal pg1 ${WAL}`);
    const refused = (await hub.audit()).filter((r) => r.event === 'auth' && r.result === 'refused');
    const forStranger = refused.find((r) => r.key === stranger.fingerprint);
    expect(forStranger).toMatchObject({ user: 'walhub', reason: 'key not authorized', remote: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    const forExpired = refused.find((r) => r.key === expired.fingerprint);
    expect(forExpired).toMatchObject({ reason: 'key expired', key_name: 'expired' });
  });
});

describe('everything but exec of get-wal', () => {
  it('answers a login shell with exit 2 and why', async () => {
    const result = await sshExec(hub, standbyA, undefined);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe('walhub: walhub serves WAL only; there is no shell (use: get-wal SERVER WAL_NAME)\n');
  });

  it('refuses the sftp subsystem', async () => {
    const result = await sshExec(hub, standbyA, 'sftp', { extra: ['-s'] });
    expect(result.status).toBe(255);
    expect(result.stderr).toContain('subsystem request failed');
  });

  it('refuses local port forwarding (-L), as a person sees it once the tunnel is used', async () => {
    const ssh = requireProgram('ssh', 'openssh-client');
    const localPort = await findFreePort();
    const child = spawn(ssh, [...sshArgs(hub, standbyA, ['-N', '-L', `127.0.0.1:${localPort}:127.0.0.1:22`], 'INFO')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    try {
      await waitFor(async () => {
        const socket = connect(localPort, '127.0.0.1');
        const closed = await new Promise<boolean>((resolve) => {
          socket.on('error', () => resolve(false));
          socket.on('close', () => resolve(true));
        });
        return closed && stderr.includes('administratively prohibited');
      });
      expect(stderr).toMatch(/channel \d+: open failed: administratively prohibited/);
    } finally {
      child.kill();
    }
  });

  it('refuses stdio forwarding (-W)', async () => {
    const result = await sshExec(hub, standbyA, undefined, { extra: ['-W', '127.0.0.1:22'], logLevel: 'INFO' });
    expect(result.status).toBe(255);
    expect(result.stderr).toContain('open failed: administratively prohibited');
  });

  it('refuses remote port forwarding', async () => {
    const result = await sshExec(hub, standbyA, undefined, {
      extra: ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', '127.0.0.1:0:127.0.0.1:22'],
    });
    expect(result.status).toBe(255);
    expect(result.stderr).toContain('remote port forwarding failed');
  });

  it('refuses a terminal: ssh -t in a real terminal gets exit 2 and a line saying to use -T', async () => {
    const ssh = requireProgram('ssh', 'openssh-client');
    const args = sshArgs(hub, standbyA).filter((a) => a !== '-T');
    const pty = spawnPty(ssh, ['-t', ...args, `get-wal pg1 ${WAL}`], { cols: 200, rows: 24, name: 'xterm' });
    let screen = '';
    pty.onData((text) => (screen += text));
    const status = await new Promise<number>((resolve) => pty.onExit(({ exitCode }) => resolve(exitCode)));
    expect(screen).toContain('walhub: walhub does not allocate a terminal; run ssh with -T');
    expect(status).toBe(2);
  });

  it('answers a forced terminal (RequestTTY force, as some ssh_config files say) with 2, never 255', async () => {
    const result = await sshExec(hub, standbyA, `get-wal pg1 ${WAL}`, { forceTty: true });
    expect(result.status).toBe(2);
    expect(result.bytes).toBe(0);
    expect(result.stderr).toContain('walhub: walhub does not allocate a terminal; run ssh with -T');
  });
});

async function findFreePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('a multiplexed connection answers to the current authorized_keys', () => {
  it('refuses the next request once the key is narrowed or removed, without waiting for a new login', async () => {
    const ssh = requireProgram('ssh', 'openssh-client');
    const muxKey = await createClientKey(hub.dir, 'mux');
    const control = ['-o', `ControlPath=${hub.dir}/mux.sock`];
    const keyLines = (muxOptions: string | undefined) => [
      { key: standbyA, options: 'servers="pg1"' },
      ...(muxOptions ? [{ key: muxKey, options: muxOptions }] : []),
    ];
    await hub.loadKeys(keyLines('servers="pg1,pg2"'));
    const master = spawn(ssh, [...sshArgs(hub, muxKey, ['-M', '-N', ...control])], { stdio: 'ignore' });
    try {
      await waitFor(async () => (await sshExec(hub, muxKey, 'get-wal --test pg1 x', { extra: control })).status === 0);
      await hub.loadKeys(keyLines('servers="pg2"'));
      const narrowed = await sshExec(hub, muxKey, 'get-wal --test pg1 x', { extra: control });
      expect(narrowed.status).toBe(3);
      expect((await sshExec(hub, muxKey, 'get-wal --test pg2 x', { extra: control })).status).toBe(0);

      await hub.loadKeys(keyLines(undefined));
      const removed = await sshExec(hub, muxKey, 'get-wal --test pg2 x', { extra: control });
      expect(removed.status).toBe(3);
      expect(removed.stderr).toBe('walhub: this key is no longer authorized\n');
      // A point-in-time recovery's restore_command: a revoked key stops it (131), never reads as "not found yet".
      const fatal = await sshExec(hub, muxKey, 'get-wal --fatal-errors pg2 000000010000000000000001', { extra: control });
      expect({ status: fatal.status, stderr: fatal.stderr }).toEqual({ status: 131, stderr: 'walhub: this key is no longer authorized\n' });
    } finally {
      master.kill();
    }
  });
});
