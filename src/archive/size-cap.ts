import { Transform, type TransformCallback } from 'node:stream';
import { WalhubError } from '../errors.js';
import { formatBytes } from './limits.js';

/**
 * Passes at most `maxBytes` through and fails the stream beyond that: for
 * files with no page headers to say how long they are (history, .backup),
 * so a small file that decodes to gigabytes is refused as damaged instead of
 * being served whole with exit 0.
 */
export class SizeCap extends Transform {
  private seen = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly what: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.maxBytes) {
      return callback(new WalhubError('DAMAGED', `archived file is damaged: it decodes to more than ${formatBytes(this.maxBytes)}, larger than any ${this.what}`));
    }
    callback(null, chunk);
  }
}
