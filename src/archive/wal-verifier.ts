import { Transform, type TransformCallback } from 'node:stream';
import { WalhubError } from '../errors.js';
import { giveBack } from './lent-chunks.js';
import {
  findPageProblem,
  findPageZeroProblem,
  LONG_HEADER_SIZE,
  parseLongPageHeader,
  type LongPageHeader,
} from './page-header.js';
import type { WalName } from './wal-name.js';

/** Enough of a page header to check it: magic (0..2) and pageaddr (8..16). */
const PAGE_CHECK_BYTES = 16;

/**
 * Checks decoded WAL as it streams by, holding back the first bytes until
 * page 0 proves the file is the segment asked for, so a wrong file is refused
 * before anything is sent. A stream that ends short or runs long fails, which
 * the caller turns into exit 4 instead of 0.
 *
 * Later pages are checked only for archived segments: a .partial may carry
 * old bytes of a recycled file after its end of WAL.
 */
export class WalVerifier extends Transform {
  private header: LongPageHeader | undefined;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private seen = 0;
  private nextPage = 0;
  /** A page head, copied: it may straddle two chunks, and a chunk may be lent (lent-chunks.ts). */
  private readonly pageHead = Buffer.alloc(PAGE_CHECK_BYTES);
  private pageHeadBytes = 0;

  constructor(
    private readonly wal: WalName,
    private readonly checkLaterPages: boolean,
    private readonly maxSegmentSize: number,
  ) {
    super({ highWaterMark: 256 * 1024 });
  }

  /** The segment size page 0 gave, once it has been checked. */
  get segmentSize(): number | undefined {
    return this.header?.segmentSize;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!this.header) {
      // Usually the first chunk holds the whole header and goes on as it is.
      if (this.heldBytes > 0 || chunk.length < LONG_HEADER_SIZE) {
        // Copies, and each chunk given back at once: a lender with all its
        // memory held here (tiny zstd frames) would decode nothing more.
        this.held.push(Buffer.from(chunk));
        giveBack(chunk);
        this.heldBytes += chunk.length;
        if (this.heldBytes < LONG_HEADER_SIZE) return callback();
        chunk = Buffer.concat(this.held, this.heldBytes);
        this.held = [];
      }
      const header = parseLongPageHeader(chunk)!;
      const problem = findPageZeroProblem(header, this.wal, this.maxSegmentSize);
      if (problem) return callback(this.damaged(problem));
      this.header = header;
      this.nextPage = header.blockSize;
    }
    const problem = this.checkChunk(chunk);
    if (problem) return callback(this.damaged(problem));
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (!this.header) return callback(this.damaged(`it holds only ${this.heldBytes} bytes`));
    if (this.seen !== this.header.segmentSize) {
      return callback(this.damaged(`it decodes to ${this.seen} bytes, a segment is ${this.header.segmentSize}`));
    }
    callback();
  }

  private checkChunk(chunk: Buffer): string | undefined {
    const header = this.header!;
    const start = this.seen;
    this.seen += chunk.length;
    if (this.seen > header.segmentSize) return `it decodes to more than ${header.segmentSize} bytes`;
    if (!this.checkLaterPages) return undefined;
    // Walk every page boundary in this chunk; a page head may straddle chunks.
    let offset = this.pageHeadBytes > 0 ? 0 : this.nextPage - start;
    while (offset < chunk.length) {
      const take = Math.min(PAGE_CHECK_BYTES - this.pageHeadBytes, chunk.length - offset);
      chunk.copy(this.pageHead, this.pageHeadBytes, offset, offset + take);
      this.pageHeadBytes += take;
      if (this.pageHeadBytes < PAGE_CHECK_BYTES) break;
      this.pageHeadBytes = 0;
      const problem = findPageProblem(this.pageHead, header.magic, header.pageAddress + BigInt(this.nextPage));
      if (problem) return problem;
      this.nextPage += header.blockSize;
      offset = this.nextPage - start;
    }
    return undefined;
  }

  private damaged(problem: string): WalhubError {
    return new WalhubError('DAMAGED', `archived file is damaged: ${problem}`);
  }
}

/** For history and .backup files: nothing to check but that the stream decodes, and is small. */
export function needsVerifier(wal: WalName): boolean {
  return wal.kind === 'segment' || wal.kind === 'partial';
}
