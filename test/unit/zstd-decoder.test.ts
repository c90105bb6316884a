import { createHash } from 'node:crypto';
import { compress } from 'zstd-napi';
import { describe, expect, it } from 'vitest';
import { createZstdDecoder } from '../../src/archive/zstd-decoder.js';

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

describe('createZstdDecoder', () => {
  it('decodes several frames back to the original bytes', async () => {
    const original = Buffer.concat([Buffer.alloc(1 << 20, 7), Buffer.from('x'.repeat(70_000)), Buffer.alloc(3 << 20)]);
    const decoder = createZstdDecoder();
    decoder.end(Buffer.concat([compress(original.subarray(0, 1 << 20)), compress(original.subarray(1 << 20))]));
    expect(await drain(decoder)).toEqual({ bytes: original.length, sha256: createHash('sha256').update(original).digest('hex') });
  });

  it('holds back output nobody reads: a nearly empty segment does not land in memory at once', async () => {
    // What a WAL switch leaves: 16 MiB that compress to a few hundred bytes.
    const sparse = compress(Buffer.alloc(SEGMENT));
    expect(sparse.length).toBeLessThan(2048);
    const decoder = createZstdDecoder();
    decoder.end(sparse);
    await new Promise((r) => setTimeout(r, 200));
    // readableLength counts chunks here (the stream is in object mode): sum the bytes held.
    let held = 0;
    for (const chunk of (decoder as unknown as { readableBuffer: Iterable<Buffer> }).readableBuffer) held += chunk.length;
    expect(held).toBeLessThanOrEqual(1 << 20);
    expect((await drain(decoder)).bytes).toBe(SEGMENT);
  });

  it('fails, never ends cleanly, on a truncated frame', async () => {
    const whole = compress(Buffer.from('y'.repeat(1 << 20)).map((_, i) => i % 251));
    const decoder = createZstdDecoder();
    decoder.end(whole.subarray(0, whole.length - 10));
    await expect(drain(decoder)).rejects.toThrow('the zstd stream ends in the middle of a frame');
  });

  it('fails on bytes that are not zstd', async () => {
    const decoder = createZstdDecoder();
    decoder.end(Buffer.concat([Buffer.from('28b52ffd', 'hex'), Buffer.alloc(64, 0xff)]));
    await expect(drain(decoder)).rejects.toThrow();
  });
});
