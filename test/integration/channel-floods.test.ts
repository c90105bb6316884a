// What a logged-in client can send that walhub never asked for: data into the
// channel of its get-wal (ignoring the window walhub granted), global requests
// and forwarding channels by the thousand. Each costs walhub CPU only: nothing
// is kept, the transfer under way is byte-exact, and the connection still serves.
import type ssh2 from 'ssh2';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, sha256, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { rssMiB, sampleRss } from '../helpers/proc.js';
import { connectRaw, runRaw } from '../helpers/raw-client.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

let hub: Hub;
let standby: ClientKey;
let segment: Placed;

/** Bytes pushed into one channel, far more than walhub could hold if it kept them. */
const FLOOD_BYTES = 1024 * 1024 * 1024;
/** Growth allowed while the flood is decrypted: receive buffers and garbage not yet collected. */
const MAX_GROWTH_MIB = 100;

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys({ 'standby-a': 'servers="pg1"' }));
  segment = await place(await createServerDir(hub.archive, 'pg1'), fixture.segments[0]!, { codec: 'zstd' });
});

afterAll(async () => {
  await hub?.stop();
});

interface Internals {
  _protocol: { channelData(id: number, data: Buffer): void };
  _sock: { writableLength: number; once(event: 'drain', listener: () => void): void };
}

it('a client that ignores the window and sends 1 GiB into its get-wal channel gets its segment byte-exact; walhub keeps none of it', async () => {
  const client = await connectRaw(hub, standby);
  const pid = hub.process.pid!;
  try {
    const before = await rssMiB(pid);
    const rss = sampleRss(pid);
    const stdout: Buffer[] = [];
    const done = new Promise<{ status: number | null; channel: ssh2.ClientChannel }>((resolve, reject) =>
      client.exec(`get-wal pg1 ${segment.name}`, (error, channel) => {
        if (error) return reject(error);
        let status: number | null = null;
        // Not read until the flood is over: walhub's transfer waits on this client the whole time.
        channel.pause();
        channel.on('data', (d: Buffer) => stdout.push(d));
        channel.on('exit', (code: number | null) => (status = code));
        channel.on('close', () => resolve({ status, channel }));
        flood(client, channel, FLOOD_BYTES).then(() => channel.resume(), reject);
      }),
    );
    const { status } = await done;
    rss.stop();
    const growth = rss.peak() - before;
    console.log(`channel flood: walhub RSS ${before.toFixed(0)} MiB, peak ${rss.peak().toFixed(0)} MiB`);
    expect(status).toBe(0);
    expect(sha256(Buffer.concat(stdout))).toBe(segment.sha256);
    expect(growth).toBeLessThan(MAX_GROWTH_MIB);
    const again = await runRaw(client, `get-wal pg1 ${segment.name}`);
    expect(again.status).toBe(0);
    expect(sha256(again.stdout)).toBe(segment.sha256);
  } finally {
    client.end();
  }
}, 120_000);

it('10,000 global requests and 10,000 forwarding channels on one connection are each refused, and it still serves', async () => {
  const client = await connectRaw(hub, standby);
  const pid = hub.process.pid!;
  try {
    const before = await rssMiB(pid);
    const refusedPings = await inBatches(10_000, () => new Promise<boolean>((resolve) => ping(client, resolve)));
    const refusedOpens = await inBatches(
      10_000,
      () => new Promise<boolean>((resolve) => client.forwardOut('127.0.0.1', 0, '127.0.0.1', 22, (error) => resolve(error !== undefined))),
    );
    const after = await rssMiB(pid);
    console.log(`request floods: walhub RSS ${before.toFixed(0)} -> ${after.toFixed(0)} MiB`);
    expect(refusedPings).toBe(10_000);
    expect(refusedOpens).toBe(10_000);
    expect(after - before).toBeLessThan(40);
    const result = await runRaw(client, `get-wal pg1 ${segment.name}`);
    expect(result.status).toBe(0);
    expect(sha256(result.stdout)).toBe(segment.sha256);
  } finally {
    client.end();
  }
  // And other standbys were served all along.
  expect((await sshExec(hub, standby, `get-wal --test pg1 ${segment.name}`)).status).toBe(0);
}, 120_000);

/**
 * CHANNEL_DATA straight through ssh2's protocol object (internal, ssh2 1.17),
 * past the window: a first packet of odd size, so that the window walhub's
 * ssh2 counts down never lands on exactly 0 (where it drops data) but goes
 * negative, where it accepts every packet that follows.
 */
async function flood(client: ssh2.Client, channel: ssh2.ClientChannel, bytes: number): Promise<void> {
  const internals = client as unknown as Internals;
  const remoteId = (channel as unknown as { outgoing: { id: number } }).outgoing.id;
  internals._protocol.channelData(remoteId, Buffer.alloc(1000, 0x41));
  const packet = Buffer.alloc(32 * 1024, 0x41);
  for (let sent = 0; sent < bytes; sent += packet.length) {
    internals._protocol.channelData(remoteId, packet);
    if (internals._sock.writableLength > 8 * 1024 * 1024) await new Promise<void>((resolve) => internals._sock.once('drain', resolve));
  }
}

/** keepalive@openssh.com with want-reply (ssh2's ping), which walhub answers with a failure. */
function ping(client: ssh2.Client, answered: (refused: boolean) => void): void {
  (client as unknown as { _protocol: { ping(): void } })._protocol.ping();
  // ssh2's client has no callback for its own pings: the REQUEST_FAILURE is counted from the protocol.
  const internals = client as unknown as { _callbacks: ((error: boolean) => void)[] };
  internals._callbacks.push((failed) => answered(failed));
}

/** Runs `count` tasks, 100 at a time; resolves to how many resolved true. */
async function inBatches(count: number, task: () => Promise<boolean>): Promise<number> {
  let yes = 0;
  for (let done = 0; done < count; done += 100) {
    const results = await Promise.all(Array.from({ length: Math.min(100, count - done) }, task));
    yes += results.filter(Boolean).length;
  }
  return yes;
}
