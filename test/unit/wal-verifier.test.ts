import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { WalhubError } from '../../src/errors.js';
import { lend } from '../../src/archive/lent-chunks.js';
import { needsVerifier, WalVerifier } from '../../src/archive/wal-verifier.js';
import { parseWalName, type WalName } from '../../src/archive/wal-name.js';

// 1 MiB segments keep the synthetic files small; the layout is PostgreSQL's.
const SEGMENT_SIZE = 1024 * 1024;
const BLOCK_SIZE = 8192;
const MAGIC = 0xd110;
const NAME = '000000010000000000000003';
const BASE = 3n * BigInt(SEGMENT_SIZE);

function wal(text: string): WalName {
  const parsed = parseWalName(text);
  if (!parsed) throw new Error(`bad test name ${text}`);
  return parsed;
}

/** A whole segment: page 0 with the long header, then short headers, filled with varied bytes. */
function makeSegment(base = BASE, timeline = 1, blockSize = BLOCK_SIZE): Buffer {
  const segment = Buffer.alloc(SEGMENT_SIZE);
  for (let i = 0; i < segment.length; i++) segment[i] = (i * 31 + (i >> 13)) & 0xff;
  for (let page = 0; page < SEGMENT_SIZE / blockSize; page++) {
    const at = page * blockSize;
    segment.fill(0, at, at + 24);
    segment.writeUInt16LE(MAGIC, at);
    segment.writeUInt16LE(page === 0 ? 0x2 : 0x1, at + 2);
    segment.writeUInt32LE(timeline, at + 4);
    segment.writeBigUInt64LE(base + BigInt(at), at + 8);
    if (page === 0) {
      segment.fill(0, at + 24, at + 40);
      segment.writeBigUInt64LE(7_301_234_567_890_123_456n, at + 24);
      segment.writeUInt32LE(SEGMENT_SIZE, at + 32);
      segment.writeUInt32LE(blockSize, at + 36);
    }
  }
  return segment;
}

function* chunksOf(bytes: Buffer, size: number | (() => number)): Generator<Buffer> {
  for (let at = 0; at < bytes.length; ) {
    const n = typeof size === 'number' ? size : size();
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

/** A small deterministic generator, so a failing random split can be replayed. */
function randomSizes(seed: number, max: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return 1 + (state % max);
  };
}

interface Outcome {
  output: Buffer;
  error?: unknown;
}

async function verify(chunks: Iterable<Buffer>, name = NAME, checkLaterPages = true): Promise<Outcome> {
  const received: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received.push(chunk);
      callback();
    },
  });
  try {
    await pipeline(Readable.from(chunks, { objectMode: false }), new WalVerifier(wal(name), checkLaterPages, 64 * 1024 * 1024), sink);
    return { output: Buffer.concat(received) };
  } catch (error) {
    return { output: Buffer.concat(received), error };
  }
}

function expectDamaged(outcome: Outcome, message?: RegExp): void {
  expect(outcome.error).toBeInstanceOf(WalhubError);
  expect((outcome.error as WalhubError).code).toBe('DAMAGED');
  if (message) expect((outcome.error as WalhubError).message).toMatch(message);
}

describe('WalVerifier', () => {
  const segment = makeSegment();

  it.each([
    ['the whole segment at once', () => [segment]],
    ['1-byte chunks', () => chunksOf(segment, 1)],
    ['7-byte chunks', () => chunksOf(segment, 7)],
    ['39-byte chunks (page 0 straddles)', () => chunksOf(segment, 39)],
    ['8191-byte chunks', () => chunksOf(segment, 8191)],
    ['8193-byte chunks', () => chunksOf(segment, 8193)],
    ['64 KiB chunks', () => chunksOf(segment, 65536)],
    ['random chunks up to 20000 bytes', () => chunksOf(segment, randomSizes(42, 20000))],
    ['random chunks up to 30 bytes', () => chunksOf(segment, randomSizes(7, 30))],
  ])('passes a good segment through unchanged in %s', async (_what, chunks) => {
    const outcome = await verify(chunks());
    expect(outcome.error).toBeUndefined();
    expect(outcome.output.length).toBe(SEGMENT_SIZE);
    expect(outcome.output.equals(segment)).toBe(true);
  });

  it('checks a page head split between two chunks even when the first is written over once passed on (a lent chunk given back)', async () => {
    const received: Buffer[] = [];
    const reusing = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        received.push(Buffer.from(chunk));
        chunk.fill(0xee);
        callback();
      },
    });
    // Own copies of 8200 bytes: every page head but the first straddles two of them.
    const chunks = [...chunksOf(segment, 8200)].map((chunk) => Buffer.from(chunk));
    await pipeline(Readable.from(chunks, { objectMode: false }), new WalVerifier(wal(NAME), true, 64 * 1024 * 1024), reusing);
    expect(Buffer.concat(received).equals(segment)).toBe(true);
  });

  it('gives back at once each lent chunk it holds until page 0 is whole: a lender with all its memory held would decode nothing more', async () => {
    let givenBack = 0;
    const lent = [...chunksOf(segment, 1)].slice(0, 8).map((chunk) => lend(Buffer.from(chunk), () => givenBack++));
    const verifier = new WalVerifier(wal(NAME), true, 64 * 1024 * 1024);
    for (const chunk of lent) await new Promise<void>((resolve, reject) => verifier.write(chunk, (error) => (error ? reject(error) : resolve())));
    expect(givenBack).toBe(lent.length);
    verifier.destroy();
  });

  it('passes the first segment of a new timeline, whose page 0 carries the old timeline', async () => {
    const outcome = await verify([makeSegment(BASE, 1)], '000000020000000000000003');
    expect(outcome.error).toBeUndefined();
    expect(outcome.output.length).toBe(SEGMENT_SIZE);
  });

  it.each([
    ['one byte short', segment.subarray(0, SEGMENT_SIZE - 1), /1048575 bytes/],
    ['one page short', segment.subarray(0, SEGMENT_SIZE - BLOCK_SIZE), /1040384 bytes/],
    ['one byte too many', Buffer.concat([segment, Buffer.from([0])]), /more than 1048576 bytes/],
    ['a second segment appended', Buffer.concat([segment, segment]), /more than 1048576 bytes/],
  ])('refuses a segment %s', async (_what, bytes, message) => {
    for (const size of [bytes.length, 8191, 4096]) {
      expectDamaged(await verify(chunksOf(bytes, size)), message);
    }
  });

  it.each([
    ['empty', Buffer.alloc(0)],
    ['shorter than a long header', segment.subarray(0, 39)],
  ])('refuses a file that is %s', async (_what, bytes) => {
    const outcome = await verify(bytes.length ? [bytes] : []);
    expectDamaged(outcome, /holds only \d+ bytes/);
    expect(outcome.output.length).toBe(0);
  });

  it.each([1, 100, 8191])('refuses a later page with a wrong pageaddr (chunks of %i bytes)', async (size) => {
    const bad = Buffer.from(segment);
    bad.writeBigUInt64LE(BASE + 5n * 8192n + 0x100000n, 5 * BLOCK_SIZE + 8);
    expectDamaged(await verify(chunksOf(bad, size)), /page at 0\/0030A000 says it is at 0\/0040A000/);
  });

  it('walks pages at the block size the header gives (32 KiB, built with --with-wal-blocksize=32)', async () => {
    const large = makeSegment(BASE, 1, 32768);
    const good = await verify(chunksOf(large, 8191));
    expect(good.error).toBeUndefined();
    expect(good.output.equals(large)).toBe(true);
    const bad = Buffer.from(large);
    bad.writeBigUInt64LE(0n, 3 * 32768 + 8);
    expectDamaged(await verify(chunksOf(bad, 8191)), /page at 0\/00318000 says it is at 0\/00000000/);
  });

  it('refuses the last page of the segment when it belongs elsewhere', async () => {
    const bad = Buffer.from(segment);
    const last = SEGMENT_SIZE - BLOCK_SIZE;
    bad.writeBigUInt64LE(0n + BigInt(last), last + 8);
    expectDamaged(await verify(chunksOf(bad, 7)));
  });

  it('refuses a later page with another magic', async () => {
    const bad = Buffer.from(segment);
    bad.writeUInt16LE(0xd10d, 9 * BLOCK_SIZE);
    expectDamaged(await verify([bad]), /magic 0xD10D/);
  });

  it.each([3, 8191, 65536])('accepts all-zero later pages (chunks of %i bytes)', async (size) => {
    const tail = Buffer.from(segment);
    tail.fill(0, 10 * BLOCK_SIZE);
    const outcome = await verify(chunksOf(tail, size));
    expect(outcome.error).toBeUndefined();
    expect(outcome.output.equals(tail)).toBe(true);
  });

  it('does not check later pages when told not to (a .partial may end in stale bytes)', async () => {
    const partial = Buffer.from(segment);
    partial.writeBigUInt64LE(0x12345678n, 20 * BLOCK_SIZE + 8);
    const outcome = await verify(chunksOf(partial, 8191), `${NAME}.partial`, false);
    expect(outcome.error).toBeUndefined();
    expect(outcome.output.equals(partial)).toBe(true);
  });

  it('still checks page 0 and the size when later pages are not checked', async () => {
    expectDamaged(await verify([makeSegment(4n * BigInt(SEGMENT_SIZE))], `${NAME}.partial`, false));
    expectDamaged(await verify([segment.subarray(0, SEGMENT_SIZE - 1)], `${NAME}.partial`, false));
  });

  it.each([
    ['a mislabelled segment', makeSegment(4n * BigInt(SEGMENT_SIZE)), /the first page is at 0\/00400000, the name says 0\/00300000/],
    ['a later timeline', makeSegment(BASE, 2), /timeline 2/],
    ['garbage', Buffer.alloc(SEGMENT_SIZE, 0x5a), /unknown WAL page magic/],
    ['zeros', Buffer.alloc(SEGMENT_SIZE), /unknown WAL page magic/],
  ])('emits no byte before refusing %s', async (_what, bytes, message) => {
    for (const size of [1, 7, 40, 8191, SEGMENT_SIZE]) {
      const verifier = new WalVerifier(wal(NAME), true, 64 * 1024 * 1024);
      let emitted = 0;
      verifier.on('data', (chunk: Buffer) => {
        emitted += chunk.length;
      });
      const error = await new Promise<unknown>((resolve) => {
        verifier.on('error', resolve);
        verifier.on('end', () => resolve(undefined));
        (async () => {
          for (const chunk of chunksOf(bytes, size)) {
            if (verifier.destroyed) return;
            if (!verifier.write(chunk)) await new Promise((r) => verifier.once('drain', r));
          }
          verifier.end();
        })().catch(resolve);
      });
      expectDamaged({ output: Buffer.alloc(0), error }, message);
      expect(emitted).toBe(0);
    }
  });

  it('says the file is damaged in a sentence a person reads', async () => {
    const outcome = await verify([segment.subarray(0, SEGMENT_SIZE - 1)]);
    expect((outcome.error as Error).message).toBe('archived file is damaged: it decodes to 1048575 bytes, a segment is 1048576');
  });
});

describe('needsVerifier', () => {
  it.each([
    ['000000010000000000000003', true],
    ['000000010000000000000003.partial', true],
    ['000000010000000000000003.00000028.backup', false],
    ['00000002.history', false],
  ])('%s -> %s', (name, expected) => {
    expect(needsVerifier(wal(name))).toBe(expected);
  });
});
