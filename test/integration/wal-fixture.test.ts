// The WAL fixture is what it claims: checked from the bytes PostgreSQL wrote,
// so a fixture built wrong (or a cache gone stale) fails here, not in the tests
// that lean on it.
import { open, readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { loadOrMakeWalFixture, SEGMENT_SIZE, type WalFixture } from '../helpers/wal-fixture.js';

const PG15_PAGE_MAGIC = 0xd110;
const XLP_LONG_HEADER = 0x2;
const SEGMENTS_PER_LOG = 0x1_0000_0000 / SEGMENT_SIZE;

interface LongHeader {
  magic: number;
  info: number;
  tli: number;
  pageaddr: bigint;
  sysid: bigint;
  segSize: number;
  blockSize: number;
}

async function readLongHeader(path: string): Promise<LongHeader> {
  const file = await open(path, 'r');
  try {
    const buf = Buffer.alloc(40);
    await file.read(buf, 0, 40, 0);
    return {
      magic: buf.readUInt16LE(0),
      info: buf.readUInt16LE(2),
      tli: buf.readUInt32LE(4),
      pageaddr: buf.readBigUInt64LE(8),
      sysid: buf.readBigUInt64LE(24),
      segSize: buf.readUInt32LE(32),
      blockSize: buf.readUInt32LE(36),
    };
  } finally {
    await file.close();
  }
}

function toSegment(path: string): { tli: number; segno: number } {
  const name = basename(path).replace(/\.partial$/, '');
  const [tli, log, seg] = [0, 8, 16].map((i) => parseInt(name.slice(i, i + 8), 16));
  return { tli: tli ?? NaN, segno: (log ?? NaN) * SEGMENTS_PER_LOG + (seg ?? NaN) };
}

let fixture: WalFixture;

beforeAll(async () => {
  fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
});

describe('WAL fixture', () => {
  it('has at least 6 consecutive timeline-1 segments', () => {
    expect(fixture.segments.length).toBeGreaterThanOrEqual(6);
    const segnos = fixture.segments.map((p) => toSegment(p).segno);
    expect(segnos).toEqual(segnos.map((_, i) => (segnos[0] ?? 0) + i));
    expect(fixture.segments.every((p) => toSegment(p).tli === 1)).toBe(true);
  });

  it('has timeline-2 segments and a .partial', () => {
    expect(fixture.timeline2Segments.length).toBeGreaterThanOrEqual(1);
    expect(fixture.timeline2Segments.every((p) => toSegment(p).tli === 2)).toBe(true);
    expect(basename(fixture.partial)).toMatch(/^[0-9A-F]{24}\.partial$/);
  });

  it('gives every file mode 0644', async () => {
    const files = [...fixture.segments, ...fixture.timeline2Segments, fixture.history, fixture.partial];
    for (const file of files) expect(((await stat(file)).mode & 0o777).toString(8), file).toBe('644');
  });

  it.each([
    ['timeline-1 segment', (): string[] => fixture.segments],
    ['timeline-2 segment', (): string[] => fixture.timeline2Segments],
    ['.partial', (): string[] => [fixture.partial, fixture.archivedPartial]],
  ])('each %s is 16 MiB with a PostgreSQL 15 long page header naming it', async (_what, files) => {
    for (const file of files()) {
      expect((await stat(file)).size, file).toBe(SEGMENT_SIZE);
      const header = await readLongHeader(file);
      const { tli, segno } = toSegment(file);
      expect(header.magic, file).toBe(PG15_PAGE_MAGIC);
      expect(header.info & XLP_LONG_HEADER, file).toBe(XLP_LONG_HEADER);
      expect(header.pageaddr, file).toBe(BigInt(segno) * BigInt(SEGMENT_SIZE));
      expect(header.sysid, file).toBe(fixture.systemId);
      expect(header.segSize, file).toBe(SEGMENT_SIZE);
      expect(header.blockSize, file).toBe(8192);
      expect(header.tli, file).toBeLessThanOrEqual(tli);
    }
  });

  it('starts timeline 2 in a segment whose page 0 still carries timeline 1', async () => {
    const tlis = await Promise.all(fixture.timeline2Segments.map(async (f) => (await readLongHeader(f)).tli));
    expect(tlis[0]).toBe(1);
    expect(tlis.slice(1).every((t) => t === 2)).toBe(true);
  });

  it('has the history file of the switch from timeline 1', async () => {
    const history = await readFile(fixture.history, 'utf8');
    expect(basename(fixture.history)).toBe('00000002.history');
    expect(history.startsWith('1\t')).toBe(true);
    expect(history).toMatch(/^1\t[0-9A-F]+\/[0-9A-F]+\t/);
  });

  it('has a .partial that is a prefix of the archived segment of the same name', async () => {
    const name = basename(fixture.partial, '.partial');
    const full = fixture.segments.find((p) => basename(p) === name);
    expect(full, `${name} in the archive`).toBeDefined();
    const [partial, archived] = await Promise.all([readFile(fixture.partial), readFile(full ?? '')]);
    // pg_receivewal pads with zeros: its received prefix must match byte for byte.
    let end = partial.length;
    while (end > 0 && partial[end - 1] === 0) end--;
    expect(end).toBeGreaterThan(8192);
    expect(partial.subarray(0, end).equals(archived.subarray(0, end))).toBe(true);
  });
});
