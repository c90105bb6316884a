/**
 * A worker thread that decodes zstd streams for zstd-worker-pool.ts, so
 * that decoding one standby's WAL and encrypting another's (or the same
 * one's previous chunk) run on two cores instead of taking turns on one.
 *
 * Input and output go through memory shared with the event loop, a few
 * slots per stream in a lane that the next stream reuses, with its zstd
 * context (see ZstdWorkerPool): this thread allocates nothing per chunk or
 * per stream, so it leaves no garbage for its own collector (which seldom
 * runs here) to pile up, and decodes only into slots the reader has given back.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort } from 'node:worker_threads';
import binding from 'zstd-napi/binding.js';
import { ZstdStep } from './zstd-step.js';
import type { FromWorker, ToWorker } from './zstd-worker-pool.js';

interface Stream {
  readonly step: ZstdStep;
  readonly inputSlots: readonly Buffer[];
  readonly outputSlots: readonly Buffer[];
  /** Input slots filled, in order, with their lengths; the first is being decoded once fed. */
  readonly inputs: { slot: number; length: number }[];
  /** Output slots the reader has given back. */
  readonly free: number[];
  fed: boolean;
  ending: boolean;
}

const port = parentPort!;
/**
 * This thread's collector, run when lanes are let go: their shared memory
 * and zstd contexts (2-3 MiB each) are freed only by a collection, and a
 * thread that allocates almost nothing would not run one until V8's 64 MiB
 * of outside memory had piled up. Collecting this small heap takes about a
 * millisecond, on this thread.
 */
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;
let collectQueued = false;
const streams = new Map<number, Stream>();
/** Each lane keeps its zstd context too: reused, its window buffers are allocated once, not once per stream. */
const lanes = new Map<number, { readonly input: readonly Buffer[]; readonly output: readonly Buffer[]; readonly context: binding.DCtx }>();
const post = (message: FromWorker) => port.postMessage(message);

port.on('message', (message: ToWorker) => {
  const id = 'id' in message ? message.id : 0;
  if (message.type === 'lane') {
    lanes.set(message.lane, {
      input: slots(message.input, message.inputSlots),
      output: slots(message.output, message.outputSlots),
      context: new binding.DCtx(),
    });
    return;
  }
  if (message.type === 'drop-lane') {
    lanes.delete(message.lane);
    if (!collectQueued) {
      collectQueued = true;
      // After the other messages queued now: a burst of ended streams drops its lanes together.
      setImmediate(() => {
        collectQueued = false;
        collect();
      });
    }
    return;
  }
  if (message.type === 'open') {
    try {
      const lane = lanes.get(message.lane)!;
      streams.set(id, {
        step: new ZstdStep(message.maxWindow, lane.context),
        inputSlots: lane.input,
        outputSlots: lane.output,
        inputs: [],
        free: [],
        fed: false,
        ending: false,
      });
    } catch (error) {
      post({ type: 'error', id, message: (error as Error).message });
    }
    return;
  }
  const stream = streams.get(id);
  if (!stream) return;
  if (message.type === 'cancel') {
    streams.delete(id);
    return;
  }
  if (message.type === 'input') stream.inputs.push({ slot: message.slot, length: message.length });
  else if (message.type === 'credit') stream.free.push(...message.slots);
  else if (message.type === 'end') stream.ending = true;
  run(id, stream);
});

function slots(memory: SharedArrayBuffer, count: number): Buffer[] {
  const size = memory.byteLength / count;
  return Array.from({ length: count }, (_, i) => Buffer.from(memory, i * size, size));
}

function run(id: number, stream: Stream): void {
  try {
    while (stream.free.length > 0) {
      if (stream.step.needsInput) {
        // The slot decoded last is used up: the reader may fill it again.
        if (stream.fed) post({ type: 'took', id, slot: stream.inputs.shift()!.slot });
        stream.fed = false;
        const input = stream.inputs[0];
        if (!input) break;
        stream.step.feed(stream.inputSlots[input.slot]!.subarray(0, input.length));
        stream.fed = true;
      }
      const slot = stream.free[0]!;
      const produced = stream.step.next(stream.outputSlots[slot]!);
      if (produced === 0) continue;
      stream.free.shift();
      post({ type: 'output', id, slot, length: produced });
    }
    if (stream.ending && stream.step.needsInput && stream.inputs.length === (stream.fed ? 1 : 0)) {
      stream.step.finish();
      streams.delete(id);
      post({ type: 'done', id });
    }
  } catch (error) {
    streams.delete(id);
    post({ type: 'error', id, message: (error as Error).message });
  }
}
