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
import { parentPort } from 'node:worker_threads';
import binding from 'zstd-napi/binding.js';
import { fullCollection } from './collect-garbage.js';
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
  /** A whole-file decode ('whole'): the memory it fills, and how much of it so far. */
  whole?: { readonly memory: SharedArrayBuffer; readonly into: Buffer; written: number };
}

const port = parentPort!;
/**
 * This thread's collector, run when lanes are let go: their shared memory
 * and zstd contexts (2-3 MiB each) are freed only by a collection, and a
 * thread that allocates almost nothing would not run one until V8's 64 MiB
 * of outside memory had piled up. Collecting this small heap takes about a
 * millisecond, on this thread.
 */
const collect = fullCollection();
let collectQueued = false;
/**
 * Collects once the messages queued now are handled (a burst of ended
 * streams drops its lanes together): after lanes are let go, and after each
 * whole-file decode, whose segment-sized memory the cache frees only once
 * this thread, too, has dropped its reference to it.
 */
function collectSoon(): void {
  if (collectQueued) return;
  collectQueued = true;
  setImmediate(() => {
    collectQueued = false;
    collect();
  });
}
/** Where a whole-file decode's output past its memory goes: one byte is enough to know there is more. */
const overflow = Buffer.alloc(1);
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
    collectSoon();
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
    if (stream.whole) collectSoon();
    return;
  }
  if (message.type === 'whole') {
    // New memory is allocated here and first written here: the kernel's work of
    // handing out a segment of it is done on this thread, not on the event loop.
    try {
      const memory = message.memory ?? new SharedArrayBuffer(message.capacity);
      stream.whole = { memory, into: Buffer.from(memory), written: 0 };
    } catch (error) {
      // Out of memory: that readahead fails, as the hub's failure, not the file's; the thread and its other streams go on.
      streams.delete(id);
      post({ type: 'error', id, message: `no memory for a segment read ahead (${(error as Error).message})`, hub: true });
    }
    return;
  }
  if (message.type === 'input') stream.inputs.push({ slot: message.slot, length: message.length });
  else if (message.type === 'credit') stream.free.push(...message.slots);
  else if (message.type === 'end') stream.ending = true;
  if (stream.whole) runWhole(id, stream, stream.whole);
  else run(id, stream);
});

function slots(memory: SharedArrayBuffer, count: number): Buffer[] {
  const size = memory.byteLength / count;
  return Array.from({ length: count }, (_, i) => Buffer.from(memory, i * size, size));
}

/** Gives the decoder the next input slot; false when none has arrived yet. */
function feedNext(id: number, stream: Stream): boolean {
  // The slot decoded last is used up: the reader may fill it again.
  if (stream.fed) post({ type: 'took', id, slot: stream.inputs.shift()!.slot });
  stream.fed = false;
  const input = stream.inputs[0];
  if (!input) return false;
  stream.step.feed(stream.inputSlots[input.slot]!.subarray(0, input.length));
  stream.fed = true;
  return true;
}

function run(id: number, stream: Stream): void {
  try {
    while (stream.free.length > 0) {
      if (stream.step.needsInput && !feedNext(id, stream)) break;
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

/** Decodes every input given into the stream's own memory, which it hands over once the file has ended. */
function runWhole(id: number, stream: Stream, whole: NonNullable<Stream['whole']>): void {
  try {
    for (;;) {
      if (stream.step.needsInput && !feedNext(id, stream)) break;
      if (whole.written === whole.into.length) {
        if (stream.step.next(overflow) > 0) throw new Error(`the file decodes to more than ${whole.into.length} bytes`);
        continue;
      }
      whole.written += stream.step.next(whole.into.subarray(whole.written));
    }
    if (stream.ending && stream.inputs.length === 0) {
      stream.step.finish();
      streams.delete(id);
      post({ type: 'decoded', id, memory: whole.memory, length: whole.written });
      collectSoon();
    }
  } catch (error) {
    streams.delete(id);
    post({ type: 'error', id, message: (error as Error).message });
    collectSoon();
  }
}
