import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { compress } from 'zstd-napi';
import type { Duplex } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createZstdDecoder as createInProcessDecoder } from '../../src/archive/zstd-decoder.js';
import { ZstdWorkerPool } from '../../src/archive/zstd-worker-pool.js';
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

/** The zstd program, streaming from a pipe as an archiver would: the frame then declares its window, not its size. */
function compressWithZstd(input: Buffer, args: string[]): Buffer {
  const result = spawnSync(requireProgram('zstd', 'zstd'), ['-q', '-c', ...args], { input, maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`zstd failed: ${result.stderr.toString()}`);
  return result.stdout;
}
