import { Duplex } from 'node:stream';
import { ZSTD_OUTPUT_CHUNK, ZstdStep } from './zstd-step.js';

/**
 * A zstd decoder on this thread that respects backpressure. zstd-napi's
 * DecompressStream decodes a whole input chunk at once: a segment that a WAL
 * switch left mostly empty compresses to under a kilobyte and would land in
 * memory as 16 MiB in one step. Here each output chunk waits for its reader.
 * `walhub serve` decodes in worker threads instead (zstd-worker-pool.ts).
 */
export function createZstdDecoder(maxWindow: number): Duplex {
  return Duplex.from(async function* decode(source: AsyncIterable<Buffer>) {
    const step = new ZstdStep(maxWindow);
    for await (const chunk of source) {
      step.feed(chunk);
      for (;;) {
        const output = Buffer.allocUnsafe(ZSTD_OUTPUT_CHUNK);
        const produced = step.next(output);
        if (produced === 0) break;
        yield output.subarray(0, produced);
      }
    }
    step.finish();
  });
}
