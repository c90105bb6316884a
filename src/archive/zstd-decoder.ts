import { Duplex } from 'node:stream';
import binding from 'zstd-napi/binding.js';

/** Output is produced this much at a time, and only as fast as it is read. */
const OUTPUT_CHUNK = 128 * 1024;
/** 2^27 = 128 MiB, zstd's largest window without --long; a frame asking for more is refused. */
const WINDOW_LOG_MAX = 27;

/**
 * A zstd decoder that respects backpressure. zstd-napi's DecompressStream
 * decodes a whole input chunk at once: a segment that a WAL switch left
 * mostly empty compresses to under a kilobyte and would land in memory as
 * 16 MiB in one step. Here each output chunk waits for its reader.
 */
export function createZstdDecoder(): Duplex {
  return Duplex.from(async function* decode(source: AsyncIterable<Buffer>) {
    const context = new binding.DCtx();
    context.setParameter(binding.DParameter.windowLogMax, WINDOW_LOG_MAX);
    let inFrame = false;
    for await (const chunk of source) {
      let input = chunk;
      for (;;) {
        const output = Buffer.allocUnsafe(OUTPUT_CHUNK);
        const [remaining, produced, consumed] = context.decompressStream(output, input);
        if (produced > 0) yield output.subarray(0, produced);
        input = input.subarray(consumed);
        // Done with this chunk once it is consumed and zstd holds nothing more to flush.
        if (input.length === 0 && (produced < output.length || remaining === 0)) {
          inFrame = remaining !== 0;
          break;
        }
      }
    }
    if (inFrame) throw new Error('the zstd stream ends in the middle of a frame');
  });
}
