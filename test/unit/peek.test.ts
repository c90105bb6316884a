import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDecoderTable } from '../../src/archive/compression.js';
import { peekWalNames } from '../../src/archive/peek.js';
import { parseWalName } from '../../src/archive/wal-name.js';
import { DEFAULT_LIMITS } from '../../src/config.js';

const NAME = '000000010000000000000003';
let serverDir: string;

/** A long page header whose segment size field says `segmentSize`. */
function header(segmentSize: number): Buffer {
  const page = Buffer.alloc(8192);
  page.writeUInt16LE(0xd110, 0);
  page.writeUInt16LE(0x2, 2);
  page.writeUInt32LE(1, 4);
  page.writeUInt32LE(segmentSize, 32);
  page.writeUInt32LE(8192, 36);
  return page;
}

beforeAll(() => {
  serverDir = mkdtempSync(join(tmpdir(), 'walhub-peek-'));
  mkdirSync(join(serverDir, 'wals', NAME.slice(0, 16)), { recursive: true });
  writeFileSync(join(serverDir, 'wals', NAME.slice(0, 16), '000000010000000000000004'), header(16 << 20));
  // What follows ...03 if segments were 1 GiB: it must not be listed when that size is above the limit.
  mkdirSync(join(serverDir, 'wals', '0000000100000001'));
  writeFileSync(join(serverDir, 'wals', '0000000100000001', '000000010000000100000000'), header(1 << 30));
});

afterAll(() => rmSync(serverDir, { recursive: true, force: true }));

describe('peekWalNames', () => {
  it.each([
    ['0 (it divided by zero: an internal error instead of an answer)', 0],
    ['not a power of two', 3 << 20],
    ['above limits.max_segment_size', 1 << 30],
  ])('lists the name alone when the page header segment size is %s', async (_what, segmentSize) => {
    writeFileSync(join(serverDir, 'wals', NAME.slice(0, 16), NAME), header(segmentSize));
    expect(await peekWalNames(serverDir, parseWalName(NAME)!, 3, createDecoderTable(''), DEFAULT_LIMITS)).toEqual([NAME]);
  });

  it('follows the segments that exist when the header is sound', async () => {
    writeFileSync(join(serverDir, 'wals', NAME.slice(0, 16), NAME), header(16 << 20));
    expect(await peekWalNames(serverDir, parseWalName(NAME)!, 3, createDecoderTable(''), DEFAULT_LIMITS)).toEqual([NAME, '000000010000000000000004']);
  });
});
