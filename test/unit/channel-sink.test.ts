// The channel sink's stall watchdog, driven by a stand-in connection whose
// socket counters the test moves: what counts as progress, and whether a
// stall leaves data inside the channel (which ends the connection, session.ts).
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { createChannelSink, TransferStalled, type Outlet } from '../../src/command/channel-sink.js';

const STALL_MS = 200;

/** A socket's counters, moved by the test. */
function fakeOutlet(): Outlet & { written: () => number; taken: () => number; send(bytes: number): void; drain(bytes: number): void } {
  let written = 0;
  let taken = 0;
  return {
    waitForRoom: async () => undefined,
    waitForProgress: (signal) =>
      new Promise((resolve, reject) => {
        // Removed once the wait ends, as the real connection does: a long wait would otherwise pile up listeners.
        const onAbort = () => (clearTimeout(timer), reject(signal.reason));
        const timer = setTimeout(() => (signal.removeEventListener('abort', onAbort), resolve()), 10);
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    written: () => written,
    taken: () => taken,
    batched: (send) => send(),
    send(bytes) {
      written += bytes;
    },
    drain(bytes) {
      taken = Math.min(written, taken + bytes);
    },
  };
}

/** A channel whose write callbacks the test calls. */
function fakeChannel(): Writable & { callbacks: (() => void)[] } {
  const callbacks: (() => void)[] = [];
  const channel = new Writable({
    highWaterMark: 0,
    write(_chunk, _encoding, callback) {
      callbacks.push(() => callback());
    },
  });
  return Object.assign(channel, { callbacks });
}

/** Sends one chunk through a sink, as get-wal's pump does; resolves with the stall, if any. */
async function send(out: Writable, outlet: Outlet, during: (finished: () => boolean) => Promise<void>): Promise<TransferStalled | undefined> {
  const progress = { bytes: 0, handed: 0 };
  const { sink, signal } = createChannelSink(out, outlet, progress, { signal: new AbortController().signal, stallMs: STALL_MS });
  let finished = false;
  const sent = pipeline([Readable.from([Buffer.alloc(64 * 1024)]), sink], { signal }).then(
    () => undefined,
    (error: unknown) => (signal.reason instanceof TransferStalled ? signal.reason : Promise.reject(error)),
  );
  void sent.finally(() => (finished = true));
  await during(() => finished);
  return sent;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The channel takes the write whole (its callback comes), then the socket never drains its packets. */
function writeTakenThenSocketStuck(outlet: ReturnType<typeof fakeOutlet>, out: ReturnType<typeof fakeChannel>) {
  return async (finished: () => boolean) => {
    await sleep(20);
    outlet.send(70_000);
    out.callbacks.shift()!();
    for (let i = 0; i < 40 && !finished(); i++) await sleep(50);
  };
}

describe('the channel sink', () => {
  it('takes a chunk trickling out of the channel as the window opens for progress, not a stall', async () => {
    const outlet = fakeOutlet();
    const out = fakeChannel();
    const stalled = await send(out, outlet, async (finished) => {
      // 1 s, five times the stall timeout, of packets of the chunk going out as the client reads.
      for (let i = 0; i < 20 && !finished(); i++) {
        await sleep(50);
        outlet.send(3000);
        outlet.drain(3000);
      }
      expect(finished()).toBe(false);
      out.callbacks.shift()!();
      outlet.drain(Infinity);
    });
    expect(stalled).toBeUndefined();
  });

  it('says a stall left data in the channel when a write is still waiting for the window', async () => {
    const outlet = fakeOutlet();
    const out = fakeChannel();
    const stalled = await send(out, outlet, async (finished) => {
      for (let i = 0; i < 40 && !finished(); i++) await sleep(50);
    });
    expect(stalled).toBeInstanceOf(TransferStalled);
    expect(stalled!.leftInChannel).toBe(true);
  });

  it('says it left nothing when the write was taken and only the socket does not drain', async () => {
    const outlet = fakeOutlet();
    const out = fakeChannel();
    const stalled = await send(out, outlet, writeTakenThenSocketStuck(outlet, out));
    expect(stalled).toBeInstanceOf(TransferStalled);
    expect(stalled!.leftInChannel).toBe(false);
  });

  it('counts the rest of a write ssh2 keeps after sending it (its stale _chunk) as left in the channel', async () => {
    const outlet = fakeOutlet();
    const out = Object.assign(fakeChannel(), { _chunk: Buffer.alloc(1) as Buffer | undefined });
    const stalled = await send(out, outlet, writeTakenThenSocketStuck(outlet, out));
    expect(stalled).toBeInstanceOf(TransferStalled);
    expect(stalled!.leftInChannel).toBe(true);
  });
});
