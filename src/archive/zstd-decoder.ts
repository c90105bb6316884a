import { Duplex } from 'node:stream';
import binding from 'zstd-napi/binding.js';
import { formatBytes } from './limits.js';

/** Output is produced this much at a time, and only as fast as it is read. */
const OUTPUT_CHUNK = 128 * 1024;

/**
 * A zstd decoder that respects backpressure. zstd-napi's DecompressStream
 * decodes a whole input chunk at once: a segment that a WAL switch left
 * mostly empty compresses to under a kilobyte and would land in memory as
 * 16 MiB in one step. Here each output chunk waits for its reader.
 *
 * The window is what a frame makes the decoder allocate (zstd --long=31 asks
 * for 2 GiB from a file of a few KB), so a frame asking more than
 * `maxWindow` (a power of two) is refused before anything is allocated.
 */
export function createZstdDecoder(maxWindow: number): Duplex {
  return Duplex.from(async function* decode(source: AsyncIterable<Buffer>) {
    const context = new binding.DCtx();
    context.setParameter(binding.DParameter.windowLogMax, Math.log2(maxWindow));
    let inFrame = false;
    for await (const chunk of source) {
      let input = chunk;
      for (;;) {
        const output = Buffer.allocUnsafe(OUTPUT_CHUNK);
        const [remaining, produced, consumed] = decompress(context, output, input, maxWindow);
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

function decompress(context: binding.DCtx, output: Buffer, input: Buffer, maxWindow: number): ReturnType<binding.DCtx['decompressStream']> {
  try {
    return context.decompressStream(output, input);
  } catch (error) {
    if (/too much memory/i.test((error as Error).message)) {
      throw new Error(`the zstd frame needs a window larger than ${formatBytes(maxWindow)} (limits.max_decode_window)`);
    }
    throw error;
  }
}
