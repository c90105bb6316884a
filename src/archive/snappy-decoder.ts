import { crc32c } from '@node-rs/crc32';
import { Duplex } from 'node:stream';
import snappy from 'snappy';

/**
 * Snappy's framing format (framing_format.txt in google/snappy), as Barman
 * 3.14+ writes it through python-snappy's stream_compress. The snappy package
 * decodes each block; this walks the frames around them and checks every
 * chunk's masked CRC-32C, so a flipped bit is exit 4, never replayed.
 */
const STREAM_IDENTIFIER = Buffer.from('sNaPpY', 'latin1');
const CHUNK_HEADER = 4;
const CHECKSUM = 4;
/** The format's limit on one chunk's uncompressed data. */
const MAX_UNCOMPRESSED = 65_536;
/** Snappy's worst case for 64 KiB (32 + n + n/6), plus the checksum: no valid data chunk is longer. */
const MAX_DATA_CHUNK = CHECKSUM + 32 + MAX_UNCOMPRESSED + Math.ceil(MAX_UNCOMPRESSED / 6);

const enum ChunkType {
  Compressed = 0x00,
  Uncompressed = 0x01,
  Padding = 0xfe,
  StreamIdentifier = 0xff,
}

export function createSnappyDecoder(): Duplex {
  return Duplex.from(async function* decode(source: AsyncIterable<Buffer>) {
    let pending: Buffer = Buffer.alloc(0);
    let started = false;
    /** Bytes of a skippable chunk still to drop: up to 16 MiB, never held. */
    let skipping = 0;
    for await (const input of source) {
      pending = pending.length === 0 ? input : Buffer.concat([pending, input]);
      for (;;) {
        if (skipping > 0) {
          const dropped = Math.min(skipping, pending.length);
          skipping -= dropped;
          pending = pending.subarray(dropped);
          if (skipping > 0) break;
        }
        if (pending.length < CHUNK_HEADER) break;
        const type = pending[0]!;
        const length = pending.readUIntLE(1, 3);
        if (!started && type !== ChunkType.StreamIdentifier) throw new Error('not a snappy framed stream: no stream identifier');
        if (type >= 0x80 && type !== ChunkType.StreamIdentifier) {
          // Padding and reserved skippable chunks carry nothing for us.
          skipping = length;
          pending = pending.subarray(CHUNK_HEADER);
          continue;
        }
        if (type >= 0x02 && type <= 0x7f) throw new Error(`snappy stream has a reserved unskippable chunk (type 0x${type.toString(16)})`);
        if (length > MAX_DATA_CHUNK) throw new Error(`snappy chunk of ${length} bytes is longer than the format allows`);
        if (pending.length < CHUNK_HEADER + length) break;
        const body = pending.subarray(CHUNK_HEADER, CHUNK_HEADER + length);
        pending = pending.subarray(CHUNK_HEADER + length);
        if (type === ChunkType.StreamIdentifier) {
          if (!body.equals(STREAM_IDENTIFIER)) throw new Error('snappy stream identifier is wrong');
          started = true;
          continue;
        }
        yield toChunkData(type, body);
      }
    }
    if (!started) throw new Error('snappy stream is empty');
    if (pending.length > 0 || skipping > 0) throw new Error('the snappy stream ends in the middle of a chunk');
  });
}

function toChunkData(type: ChunkType.Compressed | ChunkType.Uncompressed, body: Buffer): Buffer {
  if (body.length < CHECKSUM) throw new Error('snappy chunk is shorter than its checksum');
  const expected = body.readUInt32LE(0);
  let data = body.subarray(CHECKSUM);
  if (type === ChunkType.Compressed) {
    // The block states its length first: refuse before decoding a block that would exceed the format's bound.
    const length = readVarint(data);
    if (length === undefined || length > MAX_UNCOMPRESSED) throw new Error('snappy block is larger than 64 KiB');
    data = snappy.uncompressSync(data, { asBuffer: true }) as Buffer;
  } else if (data.length > MAX_UNCOMPRESSED) throw new Error('snappy chunk holds more than 64 KiB');
  if (toMaskedChecksum(data) !== expected) throw new Error('snappy chunk checksum mismatch');
  return data;
}

/** The framing format's mask over CRC-32C, so that a CRC of data holding CRCs stays meaningful. */
function toMaskedChecksum(data: Buffer): number {
  const crc = crc32c(data);
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

/** A little-endian base-128 varint of at most 5 bytes, or undefined if it does not end in time. */
function readVarint(bytes: Buffer): number | undefined {
  let value = 0;
  for (let i = 0; i < 5 && i < bytes.length; i++) {
    value += (bytes[i]! & 0x7f) * 2 ** (7 * i);
    if ((bytes[i]! & 0x80) === 0) return value;
  }
  return undefined;
}
