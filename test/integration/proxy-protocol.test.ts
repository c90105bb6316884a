// The PROXY protocol on the wire, against the real `walhub serve`: 127.0.0.1
// is the trusted balancer, 127.0.0.2 an ordinary host. Hostile and broken
// headers, the header's address in admission and from=, health checks.
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHub, type Hub } from '../helpers/hub.js';
import { createClientKey, type ClientKey } from '../helpers/ssh-client.js';

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const V2_LOCAL = Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
/** As HAProxy sends for a client it has no address for (a unix-socket frontend's). */
const V1_UNKNOWN = Buffer.from('PROXY UNKNOWN\r\n', 'latin1');

function v1(client: string, port = 40000): Buffer {
  return Buffer.from(`PROXY TCP4 ${client} 127.0.0.1 ${port} 22\r\n`, 'latin1');
}

let hub: Hub;
let key: ClientKey;
const sockets: Socket[] = [];

beforeAll(async () => {
  hub = await startHub({
    // A 2 s login grace time makes the header timeout 2 s (it is the shorter of the two).
    extraToml: '[proxy]\ntrusted = ["127.0.0.1"]\n[limits]\nper_source_max_startups = 2\nlogin_grace_time = "2s"\n',
  });
  key = await createClientKey(hub.dir, 'standby-pinned');
  await hub.loadKeys([{ key, options: 'servers="pg1",from="10.7.7.7"' }]);
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await hub?.stop();
});

interface Outcome {
  /** What the hub sent before closing (its SSH banner, or nothing). */
  received: string;
  closed: boolean;
}

/** Connects from `source`, writes `bytes`, and reports what came back within `waitMs` and whether the hub closed. */
async function send(source: string, bytes: Buffer, { waitMs = 1500, end = false } = {}): Promise<Outcome> {
  const socket = connect({ port: hub.port, host: '127.0.0.1', localAddress: source });
  sockets.push(socket);
  socket.on('error', () => {});
  let received = '';
  let closed = false;
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.on('close', () => (closed = true));
  await once(socket, 'connect');
  if (bytes.length > 0) socket.write(bytes);
  if (end) socket.end();
  for (let waited = 0; waited < waitMs && !closed; waited += 50) await new Promise((r) => setTimeout(r, 50));
  return { received, closed };
}

function logged(msg: string, reason: string) {
  return hub.waitForLog((l) => l.msg === msg && l.reason === reason, 5000);
}

describe('a trusted balancer that sends no valid header is cut off before any SSH, and logged without an address for fail2ban', () => {
  it.each([
    ['SSH straight away (SSH is never read as a header)', Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'), 'no PROXY protocol header'],
    ['a v1 header with no end in 107 bytes', Buffer.from(`PROXY TCP4 ${'9'.repeat(120)}`), 'PROXY v1 header longer than 107 bytes'],
    ['a v2 header announcing 64 KiB', Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]), 'PROXY v2 header longer than 1040 bytes'],
    ['a wrong v2 signature', Buffer.concat([Buffer.from('0d0a0d0a000d0a515549580a', 'hex'), Buffer.from([0x21, 0x11, 0, 12]), Buffer.alloc(12)]), 'no PROXY protocol header'],
    ['a v2 header for UDP', Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x12, 0, 12]), Buffer.alloc(12)]), 'PROXY v2 header with an address family other than TCP over IPv4 or IPv6'],
    ['a v1 header for an unknown family', Buffer.from('PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n'), 'PROXY v1 header with an unknown address family'],
  ])('%s', async (_what, bytes, reason) => {
    expect(await send('127.0.0.1', bytes)).toEqual({ received: '', closed: true });
    const line = await logged('proxied connection refused', reason);
    expect(line).toMatchObject({ proxy: '127.0.0.1', level: 40 });
    expect(line.address).toBeUndefined();
  });

  it('half a header, then the peer closes', async () => {
    expect(await send('127.0.0.1', v1('10.1.1.1').subarray(0, 20), { end: true })).toEqual({ received: '', closed: true });
    await logged('proxied connection refused', 'closed before a complete PROXY header');
  });

  it('half a header, then nothing: cut off at the header timeout', async () => {
    expect(await send('127.0.0.1', V2_SIGNATURE.subarray(0, 8), { waitMs: 5000 })).toEqual({ received: '', closed: true });
    await logged('proxied connection refused', 'no complete PROXY header within 2 s');
  });
});

it('an address not in [proxy] trusted that sends a PROXY header is refused by name, under its own address', async () => {
  const outcome = await send('127.0.0.2', v1('10.1.1.1'));
  expect(outcome.closed).toBe(true);
  const line = await logged('connection refused', 'PROXY protocol header from an address not in [proxy] trusted');
  expect(line.address).toBe('127.0.0.2');
  const disconnect = await waitForAudit((r) => r.event === 'disconnect' && r.reason === 'PROXY protocol header from an address not in [proxy] trusted');
  expect(disconnect.remote).toMatch(/^127\.0\.0\.2:/);
});

it('per-source admission counts the address in the header, not the balancer\'s', async () => {
  // Two unauthenticated connections from 10.9.9.9 (per_source_max_startups = 2) are held open...
  const held = await Promise.all([send('127.0.0.1', v1('10.9.9.9', 1), { waitMs: 300 }), send('127.0.0.1', v1('10.9.9.9', 2), { waitMs: 300 })]);
  for (const outcome of held) expect(outcome).toMatchObject({ received: expect.stringMatching(/^SSH-2\.0-walhub_/), closed: false });
  // ...so a third from it is refused, while another client behind the same balancer is not.
  expect(await send('127.0.0.1', v1('10.9.9.9', 3), { waitMs: 500 })).toEqual({ received: '', closed: true });
  const line = await logged('connection refused', 'too many unauthenticated connections from this source');
  expect(line.address).toBe('10.9.9.9');
  expect((await send('127.0.0.1', v1('10.9.9.8', 4), { waitMs: 300 })).received).toMatch(/^SSH-2\.0-walhub_/);
});

it('a LOCAL header (HAProxy\'s health check) gets the banner, and leaves no audit record nor failure', async () => {
  const before = (await hub.audit()).length;
  const failedBefore = hub.logLines.filter((l) => l.msg === 'login failed').length;
  const outcome = await send('127.0.0.1', V2_LOCAL, { waitMs: 300 });
  expect(outcome.received).toMatch(/^SSH-2\.0-walhub_/);
  sockets.at(-1)!.resetAndDestroy(); // as HAProxy ends its checks
  await new Promise((r) => setTimeout(r, 300));
  expect((await hub.audit()).slice(before)).toEqual([]);
  expect(hub.logLines.filter((l) => l.msg === 'login failed')).toHaveLength(failedBefore);
});

/** Logs in with `key` through a connection from the balancer that starts with `header`. */
async function login(header: Buffer): Promise<'ready' | string> {
  const socket = connect({ port: hub.port, host: '127.0.0.1' });
  sockets.push(socket);
  await once(socket, 'connect');
  socket.write(header);
  const client = new ssh2.Client();
  const privateKey = await readFile(key.privatePath);
  return new Promise((resolve) => {
    client.on('ready', () => {
      client.end();
      resolve('ready');
    });
    client.on('error', (error) => resolve(error.message));
    client.connect({ sock: socket, username: 'walhub', privateKey, readyTimeout: 10_000 });
  });
}

describe('from= sees the address in the header', () => {
  it('a key with from="10.7.7.7" logs in through the balancer for 10.7.7.7 (v1 header), audited as 10.7.7.7 via 127.0.0.1', async () => {
    expect(await login(v1('10.7.7.7', 5555))).toBe('ready');
    const auth = await waitForAudit((r) => r.event === 'auth' && r.result === 'ok');
    expect(auth).toMatchObject({ remote: '10.7.7.7:5555', proxy: '127.0.0.1', key_name: 'standby-pinned' });
  });

  it('and is refused for 10.7.7.8', async () => {
    expect(await login(v1('10.7.7.8', 5556))).toMatch(/authentication methods failed/);
    const auth = await waitForAudit((r) => r.event === 'auth' && r.result === 'refused' && r.remote === '10.7.7.8:5556');
    expect(auth).toMatchObject({ proxy: '127.0.0.1', reason: 'address not allowed by from="10.7.7.7"' });
  });
});

it('clients behind PROXY UNKNOWN (no address of their own) that fail to log in never shut out the balancer, nor name it to fail2ban', async () => {
  // Seen from 127.0.0.1, the key's from="10.7.7.7" refuses it.
  const from = hub.logLines.length;
  // Connections without a header address are the balancer's: remote 127.0.0.1 (earlier tests' clients may time out meanwhile).
  const failures = () => hub.logLines.slice(from).filter((l) => l.msg === 'login failed' && String(l.remote).startsWith('127.0.0.1:'));
  // The default penalties (5 s a failure, enforced from 15 s) would refuse a source at its fourth connection.
  for (let i = 1; i <= 4; i++) {
    expect(await login(V1_UNKNOWN)).toMatch(/authentication methods failed/);
    await hub.waitForLog(() => failures().length === i, 5000);
  }
  for (const line of failures()) expect(line).toMatchObject({ proxy: '127.0.0.1', reason: 'authentication failed' });
  expect(hub.logLines.slice(from).filter((l) => l.address === '127.0.0.1')).toEqual([]);
  // The balancer's health check and its clients with an address are still answered.
  expect((await send('127.0.0.1', V2_LOCAL, { waitMs: 300 })).received).toMatch(/^SSH-2\.0-walhub_/);
  sockets.at(-1)!.resetAndDestroy();
  expect((await send('127.0.0.1', v1('10.9.9.7', 7), { waitMs: 300 })).received).toMatch(/^SSH-2\.0-walhub_/);
  sockets.at(-1)!.destroy();
});

it('clients behind PROXY UNKNOWN holding every slot for one source leave the health checks theirs', async () => {
  // per_source_max_startups = 2: two UNKNOWN connections that never log in fill their own allowance...
  const held = [await send('127.0.0.1', V1_UNKNOWN, { waitMs: 300 })];
  const heldSockets = [sockets.at(-1)!];
  held.push(await send('127.0.0.1', V1_UNKNOWN, { waitMs: 300 }));
  heldSockets.push(sockets.at(-1)!);
  for (const outcome of held) expect(outcome).toMatchObject({ received: expect.stringMatching(/^SSH-2\.0-walhub_/), closed: false });
  expect(await send('127.0.0.1', V1_UNKNOWN, { waitMs: 500 })).toEqual({ received: '', closed: true });
  // ...not the balancer's health checks.
  expect((await send('127.0.0.1', V2_LOCAL, { waitMs: 300 })).received).toMatch(/^SSH-2\.0-walhub_/);
  sockets.at(-1)!.resetAndDestroy();
  for (const socket of heldSockets) socket.destroy();
});

async function waitForAudit(predicate: (r: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  for (let i = 0; i < 50; i++) {
    const hit = (await hub.audit()).find(predicate);
    if (hit) return hit;
  }
  throw new Error('the audit record did not appear within 5 s');
}
