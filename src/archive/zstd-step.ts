import binding from 'zstd-napi/binding.js';
import { formatBytes } from './limits.js';

/** Output is produced this much at a time, and only as fast as it is read. */
export const ZSTD_OUTPUT_CHUNK = 128 * 1024;

/**
 * One zstd stream being decoded, fed input chunk by chunk and drained one
 * output chunk at a time, so whoever drives it decides how much decoded data
 * exists at once (see zstd-decoder.ts and zstd-worker.ts).
 *
 * The window is what a frame makes the decoder allocate (zstd --long=31 asks
 * for 2 GiB from a file of a few KB), so a frame asking more than
 * `maxWindow` (a power of two) is refused before anything is allocated.
 */
export class ZstdStep {
  private input: Buffer | undefined;
  private inFrame = false;

  /** `context`: one used before may be given again (its buffers are reused); it is reset here. */
  constructor(
    private readonly maxWindow: number,
    private readonly context = new binding.DCtx(),
  ) {
    context.reset(binding.ResetDirective.sessionAndParameters);
    context.setParameter(binding.DParameter.windowLogMax, Math.log2(maxWindow));
  }

  /** Takes the next input chunk; only once `needsInput`. */
  feed(chunk: Buffer): void {
    this.input = chunk;
  }

  get needsInput(): boolean {
    return this.input === undefined;
  }

  /**
   * Decodes into `output`; returns how many bytes it holds, 0 when the
   * current input is used up with nothing more to give. An input chunk is
   * done once it is consumed and zstd holds nothing more to flush.
   */
  next(output: Buffer): number {
    while (this.input) {
      const [remaining, produced, consumed] = this.decompress(output, this.input);
      this.input = this.input.subarray(consumed);
      if (this.input.length === 0 && (produced < output.length || remaining === 0)) {
        this.inFrame = remaining !== 0;
        this.input = undefined;
      }
      if (produced > 0) return produced;
    }
    return 0;
  }

  /** Throws when the stream stopped in the middle of a frame: a truncated file. */
  finish(): void {
    if (this.inFrame) throw new Error('the zstd stream ends in the middle of a frame');
  }

  private decompress(output: Buffer, input: Buffer): ReturnType<binding.DCtx['decompressStream']> {
    try {
      return this.context.decompressStream(output, input);
    } catch (error) {
      if (/too much memory/i.test((error as Error).message)) {
        throw new Error(`the zstd frame needs a window larger than ${formatBytes(this.maxWindow)} (limits.max_decode_window)`);
      }
      throw error;
    }
  }
}
