import { describe, expect, it } from 'vitest';
import { nextSegment, parseWalName, toHashDir, toSegmentName, toSegmentNumber, type WalName } from '../../src/archive/wal-name.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function parsed(text: string): WalName {
  const wal = parseWalName(text);
  if (!wal) throw new Error(`${JSON.stringify(text)} should be a WAL name`);
  return wal;
}

describe('parseWalName', () => {
  it.each([
    ['000000010000000000000003', 'segment', 1, 0, 3],
    ['0000000200000001000000FF', 'segment', 2, 1, 0xff],
    ['FFFFFFFFFFFFFFFFFFFFFFFF', 'segment', 0xffffffff, 0xffffffff, 0xffffffff],
    ['000000010000000000000003.partial', 'partial', 1, 0, 3],
    ['000000010000000000000003.00000028.backup', 'backup', 1, 0, 3],
    ['0000000A000000000000001C.0A1B2C3D.backup', 'backup', 10, 0, 0x1c],
  ] as const)('reads %s as a %s on timeline %i', (text, kind, timeline, log, seg) => {
    expect(parseWalName(text)).toEqual({ name: text, kind, timeline, log, seg, segmentName: text.slice(0, 24) });
  });

  it.each([
    ['00000002.history', 2],
    ['0000000A.history', 10],
  ])('reads the history file %s of timeline %i', (text, timeline) => {
    expect(parseWalName(text)).toEqual({ name: text, kind: 'history', timeline });
  });

  it.each([
    ['lower-case hex', '00000001000000000000000a'],
    ['a lower-case history name', '0000000a.history'],
    ['an upper-case suffix', '000000010000000000000003.PARTIAL'],
    ['23 hex digits', '00000001000000000000003'],
    ['25 hex digits', '0000000100000000000000003'],
    ['a 7-digit backup offset', '000000010000000000000003.0000028.backup'],
    ['a 9-digit history timeline', '000000001.history'],
    ['timeline 0', '000000000000000000000003'],
    ['timeline 0 in a history name', '00000000.history'],
    ['timeline 0 in a partial name', '000000000000000000000003.partial'],
    ['a non-hex digit', '0000000100000000000000G3'],
    ['a relative path', '../000000010000000000000003'],
    ['a path inside the archive', 'wals/0000000100000000/000000010000000000000003'],
    ['an absolute path', '/etc/passwd'],
    ['a trailing newline', '000000010000000000000003\n'],
    ['a newline on a history name', '00000002.history\n'],
    ['a leading space', ' 000000010000000000000003'],
    ['a trailing space', '000000010000000000000003 '],
    ['a doubled suffix', '000000010000000000000003.partial.partial'],
    ['a compression suffix', '000000010000000000000003.gz'],
    ['a NUL byte', '000000010000000000000003\0'],
    ['the empty string', ''],
    ['barman-wal-restore dummy name', 'dummy_wal_name'],
  ])('refuses %s', (_what, text) => {
    expect(parseWalName(text)).toBeUndefined();
  });
});

describe('toHashDir', () => {
  it.each([
    ['000000010000000000000003', '0000000100000000'],
    ['0000000200000001000000FF.partial', '0000000200000001'],
    ['000000010000000000000003.00000028.backup', '0000000100000000'],
  ])('puts %s under wals/%s', (text, dir) => {
    expect(toHashDir(parsed(text))).toBe(dir);
  });

  it('has no hash directory for a history file (it lives in wals/ itself)', () => {
    expect(toHashDir(parsed('00000002.history'))).toBeUndefined();
  });
});

describe('segment numbers', () => {
  it.each([
    // 16 MiB: 256 segments per "log"
    ['000000010000000000000000', 16 * MiB, 0n],
    ['000000010000000000000003', 16 * MiB, 3n],
    ['0000000100000000000000FF', 16 * MiB, 0xffn],
    ['000000010000000100000000', 16 * MiB, 0x100n],
    ['0000000100000001000000FF', 16 * MiB, 0x1ffn],
    ['00000001FFFFFFFF000000FF', 16 * MiB, 0xffffffffn * 256n + 255n],
    // 1 GiB: 4 segments per "log"
    ['000000010000000000000003', GiB, 3n],
    ['000000010000000100000000', GiB, 4n],
    ['000000010000007F00000003', GiB, 0x1ffn],
    // 1 MiB: 4096 segments per "log"
    ['000000010000000000000FFF', MiB, 0xfffn],
    ['000000010000000100000000', MiB, 0x1000n],
  ])('%s with %i-byte segments is segment number %i', (text, segmentSize, segno) => {
    expect(toSegmentNumber(parsed(text), segmentSize)).toBe(segno);
    expect(toSegmentName(1, segno, segmentSize)).toBe(text);
  });

  it.each([
    ['000000010000000000000100', 16 * MiB],
    ['000000010000000000000004', GiB],
    ['000000010000000000001000', MiB],
  ])('%s is not a segment when segments are %i bytes (seg is past the end of its log)', (text, segmentSize) => {
    expect(toSegmentNumber(parsed(text), segmentSize)).toBeUndefined();
  });

  it('has no segment number for a history file', () => {
    expect(toSegmentNumber(parsed('00000002.history'), 16 * MiB)).toBeUndefined();
  });

  it('counts a .partial and a .backup as the segment they belong to', () => {
    expect(toSegmentNumber(parsed('0000000100000001000000FF.partial'), 16 * MiB)).toBe(0x1ffn);
    expect(toSegmentNumber(parsed('0000000100000001000000FF.00000028.backup'), 16 * MiB)).toBe(0x1ffn);
  });

  it.each([MiB, 16 * MiB, 64 * MiB, GiB])('names and numbers round-trip with %i-byte segments', (segmentSize) => {
    const perLog = 0x1_0000_0000n / BigInt(segmentSize);
    const segnos = [0n, 1n, perLog - 1n, perLog, perLog + 1n, 0x1ffn, 123_456n, 0xffffffffn * perLog + perLog - 1n];
    for (const timeline of [1, 2, 0x7fffffff, 0xffffffff]) {
      for (const segno of segnos) {
        const name = toSegmentName(timeline, segno, segmentSize);
        expect(name).toMatch(/^[0-9A-F]{24}$/);
        const wal = parsed(name);
        expect(wal.timeline).toBe(timeline);
        expect(toSegmentNumber(wal, segmentSize)).toBe(segno);
      }
    }
  });

  it('names the next segment across a log boundary (16 MiB)', () => {
    const segno = toSegmentNumber(parsed('0000000100000000000000FF'), 16 * MiB)!;
    expect(toSegmentName(1, segno + 1n, 16 * MiB)).toBe('000000010000000100000000');
  });
});

describe('nextSegment', () => {
  it.each([
    // 16 MiB: 256 segments per log file, the last one is ...FF.
    ['000000010000000000000003', 16 * MiB, '000000010000000000000004'],
    ['0000000100000000000000FF', 16 * MiB, '000000010000000100000000'],
    ['0000000200000007000000FE', 16 * MiB, '0000000200000007000000FF'],
    // 1 GiB: 4 segments per log file, ...00 to ...03.
    ['000000010000000000000002', GiB, '000000010000000000000003'],
    ['000000010000000000000003', GiB, '000000010000000100000000'],
    ['00000001000000050000000', 0, undefined],
  ] as const)('after %s (segments of %i bytes) comes %s', (text, size, expected) => {
    const wal = parseWalName(text);
    expect(wal === undefined ? undefined : nextSegment(wal, size)?.name).toBe(expected);
  });

  it('has no next segment for a seg field the segment size does not allow', () => {
    // 1 GiB segments go up to ...03 in each log file: ...04 is not one.
    expect(nextSegment(parsed('000000010000000000000004'), GiB)).toBeUndefined();
  });

  it('has none after the last segment of the last log file', () => {
    expect(nextSegment(parsed('00000001FFFFFFFF000000FF'), 16 * MiB)).toBeUndefined();
  });

  it('has none for a size PostgreSQL cannot have made, nor for a .partial, .backup or history name', () => {
    expect(nextSegment(parsed('000000010000000000000003'), 0)).toBeUndefined();
    expect(nextSegment(parsed('000000010000000000000003'), 3 * MiB)).toBeUndefined();
    expect(nextSegment(parsed('000000010000000000000003.partial'), 16 * MiB)).toBeUndefined();
    expect(nextSegment(parsed('00000002.history'), 16 * MiB)).toBeUndefined();
  });
});
