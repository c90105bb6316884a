// Transport messages a client may send at any time and walhub must read and
// drop (RFC 4253 11.2-11.3: SSH_MSG_IGNORE, SSH_MSG_DEBUG). A client that
// streams them keeps its connection busy, not alive: login_grace_time still
// ends a connection that never logs in, idle_timeout one that never runs a
// command, and walhub keeps none of what it was sent. A client may also ask
// for a new key exchange at any time (RFC 4253 9), which costs walhub about
// 2 ms of its event loop each: one that asks in a loop is cut off.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterEach, expect, inject, it } from 'vitest';
import { createServerDir, place } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { rssMiB, sampleRss } from '../helpers/proc.js';
import { connectRaw, runRaw } from '../helpers/raw-client.js';
import { sshExec } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

// ssh2's client has no method that sends IGNORE or DEBUG; its packet writer does (ssh2 1.17 lib/protocol/utils.js).
const { sendPacket } = createRequire(import.meta.url)('ssh2/lib/protocol/utils.js') as {
  sendPacket(proto: unknown, packet: Buffer): void;
};

interface Internals {
  _protocol: { rekey(): void; _packetRW: { write: { allocStart: number; alloc(n: number): Buffer; finalize(p: Buffer): Buffer } } };
  _sock: { writableLength: number; destroyed: boolean; once(event: 'drain' | 'close', listener: () => void): void };
}

const SSH_MSG_IGNORE = 2;
const SSH_MSG_DEBUG = 4;
/** Payload per message: near ssh2's largest packet, so that the flood is mostly bytes to decrypt. */
const PAYLOAD = 32 * 1024;
/** Growth allowed while the flood is decrypted: receive buffers and garbage not yet collected. */
const MAX_GROWTH_MIB = 64;

let hub: Hub | undefined;
let client: ssh2.Client | undefined;

afterEach(async () => {
  client?.end();
  await hub?.stop();
  hub = undefined;
  client = undefined;
});

function sendMessage(target: ssh2.Client, type: number, text: Buffer): void {
  const { _protocol: proto } = target as unknown as Internals;
  const rw = proto._packetRW.write;
  const p = rw.allocStart;
  if (type === SSH_MSG_IGNORE) {
    const packet = rw.alloc(1 + 4 + text.length);
    packet[p] = type;
    packet.writeUInt32BE(text.length, p + 1);
    text.copy(packet, p + 5);
    sendPacket(proto, rw.finalize(packet));
  } else {
    // DEBUG: boolean always_display, string message, string language tag.
    const packet = rw.alloc(1 + 1 + 4 + text.length + 4);
    packet[p] = type;
    packet[p + 1] = 1;
    packet.writeUInt32BE(text.length, p + 2);
    text.copy(packet, p + 6);
    packet.writeUInt32BE(0, p + 6 + text.length);
    sendPacket(proto, rw.finalize(packet));
  }
}

/**
 * Sends IGNORE and DEBUG messages, alternately, as fast as the socket takes
 * them, until walhub closes the connection or `limitMs` passes. Resolves the
 * bytes sent and whether walhub closed it.
 */
async function floodUntilClosed(target: ssh2.Client, limitMs: number): Promise<{ bytes: number; closed: boolean; ms: number }> {
  const sock = (target as unknown as Internals)._sock;
  const text = Buffer.alloc(PAYLOAD, 'x');
  let closed = false;
  sock.once('close', () => (closed = true));
  const started = Date.now();
  let bytes = 0;
  for (let i = 0; !closed && !sock.destroyed && Date.now() - started < limitMs; i++) {
    sendMessage(target, i % 2 === 0 ? SSH_MSG_IGNORE : SSH_MSG_DEBUG, text);
    bytes += PAYLOAD;
    if (sock.writableLength > 1024 * 1024) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        sock.once('drain', done);
        sock.once('close', done);
      });
    }
  }
  return { bytes, closed, ms: Date.now() - started };
}

/** A client past the key exchange that never offers an authentication method (its handler never answers). */
async function connectWithoutLogin(target: Hub): Promise<ssh2.Client> {
  const stranger = new ssh2.Client();
  client = stranger;
  stranger.on('error', () => undefined);
  const handshake = new Promise<void>((resolve) => stranger.once('handshake', () => resolve()));
  stranger.connect({ host: '127.0.0.1', port: target.port, username: 'walhub', authHandler: () => undefined, readyTimeout: 60_000 });
  await handshake;
  return stranger;
}

async function startWithStandby(limits: string) {
  const started = await startHubWithStandbys({ 'standby-a': 'servers="pg1"' }, { extraToml: `[limits]\n${limits}\n` });
  hub = started.hub;
  return { hub, standby: started.keys['standby-a'] };
}

/**
 * Floods `target` with IGNORE and DEBUG until walhub closes it: it must do so
 * within a few seconds of a 2 s limit, having read real traffic, without
 * keeping it (walhub's RSS measured throughout).
 */
async function expectCutOffWithin2s(hub: Hub, target: ssh2.Client, when: string): Promise<void> {
  const pid = hub.process.pid!;
  const before = await rssMiB(pid);
  const rss = sampleRss(pid);
  const flood = await floodUntilClosed(target, 20_000);
  rss.stop();
  console.log(`${when}: ${(flood.bytes / 2 ** 20).toFixed(0)} MiB of IGNORE/DEBUG in ${flood.ms} ms; walhub RSS ${before.toFixed(0)} MiB, peak ${rss.peak().toFixed(0)} MiB`);
  expect(flood.closed).toBe(true);
  expect(flood.ms).toBeLessThan(6_000);
  expect(flood.bytes).toBeGreaterThan(PAYLOAD);
  expect(rss.peak() - before).toBeLessThan(MAX_GROWTH_MIB);
}

it('ends a connection that streams IGNORE and DEBUG messages instead of logging in, at login_grace_time', async () => {
  const { hub } = await startWithStandby('login_grace_time = "2s"');
  // 2 s of grace from the TCP accept; the handshake came before the flood started.
  await expectCutOffWithin2s(hub, await connectWithoutLogin(hub), 'before login');
  const line = await hub.waitForLog((l) => l.msg === 'login failed');
  expect(line.reason).toBe('login grace time exceeded');
}, 60_000);

it('ends a logged-in connection that runs no command and only streams IGNORE and DEBUG messages, at idle_timeout', async () => {
  const { hub, standby } = await startWithStandby('idle_timeout = "2s"');
  client = await connectRaw(hub, standby);
  await expectCutOffWithin2s(hub, client, 'logged in');
  const records = await hub.audit();
  expect(records.find((r) => r.event === 'disconnect' && r.user === 'walhub')).toMatchObject({ reason: 'idle timeout', requests: 0 });
}, 60_000);

/** Starts a key re-exchange and resolves when it is done (ssh2's client emits 'handshake' for each). */
function rekey(target: ssh2.Client): Promise<void> {
  return new Promise((resolve) => {
    target.once('handshake', () => resolve());
    (target as unknown as Internals)._protocol.rekey();
  });
}

/** Re-keys again as soon as each exchange ends, until the connection closes or `limitMs` passes. */
function rekeyInALoop(target: ssh2.Client, limitMs: number): Promise<{ exchanges: number; closed: boolean; ms: number }> {
  const started = Date.now();
  let exchanges = 0;
  return new Promise((resolve) => {
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      target.removeListener('handshake', again);
      resolve({ exchanges, closed, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), limitMs);
    const again = () => {
      exchanges++;
      setImmediate(() => {
        try {
          (target as unknown as Internals)._protocol.rekey();
        } catch {
          // closed meanwhile: 'close' reports it
        }
      });
    };
    target.on('handshake', again);
    target.once('close', () => finish(true));
    (target as unknown as Internals)._protocol.rekey();
  });
}

it('cuts off a client that re-keys before logging in at its first re-exchange, and logs it as a failed login', async () => {
  const { hub } = await startWithStandby('login_grace_time = "60s"');
  const stranger = await connectWithoutLogin(hub);
  const loop = await rekeyInALoop(stranger, 20_000);
  console.log(`before login: ${loop.exchanges} re-exchanges in ${loop.ms} ms, then ${loop.closed ? 'closed' : 'still open'}`);
  expect(loop.closed).toBe(true);
  // walhub learns of a re-exchange once it is done, and closes then (without a limit: hundreds; with a logged-in client's budget: 5).
  expect(loop.exchanges).toBeLessThanOrEqual(1);
  const line = await hub.waitForLog((l) => l.msg === 'login failed');
  expect(line.reason).toBe('key re-exchanges too frequent');
}, 60_000);

it('lets a logged-in client re-key now and then, and cuts off one that re-keys in a loop', async () => {
  const { hub, standby } = await startWithStandby('');
  await createServerDir(hub.archive, 'pg1');
  client = await connectRaw(hub, standby);
  // A burst, then one more after a pause: what a client with a small RekeyLimit would do.
  for (let i = 0; i < 4; i++) await rekey(client);
  await new Promise((resolve) => setTimeout(resolve, 2_100));
  await rekey(client);
  const served = await runRaw(client, 'get-wal pg1 000000010000000000000001');
  expect([served.status, served.stderr]).toEqual([1, 'walhub: WAL file not found in the archive (pg1 000000010000000000000001)\n']);
  const loop = await rekeyInALoop(client, 20_000);
  console.log(`logged in: ${loop.exchanges} re-exchanges in ${loop.ms} ms, then ${loop.closed ? 'closed' : 'still open'}`);
  expect(loop.closed).toBe(true);
  expect(loop.exchanges).toBeLessThanOrEqual(8);
  const records = await hub.audit();
  expect(records.find((r) => r.event === 'disconnect' && r.user === 'walhub')).toMatchObject({ reason: 'key re-exchanges too frequent', requests: 1 });
  await hub.waitForLog((l) => l.msg === 'connection closed: key re-exchanges too frequent');
}, 60_000);

it('serves a standby whose ssh re-keys by volume (RekeyLimit 16M) through a ControlMaster, segment after segment', async () => {
  const { hub, standby } = await startWithStandby('');
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  // Uncompressed, so that fetches come as fast as the transport goes: time alone earns few re-exchanges.
  const segment = await place(await createServerDir(hub.archive, 'pg1'), fixture.segments[0]!);
  const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${join(hub.dir, 'mux')}`, '-o', 'ControlPersist=60', '-o', 'RekeyLimit=16M'];
  try {
    // 12 segments of 16 MiB: a re-exchange after each, three times the burst.
    for (let i = 0; i < 12; i++) {
      const fetched = await sshExec(hub, standby, `get-wal pg1 ${segment.name}`, { extra: mux });
      expect([fetched.status, fetched.bytes, fetched.sha256, fetched.stderr]).toEqual([0, segment.size, segment.sha256, '']);
    }
  } finally {
    await sshExec(hub, standby, undefined, { extra: [...mux, '-O', 'exit'] });
  }
  expect(hub.logLines.filter((l) => typeof l.msg === 'string' && l.msg.includes('re-exchanges too frequent'))).toEqual([]);
}, 120_000);
