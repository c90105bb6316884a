// Snappy's framing format, as python-snappy's stream_compress writes it
// (Barman 3.14+), and every way such a stream can be wrong.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { crc32c } from '@node-rs/crc32';
import snappy from 'snappy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSnappyDecoder } from '../../src/archive/snappy-decoder.js';
import { writeAsBarman } from '../helpers/python-writers.js';

let dir: string;
let original: Buffer;
let framed: Buffer;

/** Text-like and random parts, so both compressed and stored chunks appear. */
function makeData(): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    parts.push(Buffer.from(`record ${i} `.repeat(2000)));
    parts.push(Buffer.from(Array.from({ length: 5000 }, (_, j) => (i * 7919 + j * 104729) % 251)));
  }
  return Buffer.concat(parts);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'walhub-snappy-'));
  original = makeData();
  await writeFile(join(dir, 'data'), original);
  await writeAsBarman('snappy', join(dir, 'data'), join(dir, 'data.snappy'));
  framed = await readFile(join(dir, 'data.snappy'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function decode(bytes: Buffer, chunkSize = 4096): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
  return buffer(Readable.from(chunks).pipe(createSnappyDecoder()));
}

function masked(data: Buffer): Buffer {
  const crc = crc32c(data);
  const out = Buffer.alloc(4);
  out.writeUInt32LE((((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0);
  return out;
}

function chunk(type: number, body: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header[0] = type;
  header.writeUIntLE(body.length, 1, 3);
  return Buffer.concat([header, body]);
}

const IDENTIFIER = chunk(0xff, Buffer.from('sNaPpY'));

describe('snappy framed decoding', () => {
  it.each([1, 7, 4096, 1 << 20])('decodes what python-snappy wrote, fed %i bytes at a time', async (size) => {
    expect(framed.subarray(0, 10).toString('hex')).toBe('ff060000734e61507059');
    expect((await decode(framed, size)).equals(original)).toBe(true);
  });

  it('decodes stored (uncompressed) chunks, skips padding, and takes concatenated streams', async () => {
    const data = Buffer.from('walhub '.repeat(100));
    const stream = Buffer.concat([
      IDENTIFIER,
      chunk(0x01, Buffer.concat([masked(data), data])),
      chunk(0xfe, Buffer.alloc(100)),
      IDENTIFIER,
      chunk(0x00, Buffer.concat([masked(data), snappy.compressSync(data)])),
    ]);
    expect((await decode(stream)).equals(Buffer.concat([data, data]))).toBe(true);
  });

  it.each([
    ['a flipped byte', (b: Buffer) => { const c = Buffer.from(b); c[5000] = c[5000]! ^ 0x40; return c; }, /checksum|snappy|corrupt|invalid/i],
    ['a stream cut short', (b: Buffer) => b.subarray(0, b.length - 100), /ends in the middle of a chunk/],
    ['no stream identifier', (b: Buffer) => b.subarray(10), /no stream identifier/],
    ['an empty file', () => Buffer.alloc(0), /empty/],
  ])('refuses %s', async (_what, damage, message) => {
    await expect(decode(damage(framed))).rejects.toThrow(message);
  });

  it('refuses a reserved unskippable chunk', async () => {
    await expect(decode(Buffer.concat([IDENTIFIER, chunk(0x02, Buffer.alloc(8))]))).rejects.toThrow(/reserved unskippable chunk/);
  });

  it('refuses a chunk longer than the format allows, before reading it', async () => {
    const header = Buffer.from([0x00, 0xff, 0xff, 0xff]);
    await expect(decode(Buffer.concat([IDENTIFIER, header]))).rejects.toThrow(/longer than the format allows/);
  });

  it('refuses a block that says it decodes to more than 64 KiB, before decoding it', async () => {
    const big = Buffer.alloc(200_000, 0x61);
    const block = snappy.compressSync(big);
    await expect(decode(Buffer.concat([IDENTIFIER, chunk(0x00, Buffer.concat([masked(big), block]))]))).rejects.toThrow(
      /larger than 64 KiB|longer than the format allows/,
    );
  });

  it('refuses a stored chunk whose checksum does not match', async () => {
    const data = Buffer.from('abc');
    await expect(decode(Buffer.concat([IDENTIFIER, chunk(0x01, Buffer.concat([Buffer.alloc(4), data]))]))).rejects.toThrow(
      /checksum mismatch/,
    );
  });
});
