import { pipeline } from 'node:stream';
import type { DecoderTable } from './compression.js';
import type { ArchiveLimits } from './limits.js';
import { findWalFile } from './lookup.js';
import { openWal } from './open-wal.js';
import { isSegmentSize, LONG_HEADER_SIZE, parseLongPageHeader } from './page-header.js';
import { nextSegment, type WalName } from './wal-name.js';

/**
 * Barman's `get-wal --peek N`: the names of up to N files that exist,
 * starting with `wal` and following it segment by segment on its timeline,
 * stopping at the first one missing. A history, backup or .partial name is
 * listed alone, if it exists. barman-wal-restore --parallel uses it to
 * choose what to prefetch.
 */
export async function peekWalNames(
  serverDir: string,
  wal: WalName,
  count: number,
  decoders: DecoderTable,
  limits: ArchiveLimits,
): Promise<string[]> {
  if (!(await exists(serverDir, wal))) return [];
  if (wal.kind !== 'segment' || count === 1) return [wal.name];
  // The next name depends on the segment size, which only the file itself tells.
  const segmentSize = await readSegmentSize(serverDir, wal, decoders, limits);
  // A header's size is checked before any arithmetic: 0 would divide by zero.
  const usable = segmentSize !== undefined && isSegmentSize(segmentSize) && segmentSize <= limits.maxSegmentSize;
  if (!usable) return [wal.name];
  const names = [wal.name];
  for (let current = wal; names.length < count; ) {
    const next = nextSegment(current, segmentSize);
    if (!next || !(await exists(serverDir, next))) break;
    names.push(next.name);
    current = next;
  }
  return names;
}

async function exists(serverDir: string, wal: WalName): Promise<boolean> {
  const found = await findWalFile(serverDir, wal, false);
  await found?.handle.close();
  return found !== undefined;
}

/** Decodes just enough of the file for page 0's long header. */
async function readSegmentSize(serverDir: string, wal: WalName, decoders: DecoderTable, limits: ArchiveLimits): Promise<number | undefined> {
  const { file, decoder } = await openWal(serverDir, wal, false, decoders, limits);
  // The verifier would insist on a whole segment; the decoder alone is enough here.
  const decoded = decoder ?? file;
  if (decoder) pipeline(file, decoder, () => undefined);
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of decoded as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= LONG_HEADER_SIZE) break;
    }
  } catch {
    return undefined;
  } finally {
    decoder?.destroy();
    file.destroy();
  }
  return parseLongPageHeader(Buffer.concat(chunks))?.segmentSize;
}
