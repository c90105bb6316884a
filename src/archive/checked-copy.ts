import { Transform, Writable, type Duplex, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { WalhubError } from '../errors.js';
import { formatBytes } from './limits.js';

/**
 * Stored bytes a copy may hold back before its check has let anything
 * through. An honest file proves its first page long before this: a bzip2
 * block is at most about 900 kB stored, an lz4 block 4 MiB, and gzip, xz,
 * zstd and snappy decode as they go. A hostile one (a gzip header with an
 * endless file name) is refused here instead of being held without bound.
 */
export const MAX_HELD_BEFORE_CHECK = 8 * 1024 * 1024;

/**
 * Passes the archived bytes through unchanged (get-wal --keep-compression,
 * or -z/-j when the file already is in that format), while a copy of them
 * runs through the same decoder and verifier as a decoded transfer.
 *
 * Nothing is sent before the check has let its first bytes out: the
 * verifier holds the decoded stream until page 0 proves the file is the
 * segment asked for (a history or .backup file's size cap holds it to the
 * end), so a wrong file is refused with one stderr line and no byte sent,
 * exactly as when decoding. Then the stored bytes flow while the check runs
 * alongside, and this stage ends only when the check has ended cleanly: a
 * file that turns out short, long or undecodable fails the transfer (exit 4),
 * never exit 0. The check moves at the pace of the copy, so memory stays
 * bounded: at most MAX_HELD_BEFORE_CHECK here, plus the check's own buffers.
 */
export class CheckedCopy extends Transform {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private released = false;
  private readonly checkInput: Duplex;
  private readonly checked: Promise<void>;

  constructor(check: readonly [Duplex, ...Duplex[]], private readonly maxHeld = MAX_HELD_BEFORE_CHECK) {
    super({ highWaterMark: 256 * 1024 });
    this.checkInput = check[0];
    const witness = new Writable({
      write: (_chunk: Buffer, _encoding, callback) => {
        this.release();
        callback();
      },
    });
    this.checked = pipeline([...check, witness]);
    // A check that fails fails this stage at once: the transfer stops mid-file with exit 4.
    this.checked.catch((error: unknown) => this.destroy(error as Error));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const pass = () => {
      if (this.released) return callback(null, chunk);
      this.heldBytes += chunk.length;
      if (this.heldBytes > this.maxHeld) {
        return callback(
          new WalhubError('DAMAGED', `archived file is damaged: its first ${formatBytes(this.maxHeld)} decode to nothing that can be checked`),
        );
      }
      this.held.push(chunk);
      callback();
    };
    if (this.checkInput.write(chunk)) pass();
    else this.checkInput.once('drain', pass);
  }

  override _flush(callback: TransformCallback): void {
    this.checkInput.end();
    this.checked.then(() => {
      this.release();
      callback();
    }, callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.held = [];
    if (!this.checkInput.destroyed) this.checkInput.destroy();
    callback(error);
  }

  private release(): void {
    if (this.released || this.destroyed) return;
    this.released = true;
    for (const chunk of this.held) this.push(chunk);
    this.held = [];
  }
}
