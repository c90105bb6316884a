import { PassThrough, Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { CheckedCopy } from '../../src/archive/checked-copy.js';
import { WalhubError } from '../../src/errors.js';

/** A check stage that lets nothing out until `open()`, as the verifier holds bytes until page 0 is proven. */
class Gate extends Transform {
  private opened = false;
  private held: Buffer[] = [];
  open(): void {
    this.opened = true;
    for (const chunk of this.held) this.push(chunk);
    this.held = [];
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.opened) return callback(null, chunk);
    this.held.push(chunk);
    callback();
  }
}

async function collect(source: Readable | Buffer[], copy: CheckedCopy): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Array.isArray(source) ? Readable.from(source) : source,
    copy,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        out.push(chunk);
        callback();
      },
    }),
  );
  return Buffer.concat(out);
}

describe('CheckedCopy', () => {
  it('passes the stored bytes through unchanged while they decode', async () => {
    const stored = gzipSync(Buffer.alloc(1024 * 1024, 7));
    const parts = [stored.subarray(0, 100), stored.subarray(100)];
    expect((await collect(parts, new CheckedCopy([createGunzip(), new PassThrough()]))).equals(stored)).toBe(true);
  });

  it('sends nothing before the check lets its first bytes out', async () => {
    const gate = new Gate();
    const copy = new CheckedCopy([new PassThrough(), gate]);
    const received: Buffer[] = [];
    copy.on('data', (chunk: Buffer) => received.push(chunk));
    copy.write(Buffer.from('first'));
    copy.write(Buffer.from('second'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(received).toEqual([]);
    gate.open();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(Buffer.concat(received).toString()).toBe('firstsecond');
    copy.end();
  });

  it('fails, never ends cleanly, when the check fails after bytes were sent', async () => {
    const stored = gzipSync(Buffer.alloc(1024 * 1024, 7));
    const truncated = stored.subarray(0, stored.length - 20);
    await expect(collect([truncated], new CheckedCopy([createGunzip(), new PassThrough()]))).rejects.toThrow(/unexpected end of file/);
  });

  it('passes on the check\'s own error', async () => {
    const refusing = new Transform({
      transform(_chunk, _encoding, callback) {
        callback(new WalhubError('DAMAGED', 'archived file is damaged: wrong segment'));
      },
    });
    await expect(collect([Buffer.from('x')], new CheckedCopy([new PassThrough(), refusing]))).rejects.toThrow('archived file is damaged: wrong segment');
  });

  it('refuses to hold more than its bound while the check says nothing', async () => {
    const copy = new CheckedCopy([new PassThrough(), new Gate()], 1024 * 1024);
    const parts = Array.from({ length: 5 }, () => Buffer.alloc(256 * 1024));
    const error = await collect(parts, copy).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WalhubError);
    expect((error as WalhubError).message).toBe('archived file is damaged: its first 1 MiB decode to nothing that can be checked');
  });
});
