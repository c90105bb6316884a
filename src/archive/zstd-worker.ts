/**
 * A worker thread that decodes zstd streams for zstd-worker-pool.ts, so
 * that decoding one standby's WAL and encrypting another's (or the same
 * one's previous chunk) run on two cores instead of taking turns on one.
 *
 * Each stream decodes only as far as the credit its reader gave: at most
 * that many output chunks exist before the reader has taken them.
 */
import { parentPort } from 'node:worker_threads';
import { ZstdStep } from './zstd-step.js';
import type { ToWorker } from './zstd-worker-pool.js';

interface Stream {
  readonly step: ZstdStep;
  readonly inputs: Buffer[];
  credit: number;
  ending: boolean;
}

const port = parentPort!;
const streams = new Map<number, Stream>();

port.on('message', (message: ToWorker) => {
  const { id } = message;
  if (message.type === 'open') {
    try {
      streams.set(id, { step: new ZstdStep(message.maxWindow), inputs: [], credit: 0, ending: false });
    } catch (error) {
      port.postMessage({ type: 'error', id, message: (error as Error).message });
    }
    return;
  }
  const stream = streams.get(id);
  if (!stream) return;
  if (message.type === 'cancel') {
    streams.delete(id);
    return;
  }
  if (message.type === 'input') stream.inputs.push(Buffer.from(message.bytes.buffer, message.bytes.byteOffset, message.bytes.byteLength));
  else if (message.type === 'credit') stream.credit += message.chunks;
  else if (message.type === 'end') stream.ending = true;
  run(id, stream);
});

function run(id: number, stream: Stream): void {
  try {
    while (stream.credit > 0) {
      if (stream.step.needsInput) {
        const input = stream.inputs.shift();
        if (!input) break;
        stream.step.feed(input);
        // The reader may send the next input chunk: input is bounded by the file stream's own chunk.
        port.postMessage({ type: 'took', id });
      }
      const output = stream.step.next();
      if (!output) continue;
      stream.credit--;
      // The chunk owns its memory (see ZstdStep.next): handed over, not copied.
      port.postMessage({ type: 'output', id, bytes: output }, [output.buffer as ArrayBuffer]);
    }
    if (stream.ending && stream.inputs.length === 0 && stream.step.needsInput) {
      stream.step.finish();
      streams.delete(id);
      port.postMessage({ type: 'done', id });
    }
  } catch (error) {
    streams.delete(id);
    port.postMessage({ type: 'error', id, message: (error as Error).message });
  }
}
