import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { SizeCap } from '../../src/archive/size-cap.js';
import { WalhubError } from '../../src/errors.js';

async function passThrough(chunks: Buffer[], maxBytes: number): Promise<{ bytes: number; error?: unknown }> {
  let bytes = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      callback();
    },
  });
  try {
    await pipeline(Readable.from(chunks, { objectMode: false }), new SizeCap(maxBytes, 'history file'), sink);
    return { bytes };
  } catch (error) {
    return { bytes, error };
  }
}

describe('SizeCap', () => {
  it('passes a file of exactly the cap through whole', async () => {
    expect(await passThrough([Buffer.alloc(600), Buffer.alloc(424)], 1024)).toEqual({ bytes: 1024 });
  });

  it('fails as damaged, never ends cleanly, a history file that decodes past the cap, and sends none of it', async () => {
    const outcome = await passThrough([Buffer.alloc(1000), Buffer.alloc(1000), Buffer.alloc(1000)], 1500);
    expect(outcome.bytes).toBe(0);
    expect(outcome.error).toBeInstanceOf(WalhubError);
    expect((outcome.error as WalhubError).code).toBe('DAMAGED');
    expect((outcome.error as WalhubError).message).toBe('archived file is damaged: it decodes to more than 1500 bytes, larger than any history file');
  });
});
