import { formatBytes } from './limits.js';
import { toSegmentNumber, type WalName } from './wal-name.js';

/** XLOG_PAGE_MAGIC of each release from 9.6 (reference/postgres.md). */
export const KNOWN_PAGE_MAGIC: ReadonlyMap<number, string> = new Map([
  [0xd093, '9.6'],
  [0xd097, '10'],
  [0xd098, '11'],
  [0xd101, '12'],
  [0xd106, '13'],
  [0xd10d, '14'],
  [0xd110, '15'],
  [0xd113, '16'],
  [0xd116, '17'],
  [0xd118, '18'],
]);

export const LONG_HEADER_SIZE = 40;
export const SHORT_HEADER_SIZE = 24;
const XLP_LONG_HEADER = 0x2;
const XLP_ALL_FLAGS = 0xf;
const MIN_SEGMENT_SIZE = 1 << 20;
/** PostgreSQL's own bound (initdb --wal-segsize); the configured limit is at most this. */
const MAX_SEGMENT_SIZE = 1 << 30;

export interface LongPageHeader {
  readonly magic: number;
  readonly info: number;
  readonly timeline: number;
  readonly pageAddress: bigint;
  readonly systemId: bigint;
  readonly segmentSize: number;
  readonly blockSize: number;
}

/** Reads page 0's long header; PostgreSQL writes it in native order, little-endian on every supported port we serve. */
export function parseLongPageHeader(bytes: Buffer): LongPageHeader | undefined {
  if (bytes.length < LONG_HEADER_SIZE) return undefined;
  return {
    magic: bytes.readUInt16LE(0),
    info: bytes.readUInt16LE(2),
    timeline: bytes.readUInt32LE(4),
    pageAddress: bytes.readBigUInt64LE(8),
    systemId: bytes.readBigUInt64LE(24),
    segmentSize: bytes.readUInt32LE(32),
    blockSize: bytes.readUInt32LE(36),
  };
}

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

/** A size PostgreSQL can have made (a power of two from 1 MiB to 1 GiB). */
export function isSegmentSize(size: number): boolean {
  return isPowerOfTwo(size) && size >= MIN_SEGMENT_SIZE && size <= MAX_SEGMENT_SIZE;
}

/**
 * Why page 0 is not the start of the segment the name asks for, or undefined
 * when it is. This catches a file archived under the wrong name, which
 * PostgreSQL itself would only notice as "unexpected pageaddr" after taking it.
 * The segment size, read from the file, decides how many bytes are served:
 * it is held to `maxSegmentSize` so that a forged header cannot make a
 * request stream a gigabyte of zeros.
 */
export function findPageZeroProblem(header: LongPageHeader, wal: WalName, maxSegmentSize: number): string | undefined {
  if (!KNOWN_PAGE_MAGIC.has(header.magic)) return `unknown WAL page magic 0x${header.magic.toString(16).toUpperCase()}`;
  if ((header.info & XLP_LONG_HEADER) === 0) return 'the first page has no long header';
  if ((header.info & ~XLP_ALL_FLAGS) !== 0) return `invalid page flags 0x${header.info.toString(16)}`;
  if (!isSegmentSize(header.segmentSize)) {
    return `invalid segment size ${header.segmentSize} in the page header`;
  }
  if (header.segmentSize > maxSegmentSize) {
    return `the page header says segments are ${formatBytes(header.segmentSize)}, above limits.max_segment_size (${formatBytes(maxSegmentSize)})`;
  }
  if (!isPowerOfTwo(header.blockSize) || header.blockSize < 1024 || header.blockSize > 65536) {
    return `invalid WAL block size ${header.blockSize} in the page header`;
  }
  if (header.timeline === 0 || header.timeline > wal.timeline) {
    return `the first page is from timeline ${header.timeline}, the name says ${wal.timeline}`;
  }
  const segno = toSegmentNumber(wal, header.segmentSize);
  if (segno === undefined) return `the name is not a valid segment for ${header.segmentSize}-byte segments`;
  const expected = segno * BigInt(header.segmentSize);
  if (header.pageAddress !== expected) {
    return `the first page is at ${formatLsn(header.pageAddress)}, the name says ${formatLsn(expected)}`;
  }
  return undefined;
}

/** A later page is zeros (never written) or continues the same segment. */
export function findPageProblem(page: Buffer, magic: number, expectedAddress: bigint): string | undefined {
  const pageMagic = page.readUInt16LE(0);
  const address = page.readBigUInt64LE(8);
  if (pageMagic === 0 && address === 0n) return undefined;
  if (pageMagic !== magic) return `page at ${formatLsn(expectedAddress)} has magic 0x${pageMagic.toString(16).toUpperCase()}`;
  if (address !== expectedAddress) return `page at ${formatLsn(expectedAddress)} says it is at ${formatLsn(address)}`;
  return undefined;
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase().padStart(8, '0')}`;
}
