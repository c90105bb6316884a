// The accept path's own limits, as a client meets them: the ident timeout
// and the per-source caps. 127.0.0.x addresses stand for other hosts.
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createServerDir } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';

let hub: Hub;
let standby: ClientKey;
const opened: Socket[] = [];
const clients: ssh2.Client[] = [];

beforeAll(async () => {
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys(
    { 'standby-a': 'servers="pg1"' },
    { extraToml: '[limits]\nper_source_max_startups = 3\nper_source_max_connections = 4\n' },
  ));
  await createServerDir(hub.archive, 'pg1');
});

afterAll(async () => {
  for (const socket of opened) socket.destroy();
  for (const client of clients) client.end();
  await hub?.stop();
});

/** A plain TCP connection from `localAddress`: resolves with what it received before the hub closed it, or at `waitMs`. */
function openIdle(localAddress: string, send = '') {
  const socket = connect({ port: hub.port, host: '127.0.0.1', localAddress });
  opened.push(socket);
  let received = '';
  socket.setEncoding('utf8').on('data', (text: string) => (received += text));
  socket.on('error', () => {});
  socket.on('connect', () => send && socket.write(send));
  const closed = new Promise<number>((resolve) => {
    const started = Date.now();
    socket.on('close', () => resolve(Date.now() - started));
  });
  const banner = new Promise<boolean>((resolve) => {
    socket.once('data', () => resolve(true));
    socket.once('close', () => resolve(false));
  });
  return { socket, closed, banner, received: () => received };
}

function login(localAddress: string): Promise<ssh2.Client> {
  return readFile(standby.privatePath).then(
    (privateKey) =>
      new Promise((resolve, reject) => {
        const client = new ssh2.Client();
        clients.push(client);
        client.on('ready', () => resolve(client)).on('error', reject);
        client.connect({ host: '127.0.0.1', port: hub.port, localAddress, username: 'walhub', privateKey, readyTimeout: 10_000 });
      }),
  );
}

it('closes a connection that sends no SSH identification line within 10 s', async () => {
  const silent = openIdle('127.0.0.10');
  const partial = openIdle('127.0.0.10', 'SSH-2.0-Open');
  expect(await silent.banner).toBe(true);
  const [silentMs, partialMs] = await Promise.all([silent.closed, partial.closed]);
  for (const ms of [silentMs, partialMs]) {
    expect(ms).toBeGreaterThanOrEqual(9_500);
    expect(ms).toBeLessThan(15_000);
  }
  const records = await hub.audit();
  const reasons = records.filter((r) => r.event === 'disconnect' && String(r.remote).startsWith('127.0.0.10:')).map((r) => r.reason);
  expect(reasons).toEqual(['no SSH identification line within 10 s', 'no SSH identification line within 10 s']);
  const logged = hub.logLines.filter((l) => l.msg === 'login failed' && l.address === '127.0.0.10');
  expect(logged.map((l) => l.reason)).toEqual(['no SSH identification line within 10 s', 'no SSH identification line within 10 s']);
}, 30_000);

it('refuses a fourth unauthenticated connection from one source before its banner, and logs it once', async () => {
  const held = [openIdle('127.0.0.11'), openIdle('127.0.0.11'), openIdle('127.0.0.11')];
  expect(await Promise.all(held.map((h) => h.banner))).toEqual([true, true, true]);
  const refused = [openIdle('127.0.0.11'), openIdle('127.0.0.11')];
  expect(await Promise.all(refused.map((r) => r.banner))).toEqual([false, false]);
  expect(refused.map((r) => r.received())).toEqual(['', '']);
  // Another host is not affected, nor is a standby's real login.
  const other = openIdle('127.0.0.12');
  expect(await other.banner).toBe(true);
  const fetch = await sshExec(hub, standby, 'get-wal pg1 000000010000000000000001');
  expect(fetch.status).toBe(1);
  expect(fetch.stderr).toBe('walhub: WAL file not found in the archive (pg1 000000010000000000000001)\n');
  const lines = hub.logLines.filter((l) => l.msg === 'connection refused' && l.address === '127.0.0.11');
  expect(lines).toHaveLength(1);
  expect(lines[0]!.reason).toBe('too many unauthenticated connections from this source');
  // Room again once one of the three goes away.
  held[0]!.socket.destroy();
  await held[0]!.closed;
  await new Promise((r) => setTimeout(r, 200));
  expect(await openIdle('127.0.0.11').banner).toBe(true);
}, 30_000);

it('refuses a fifth connection from one source even when the others are logged in', async () => {
  await Promise.all([login('127.0.0.13'), login('127.0.0.13'), login('127.0.0.13')]);
  expect(await openIdle('127.0.0.13').banner).toBe(true);
  expect(await openIdle('127.0.0.13').banner).toBe(false);
  const lines = hub.logLines.filter((l) => l.msg === 'connection refused' && l.address === '127.0.0.13');
  expect(lines.map((l) => l.reason)).toEqual(['too many connections from this source']);
}, 30_000);
