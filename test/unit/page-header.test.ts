import { describe, expect, it } from 'vitest';
import {
  findPageProblem,
  findPageZeroProblem,
  formatLsn,
  KNOWN_PAGE_MAGIC,
  parseLongPageHeader,
} from '../../src/archive/page-header.js';
import { parseWalName, type WalName } from '../../src/archive/wal-name.js';

const MiB = 1024 * 1024;
const SEG = 16 * MiB;
const SYSTEM_ID = 7_301_234_567_890_123_456n;

interface HeaderFields {
  magic: number;
  info: number;
  tli: number;
  pageaddr: bigint;
  remLen: number;
  sysid: bigint;
  segSize: number;
  blcksz: number;
}

/** XLogLongPageHeaderData as PostgreSQL writes it on x86/ARM (little-endian). */
function longHeader(fields: Partial<HeaderFields> = {}): Buffer {
  const f: HeaderFields = {
    magic: 0xd110,
    info: 0x2,
    tli: 1,
    pageaddr: 3n * BigInt(SEG),
    remLen: 0,
    sysid: SYSTEM_ID,
    segSize: SEG,
    blcksz: 8192,
    ...fields,
  };
  const b = Buffer.alloc(40);
  b.writeUInt16LE(f.magic, 0);
  b.writeUInt16LE(f.info, 2);
  b.writeUInt32LE(f.tli, 4);
  b.writeBigUInt64LE(f.pageaddr, 8);
  b.writeUInt32LE(f.remLen, 16);
  // 20..24: padding
  b.writeBigUInt64LE(f.sysid, 24);
  b.writeUInt32LE(f.segSize, 32);
  b.writeUInt32LE(f.blcksz, 36);
  return b;
}

function wal(text: string): WalName {
  const parsed = parseWalName(text);
  if (!parsed) throw new Error(`bad test name ${text}`);
  return parsed;
}

function problemOf(fields: Partial<HeaderFields>, name = '000000010000000000000003', maxSegmentSize = 1024 * MiB): string | undefined {
  return findPageZeroProblem(parseLongPageHeader(longHeader(fields))!, wal(name), maxSegmentSize);
}

describe('parseLongPageHeader', () => {
  it('reads every field of a long header', () => {
    const header = parseLongPageHeader(longHeader({ info: 0x3, tli: 2, remLen: 77 }));
    expect(header).toEqual({
      magic: 0xd110,
      info: 0x3,
      timeline: 2,
      pageAddress: 0x3000000n,
      systemId: SYSTEM_ID,
      segmentSize: SEG,
      blockSize: 8192,
    });
  });

  it('reads a header at the start of a longer buffer', () => {
    const page = Buffer.concat([longHeader(), Buffer.alloc(8192 - 40, 0xab)]);
    expect(parseLongPageHeader(page)?.pageAddress).toBe(0x3000000n);
  });

  it.each([0, 1, 24, 39])('has nothing to read in %i bytes', (length) => {
    expect(parseLongPageHeader(longHeader().subarray(0, length))).toBeUndefined();
  });
});

describe('findPageZeroProblem', () => {
  it('refuses a page header claiming 1 GiB segments when limits.max_segment_size is 64 MiB (a forged size makes a request stream 1 GiB)', () => {
    expect(problemOf({ segSize: 1024 * MiB, pageaddr: 3n * 1024n * BigInt(MiB) }, '000000010000000000000003', 64 * MiB)).toBe(
      'the page header says segments are 1024 MiB, above limits.max_segment_size (64 MiB)',
    );
  });

  it('accepts 64 MiB segments when limits.max_segment_size is 64 MiB', () => {
    expect(problemOf({ segSize: 64 * MiB, pageaddr: 3n * 64n * BigInt(MiB) }, '000000010000000000000003', 64 * MiB)).toBeUndefined();
  });

  it('accepts the first page of 000000010000000000000003 (pageaddr 0/3000000)', () => {
    expect(problemOf({})).toBeUndefined();
  });

  it.each([...KNOWN_PAGE_MAGIC].map(([magic, version]) => [version, magic]))(
    'accepts the page magic of PostgreSQL %s',
    (_version, magic) => {
      expect(problemOf({ magic })).toBeUndefined();
    },
  );

  it.each([
    ['long header only', 0x2],
    ['continuation record', 0x3],
    ['backup blocks removable', 0x6],
    ['every valid flag', 0xf],
  ])('accepts info flags: %s', (_what, info) => {
    expect(problemOf({ info })).toBeUndefined();
  });

  it('accepts another segment with its own address', () => {
    expect(problemOf({ pageaddr: 0x1ffn * BigInt(SEG), tli: 2 }, '0000000200000001000000FF')).toBeUndefined();
  });

  it('accepts a page 0 from an older timeline (first segment of a new timeline)', () => {
    expect(problemOf({ tli: 1 }, '000000020000000000000003')).toBeUndefined();
  });

  it('accepts a .partial name for the same segment', () => {
    expect(problemOf({}, '000000010000000000000003.partial')).toBeUndefined();
  });

  it.each([
    [1 * MiB, 3n * BigInt(MiB)],
    [64 * MiB, 3n * 64n * BigInt(MiB)],
    [1024 * MiB, 3n * 1024n * BigInt(MiB)],
  ])('accepts %i-byte segments at their own addresses', (segSize, pageaddr) => {
    expect(problemOf({ segSize, pageaddr })).toBeUndefined();
  });

  it.each([
    [
      'a mislabelled segment (it is segment 4)',
      { pageaddr: 4n * BigInt(SEG) },
      'the first page is at 0/04000000, the name says 0/03000000',
    ],
    ['a segment from the next log', { pageaddr: 0x103n * BigInt(SEG) }, 'the first page is at 1/03000000, the name says 0/03000000'],
    ['an address inside the segment', { pageaddr: 3n * BigInt(SEG) + 8192n }, 'the first page is at 0/03002000, the name says 0/03000000'],
    ['an unknown magic', { magic: 0xd111 }, 'unknown WAL page magic 0xD111'],
    ['a zero magic', { magic: 0 }, 'unknown WAL page magic 0x0'],
    ['no long-header bit', { info: 0x0 }, 'the first page has no long header'],
    ['only the continuation bit', { info: 0x1 }, 'the first page has no long header'],
    ['an undefined flag bit', { info: 0x12 }, 'invalid page flags 0x12'],
    ['a high flag bit', { info: 0x8002 }, 'invalid page flags 0x8002'],
    ['a later timeline than the name', { tli: 2 }, 'the first page is from timeline 2, the name says 1'],
    ['timeline 0', { tli: 0 }, 'the first page is from timeline 0, the name says 1'],
    ['a segment size that is not a power of two', { segSize: 3 * MiB }, 'invalid segment size 3145728 in the page header'],
    ['a segment size below 1 MiB', { segSize: 512 * 1024 }, 'invalid segment size 524288 in the page header'],
    ['a segment size above 1 GiB', { segSize: 2048 * MiB }, 'invalid segment size 2147483648 in the page header'],
    ['a zero segment size', { segSize: 0 }, 'invalid segment size 0 in the page header'],
    ['a block size that is not a power of two', { blcksz: 8000 }, 'invalid WAL block size 8000 in the page header'],
    ['a block size above 64 KiB', { blcksz: 131072 }, 'invalid WAL block size 131072 in the page header'],
  ])('refuses %s', (_what, fields, message) => {
    expect(problemOf(fields)).toBe(message);
  });

  it('refuses a name whose seg field does not exist with the header segment size', () => {
    // With 1 GiB segments there are only 4 segments per log: ...00000004 is not a name.
    const problem = problemOf({ segSize: 1024 * MiB, pageaddr: 4n * 1024n * BigInt(MiB) }, '000000010000000000000004');
    expect(problem).toBe('the name is not a valid segment for 1073741824-byte segments');
  });
});

describe('findPageProblem', () => {
  function shortHeader(magic: number, pageaddr: bigint): Buffer {
    const b = Buffer.alloc(24);
    b.writeUInt16LE(magic, 0);
    b.writeUInt32LE(1, 4);
    b.writeBigUInt64LE(pageaddr, 8);
    return b;
  }
  const expected = 0x3000000n + 8192n;

  it('accepts a page that continues the segment', () => {
    expect(findPageProblem(shortHeader(0xd110, expected), 0xd110, expected)).toBeUndefined();
  });

  it('accepts an all-zero page (never written)', () => {
    expect(findPageProblem(Buffer.alloc(24), 0xd110, expected)).toBeUndefined();
  });

  it.each([
    ['another magic', shortHeader(0xd10d, expected), 'page at 0/03002000 has magic 0xD10D'],
    ['a zero magic with an address', shortHeader(0, expected), 'page at 0/03002000 has magic 0x0'],
    ['a page of another segment', shortHeader(0xd110, 0x4002000n), 'page at 0/03002000 says it is at 0/04002000'],
    ['a stale page (recycled file)', shortHeader(0xd110, expected - 0x1000000n), 'page at 0/03002000 says it is at 0/02002000'],
  ])('refuses %s', (_what, page, message) => {
    expect(findPageProblem(page, 0xd110, expected)).toBe(message);
  });
});

describe('formatLsn', () => {
  it.each([
    [0n, '0/00000000'],
    [0x3000000n, '0/03000000'],
    [0x1_0000_00abn, '1/000000AB'],
    [0x16_b374_d848n, '16/B374D848'],
    [0xffff_ffff_ffff_ffffn, 'FFFFFFFF/FFFFFFFF'],
  ])('writes %i as %s', (lsn, text) => {
    expect(formatLsn(lsn)).toBe(text);
  });
});
