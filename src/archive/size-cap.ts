import { Transform, type TransformCallback } from 'node:stream';
import { WalhubError } from '../errors.js';
import { formatBytes } from './limits.js';

/**
 * For files with no page headers to say how long they are (history,
 * .backup): holds the decoded bytes back until the end and fails the stream
 * if they pass `maxBytes`, so a small file that decodes to gigabytes is
 * refused before its first byte is sent, with a line saying why, instead
 * of being served whole with exit 0. Holding back costs at most `maxBytes`
 * per transfer.
 */
export class SizeCap extends Transform {
  private held: Buffer[] = [];
  private heldBytes = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly what: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.heldBytes += chunk.length;
    if (this.heldBytes > this.maxBytes) {
      this.held = [];
      return callback(new WalhubError('DAMAGED', `archived file is damaged: it decodes to more than ${formatBytes(this.maxBytes)}, larger than any ${this.what}`));
    }
    this.held.push(chunk);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    callback(null, Buffer.concat(this.held, this.heldBytes));
    this.held = [];
  }
}
