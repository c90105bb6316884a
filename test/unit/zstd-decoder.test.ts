import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compress } from 'zstd-napi';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { giveBack } from '../../src/archive/lent-chunks.js';
import { createZstdDecoder as createInProcessDecoder } from '../../src/archive/zstd-decoder.js';
import { WorkerDecoder, ZstdWorkerPool } from '../../src/archive/zstd-worker-pool.js';
import { WalhubError } from '../../src/errors.js';
import { requireProgram } from '../helpers/programs.js';

const SEGMENT = 16 * 1024 * 1024;

async function drain(stream: NodeJS.ReadableStream): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

// walhub serve decodes in worker threads (built by npm run build, which npm test runs first).
const pool = new ZstdWorkerPool(new URL('../../dist/archive/zstd-worker.js', import.meta.url), 1);
afterAll(() => pool.close());

describe.each([
  ['on the event loop', createInProcessDecoder],
  ['in a worker thread', (maxWindow: number) => pool.createDecoder(maxWindow)],
] as const)('zstd decoder %s', (_where, createZstdDecoder: (maxWindow: number) => Duplex) => {
  it('decodes several frames back to the original bytes', async () => {
    const original = Buffer.concat([Buffer.alloc(1 << 20, 7), Buffer.from('x'.repeat(70_000)), Buffer.alloc(3 << 20)]);
    const decoder = createZstdDecoder(16 * 1024 * 1024);
    decoder.end(Buffer.concat([compress(original.subarray(0, 1 << 20)), compress(original.subarray(1 << 20))]));
    expect(await drain(decoder)).toEqual({ bytes: original.length, sha256: createHash('sha256').update(original).digest('hex') });
  });

  it('holds back output nobody reads: a nearly empty segment does not land in memory at once', async () => {
    // What a WAL switch leaves: 16 MiB that compress to a few hundred bytes.
    const sparse = compress(Buffer.alloc(SEGMENT));
    expect(sparse.length).toBeLessThan(2048);
    const decoder = createZstdDecoder(16 * 1024 * 1024);
    decoder.end(sparse);
    await new Promise((r) => setTimeout(r, 200));
    // Sum the bytes held (readableLength counts chunks when the stream is in object mode).
    let held = 0;
    for (const chunk of (decoder as unknown as { readableBuffer: Iterable<Buffer> }).readableBuffer) held += chunk.length;
    expect(held).toBeLessThanOrEqual(1 << 20);
    expect((await drain(decoder)).bytes).toBe(SEGMENT);
  });

  it('fails, never ends cleanly, on a truncated frame', async () => {
    const whole = compress(Buffer.from('y'.repeat(1 << 20)).map((_, i) => i % 251));
    const decoder = createZstdDecoder(16 * 1024 * 1024);
    decoder.end(whole.subarray(0, whole.length - 10));
    await expect(drain(decoder)).rejects.toThrow('the zstd stream ends in the middle of a frame');
  });

  it('fails on bytes that are not zstd', async () => {
    const decoder = createZstdDecoder(16 * 1024 * 1024);
    decoder.end(Buffer.concat([Buffer.from('28b52ffd', 'hex'), Buffer.alloc(64, 0xff)]));
    await expect(drain(decoder)).rejects.toThrow();
  });

  it('refuses a frame asking for a window above its limit (zstd --long=27: 128 MiB from a file of a few KB)', async () => {
    const bomb = compressWithZstd(Buffer.alloc(32 * 1024 * 1024), ['--long=27']);
    const decoder = createZstdDecoder(16 * 1024 * 1024);
    decoder.end(bomb);
    await expect(drain(decoder)).rejects.toThrow('the zstd frame needs a window larger than 16 MiB (limits.max_decode_window)');
  });

  it('decodes a frame whose window is within its limit (zstd --long=24)', async () => {
    const original = Buffer.alloc(20 * 1024 * 1024, 3);
    const decoder = createZstdDecoder(16 * 1024 * 1024);
    decoder.end(compressWithZstd(original, ['--long=24']));
    expect((await drain(decoder)).bytes).toBe(original.length);
  });

  it('frees its stream when the reader goes away mid-file, and the next decode works', async () => {
    const original = Buffer.from(Array.from({ length: 4 << 20 }, (_, i) => (i * 7) % 251));
    const first = createZstdDecoder(16 * 1024 * 1024);
    first.end(compress(original));
    for await (const _chunk of first) break; // destroys the stream after one chunk
    expect(first.destroyed).toBe(true);
    const second = createZstdDecoder(16 * 1024 * 1024);
    second.end(compress(original));
    expect(await drain(second)).toEqual({ bytes: original.length, sha256: createHash('sha256').update(original).digest('hex') });
  });
});

describe('zstd worker pool', () => {
  it('reuses the shared memory and zstd context of ended streams: lanes grow with streams at once, not with streams served', async () => {
    const own = new ZstdWorkerPool(new URL('../../dist/archive/zstd-worker.js', import.meta.url), 1);
    const lanesMade = () => (own as unknown as { workers: { nextLane: number }[] }).workers[0]!.nextLane - 1;
    const original = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 13) % 251));
    const frame = compress(original);
    const decodeOnce = async () => {
      const decoder = own.createDecoder(16 * 1024 * 1024);
      decoder.end(frame);
      return (await drain(decoder)).bytes;
    };
    try {
      for (let i = 0; i < 10; i++) expect(await decodeOnce()).toBe(original.length);
      expect(lanesMade()).toBe(1);
      for (let round = 0; round < 3; round++) {
        expect(await Promise.all(Array.from({ length: 3 }, decodeOnce))).toEqual([original.length, original.length, original.length]);
      }
      expect(lanesMade()).toBe(3);
    } finally {
      await own.close();
    }
  });


  it('fails the streams of a worker that died with an error naming the hub, not the file, and replaces the worker', async () => {
    const own = new ZstdWorkerPool(new URL('../../dist/archive/zstd-worker.js', import.meta.url), 1);
    try {
      const decoder = own.createDecoder(16 * 1024 * 1024);
      const failed = drain(decoder);
      await new Promise((r) => setTimeout(r, 100));
      const workers = (own as unknown as { workers: { terminate(): Promise<number> }[] }).workers;
      await workers[0]!.terminate();
      await expect(failed).rejects.toThrow('zstd decoding failed on the hub (worker exited with 1)');
      const next = own.createDecoder(16 * 1024 * 1024);
      next.end(compress(Buffer.alloc(1 << 20, 5)));
      expect((await drain(next)).bytes).toBe(1 << 20);
    } finally {
      await own.close();
    }
  });
});

/**
 * 3 MiB files of patterned bytes, zstd-compressed, in a directory of the
 * calling describe block's own: `dir()` once its beforeAll has run.
 */
function compressedFiles(prefix: string, seeds: Record<string, number>) {
  let made = '';
  const files = new Map<string, Buffer>();
  const patterned = (seed: number) => Buffer.from(Array.from({ length: 3 << 20 }, (_, i) => (i * seed + (i >> 12)) % 251));
  beforeAll(async () => {
    made = await mkdtemp(join(tmpdir(), prefix));
    for (const [name, seed] of Object.entries(seeds)) {
      const original = patterned(seed);
      files.set(name, original);
      await writeFile(join(made, name), compress(original));
    }
  });
  afterAll(() => rm(made, { recursive: true, force: true }));
  return { dir: () => made, files };
}

/** A pool of one worker of its own, so that lanes made and reused are the test's. */
async function withOwnPool(test: (own: ZstdWorkerPool) => Promise<void>): Promise<void> {
  const own = new ZstdWorkerPool(new URL('../../dist/archive/zstd-worker.js', import.meta.url), 1);
  try {
    await test(own);
  } finally {
    await own.close();
  }
}

const lanesMade = (own: ZstdWorkerPool) => (own as unknown as { workers: { nextLane: number }[] }).workers[0]!.nextLane - 1;

describe('zstd worker decoding a file itself, lending its chunks (a transfer)', () => {
  const { dir, files } = compressedFiles('walhub-lend-', { a: 7, b: 11, c: 13 });

  const hashOf = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
  const openLending = async (own: ZstdWorkerPool, name: string) =>
    (own.createDecoder(16 * 1024 * 1024) as WorkerDecoder).readFileDirectly(await open(join(dir(), name)));
  /** Reads every chunk, giving each back once hashed, as a transfer's sink does once ssh2 has copied it. */
  const drainGivingBack = async (decoder: WorkerDecoder) => {
    const hash = createHash('sha256');
    for await (const chunk of decoder as AsyncIterable<Buffer>) {
      hash.update(chunk);
      giveBack(chunk);
    }
    decoder.destroy();
    return hash.digest('hex');
  };

  it('decodes the file byte for byte, and its lane goes back for reuse once every chunk is given back', () =>
    withOwnPool(async (own) => {
      for (let i = 0; i < 6; i++) expect(await drainGivingBack(await openLending(own, 'a'))).toBe(hashOf(files.get('a')!));
      expect(lanesMade(own)).toBe(1);
    }));

  it('never writes again into a chunk nobody gave back: a transfer that failed with it in flight retires its lane', () =>
    withOwnPool(async (own) => {
      const failed = await openLending(own, 'a');
      const iterator = (failed as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      const kept = (await iterator.next()).value as Buffer;
      const keptBytes = Buffer.from(kept);
      // Still held (by ssh2, say) when the transfer fails.
      failed.destroy(new Error('the client went away'));
      expect(await drainGivingBack(await openLending(own, 'b'))).toBe(hashOf(files.get('b')!));
      expect(await drainGivingBack(await openLending(own, 'c'))).toBe(hashOf(files.get('c')!));
      expect(kept.equals(keptBytes)).toBe(true);
      expect(lanesMade(own)).toBe(2);
    }));

  it('keeps its lane after the decode ended until the last chunk is given back, then reuses it', () =>
    withOwnPool(async (own) => {
      const first = await openLending(own, 'a');
      const held: Buffer[] = [];
      const hash = createHash('sha256');
      for await (const chunk of first as AsyncIterable<Buffer>) {
        hash.update(chunk);
        held.push(chunk);
        // Give back all but the last (of its two slots): the worker can still go on, and ends with it held.
        while (held.length > 1) giveBack(held.shift()!);
      }
      expect(hash.digest('hex')).toBe(hashOf(files.get('a')!));
      const heldBytes = held.map((chunk) => Buffer.from(chunk));
      // Another transfer meanwhile: it must not get the lane still holding those chunks.
      expect(await drainGivingBack(await openLending(own, 'b'))).toBe(hashOf(files.get('b')!));
      held.forEach((chunk, i) => expect(chunk.equals(heldBytes[i]!)).toBe(true));
      expect(lanesMade(own)).toBe(2);
      held.forEach(giveBack);
      first.destroy();
      // Both lanes are free now: two more transfers at once make no third.
      const both = await Promise.all([openLending(own, 'c'), openLending(own, 'a')].map(async (d) => drainGivingBack(await d)));
      expect(both).toEqual([hashOf(files.get('c')!), hashOf(files.get('a')!)]);
      expect(lanesMade(own)).toBe(2);
    }));

  it('frees its lane when destroyed mid-decode with a read under way and decoded slots still on their way from the worker', () =>
    withOwnPool(async (own) => {
      const compressed = await readFile(join(dir(), 'a'));
      let reads = 0;
      // A slow disk: every read but the first takes 300 ms.
      const slowFile = {
        async read(into: Buffer, offset: number, length: number, position: number) {
          if (reads++ > 0) await new Promise((r) => setTimeout(r, 300));
          const bytes = compressed.subarray(position, position + length);
          bytes.copy(into, offset);
          return { bytesRead: bytes.length };
        },
        async close() {},
      } as unknown as FileHandle;
      const decoder = (own.createDecoder(16 * 1024 * 1024) as WorkerDecoder).readFileDirectly(slowFile);
      const first = await new Promise<Buffer>((resolve) => decoder.once('data', resolve));
      giveBack(first);
      // The client went away: nothing lent, a read under way, the worker still decoding.
      decoder.destroy();
      await new Promise((r) => setTimeout(r, 600));
      const streams = (own as unknown as { workers: { streams: Map<number, unknown> }[] }).workers[0]!.streams;
      expect(streams.size).toBe(0);
      expect(await drainGivingBack(await openLending(own, 'b'))).toBe(hashOf(files.get('b')!));
      expect(lanesMade(own)).toBe(1);
    }));

  it('turns a read error into the archive read error a transfer reports, not a damaged file', () =>
    withOwnPool(async (own) => {
      // A directory opens, but reading it fails (EISDIR).
      const decoder = (own.createDecoder(16 * 1024 * 1024) as WorkerDecoder).readFileDirectly(await open(dir()));
      const error = await drainGivingBack(decoder).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WalhubError);
      expect((error as WalhubError).message).toBe('archive read error (EISDIR)');
    }));

  it('closes the file when destroyed', () =>
    withOwnPool(async (own) => {
      const handle = await open(join(dir(), 'a'));
      const decoder = (own.createDecoder(16 * 1024 * 1024) as WorkerDecoder).readFileDirectly(handle);
      const iterator = (decoder as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      await iterator.next();
      decoder.destroy();
      await new Promise((resolve) => decoder.once('close', resolve));
      expect(handle.fd).toBe(-1);
    }));
});

describe('zstd worker decoding a whole file into one block (readahead)', () => {
  const { dir, files } = compressedFiles('walhub-whole-', { a: 7, b: 11 });

  const streamsOpen = (own: ZstdWorkerPool) => (own as unknown as { workers: { streams: Map<number, unknown> }[] }).workers[0]!.streams.size;
  /** decodeWholeFile on `name`, the decoder destroyed after, as readahead does; the file is the caller's to close. */
  const decodeWhole = async (own: ZstdWorkerPool, name: string, into: SharedArrayBuffer | number, waitTurn?: () => Promise<void> | undefined) => {
    const handle = await open(join(dir(), name));
    const decoder = own.createDecoder(16 * 1024 * 1024) as WorkerDecoder;
    try {
      return await decoder.decodeWholeFile(handle, into, waitTurn);
    } finally {
      decoder.destroy();
      await handle.close();
    }
  };

  it('decodes byte for byte into a block of shared memory of the size asked, and reuses its lane', () =>
    withOwnPool(async (own) => {
      for (const name of ['a', 'b', 'a']) {
        const decoded = await decodeWhole(own, name, 4 << 20);
        expect(decoded.buffer).toBeInstanceOf(SharedArrayBuffer);
        expect(decoded.buffer.byteLength).toBe(4 << 20);
        expect(decoded.length).toBe(3 << 20);
        expect(decoded.equals(files.get(name)!)).toBe(true);
      }
      expect(lanesMade(own)).toBe(1);
      expect(streamsOpen(own)).toBe(0);
    }));

  it('decodes into the block it is given, over what it held, and hands back that very block', () =>
    withOwnPool(async (own) => {
      const block = new SharedArrayBuffer(3 << 20);
      Buffer.from(block).fill(0xee);
      const decoded = await decodeWhole(own, 'b', block);
      expect(Buffer.from(block).equals(files.get('b')!)).toBe(true);
      // The same memory, not a copy of it.
      decoded[0] = 0x55;
      expect(Buffer.from(block)[0]).toBe(0x55);
    }));

  it('refuses a file that decodes past its block, and the next decode gets the lane', () =>
    withOwnPool(async (own) => {
      await expect(decodeWhole(own, 'a', (3 << 20) - 1)).rejects.toThrow(`the file decodes to more than ${(3 << 20) - 1} bytes`);
      expect((await decodeWhole(own, 'b', 3 << 20)).equals(files.get('b')!)).toBe(true);
      expect(lanesMade(own)).toBe(1);
    }));

  it("reports memory it cannot allocate as the hub's failure, not the file's, and the next decode works", () =>
    withOwnPool(async (own) => {
      const error = await decodeWhole(own, 'a', 2 ** 52).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WalhubError);
      expect((error as WalhubError).code).toBe('UNAVAILABLE');
      expect((error as WalhubError).message).toMatch(/^no memory for a segment read ahead \(.+\)$/);
      expect((await decodeWhole(own, 'b', 3 << 20)).equals(files.get('b')!)).toBe(true);
      expect(streamsOpen(own)).toBe(0);
    }));

  it('reads nothing while its turn is not given, then decodes it all', () =>
    withOwnPool(async (own) => {
      const handle = await open(join(dir(), 'a'));
      let reads = 0;
      const counting = new Proxy(handle, {
        get: (target, key) => (key === 'read' ? (...args: Parameters<FileHandle['read']>) => (reads++, target.read(...args)) : Reflect.get(target, key)),
      });
      let giveTurn!: () => void;
      const turn = new Promise<void>((resolve) => (giveTurn = resolve));
      let open_ = true;
      const decoder = own.createDecoder(16 * 1024 * 1024) as WorkerDecoder;
      const decoded = decoder.decodeWholeFile(counting, 3 << 20, () => (open_ ? turn : undefined));
      await new Promise((r) => setTimeout(r, 200));
      expect(reads).toBe(0);
      open_ = false;
      giveTurn();
      expect((await decoded).equals(files.get('a')!)).toBe(true);
      expect(reads).toBeGreaterThan(1);
      decoder.destroy();
      await handle.close();
    }));

  it('rejects when destroyed mid-decode, leaves the file open for its caller, and frees its stream', () =>
    withOwnPool(async (own) => {
      const handle = await open(join(dir(), 'a'));
      const decoder = own.createDecoder(16 * 1024 * 1024) as WorkerDecoder;
      let turns = 0;
      // The second read waits: the decode is under way when it is stopped.
      const decoded = decoder.decodeWholeFile(handle, 3 << 20, () => (turns++ === 1 ? new Promise((r) => setTimeout(r, 300)) : undefined));
      await new Promise((r) => setTimeout(r, 50));
      decoder.destroy(new Error('readahead stopped'));
      await expect(decoded).rejects.toThrow('readahead stopped');
      expect(handle.fd).not.toBe(-1);
      await new Promise((r) => setTimeout(r, 400));
      expect(streamsOpen(own)).toBe(0);
      await handle.close();
      expect((await decodeWhole(own, 'b', 3 << 20)).equals(files.get('b')!)).toBe(true);
      expect(lanesMade(own)).toBe(1);
    }));

  it('turns a read error into the archive read error', () =>
    withOwnPool(async (own) => {
      const handle = await open(dir());
      const decoder = own.createDecoder(16 * 1024 * 1024) as WorkerDecoder;
      const error = await decoder.decodeWholeFile(handle, 3 << 20).catch((e: unknown) => e);
      decoder.destroy();
      await handle.close();
      expect(error).toBeInstanceOf(WalhubError);
      expect((error as WalhubError).message).toBe('archive read error (EISDIR)');
    }));
});

/** The zstd program, streaming from a pipe as an archiver would: the frame then declares its window, not its size. */
function compressWithZstd(input: Buffer, args: string[]): Buffer {
  const result = spawnSync(requireProgram('zstd', 'zstd'), ['-q', '-c', ...args], { input, maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`zstd failed: ${result.stderr.toString()}`);
  return result.stdout;
}
