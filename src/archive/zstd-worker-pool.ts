import type { FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { Duplex } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { WalhubError } from '../errors.js';
import { lend } from './lent-chunks.js';
import { toArchiveReadError } from './lookup.js';
import { ZSTD_OUTPUT_CHUNK } from './zstd-step.js';

/**
 * Messages to a zstd worker (zstd-worker.ts). A lane is shared memory for one
 * stream at a time (its input and output slots), handed to the worker once
 * and reused; slots are indices into the stream's lane.
 */
export type ToWorker =
  | {
      readonly type: 'lane';
      readonly lane: number;
      readonly input: SharedArrayBuffer;
      readonly inputSlots: number;
      readonly output: SharedArrayBuffer;
      readonly outputSlots: number;
    }
  | { readonly type: 'drop-lane'; readonly lane: number }
  | { readonly type: 'open'; readonly id: number; readonly lane: number; readonly maxWindow: number }
  | { readonly type: 'input'; readonly id: number; readonly slot: number; readonly length: number }
  | { readonly type: 'credit'; readonly id: number; readonly slots: readonly number[] }
  /** Decode into `memory`, or new memory of `capacity` bytes that the worker allocates; handed over at the end ('decoded'). */
  | { readonly type: 'whole'; readonly id: number; readonly memory?: SharedArrayBuffer; readonly capacity: number }
  | { readonly type: 'end' | 'cancel'; readonly id: number };

export type FromWorker =
  | { readonly type: 'took'; readonly id: number; readonly slot: number }
  | { readonly type: 'output'; readonly id: number; readonly slot: number; readonly length: number }
  | { readonly type: 'done'; readonly id: number }
  | { readonly type: 'decoded'; readonly id: number; readonly memory: SharedArrayBuffer; readonly length: number }
  /** `hub`: the hub's own failure (no memory), not the file's. */
  | { readonly type: 'error'; readonly id: number; readonly message: string; readonly hub?: true };

/** Compressed input a stream may have handed over: two of the file stream's chunks, one decoding while the next is read. */
const INPUT_SLOTS = 2;
const INPUT_SLOT_BYTES = 128 * 1024;
/**
 * Decoded chunks a stream may have in flight: 768 KiB. Slots larger than the
 * in-process decoder's chunks, as each costs two messages between threads
 * and a pass through the send path (the packets of one chunk go down in one writev).
 */
const OUTPUT_SLOTS = 3;
const OUTPUT_SLOT_BYTES = 2 * ZSTD_OUTPUT_CHUNK;
/**
 * Of those, a transfer that borrows its chunks (readFileDirectly) uses two:
 * one on its way to the client while the worker decodes into the other.
 * The third, never handed to the worker, is never touched, so 16 transfers
 * at once hold 4 MiB less (peak RSS 146-149 against 152-155 MiB), for no
 * measured loss (16 cold fetches one after another: 1150 against 1116 ms,
 * medians of 10 rounds side by side, within their noise).
 */
const LENT_SLOTS = 2;
/** Slots given back together, so that a steady stream costs one credit message per two chunks. */
const GIVE_BACK_AT = 2;
/**
 * Lanes kept for reuse once their streams ended. Memory shared with the
 * worker, and a zstd context's buffers, are freed only once the worker's
 * collector runs, which is seldom (it allocates almost nothing): a new lane
 * and context per stream grew the hub by about 40 MiB per 16 streams, batch
 * after batch, until it did. Reused, they cost their peak count at most
 * (about 3 MiB each, mostly the zstd window), and those past this many are let go.
 */
const SPARE_LANES = 4;

interface Lane {
  readonly id: number;
  readonly input: SharedArrayBuffer;
  readonly output: SharedArrayBuffer;
}

/**
 * zstd decoding in worker threads: decoding (about 50 ms of CPU per 16 MiB
 * segment) then runs beside the event loop, which encrypts and sends. One
 * worker per core but one (the event loop keeps that one), at most 4.
 */
export class ZstdWorkerPool {
  private readonly workers: PoolWorker[] = [];
  private closed = false;

  constructor(
    private readonly script: URL = new URL('./zstd-worker.js', import.meta.url),
    size = Math.min(4, Math.max(1, availableParallelism() - 1)),
  ) {
    for (let i = 0; i < size; i++) this.workers.push(new PoolWorker(script));
  }

  /** A decoder stream on the least busy worker. */
  createDecoder(maxWindow: number): Duplex {
    if (this.closed) throw new WalhubError('UNAVAILABLE', 'walhub is stopping');
    // A worker that died (its streams failed with exit 5) is replaced for the next request.
    this.workers.forEach((worker, index) => {
      if (worker.dead) this.workers[index] = new PoolWorker(this.script);
    });
    return this.workers.reduce((a, b) => (b.streams.size < a.streams.size ? b : a)).open(maxWindow);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

class PoolWorker {
  readonly streams = new Map<number, WorkerDecoder>();
  dead = false;
  private readonly worker: Worker;
  private nextId = 1;
  private nextLane = 1;
  private readonly spareLanes: Lane[] = [];

  constructor(script: URL) {
    // The worker allocates almost nothing on its heap (decoding goes through shared
    // slots and zstd's own memory): a small young generation keeps its RSS small.
    this.worker = new Worker(script, { resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 32 } });
    this.worker.on('message', (message: FromWorker) => this.streams.get(message.id)?.receive(message));
    const fail = (why: string) => {
      this.dead = true;
      for (const stream of this.streams.values()) stream.destroy(new WalhubError('UNAVAILABLE', `zstd decoding failed on the hub (${why})`));
      this.streams.clear();
    };
    this.worker.on('error', (error) => fail(error.message));
    this.worker.on('exit', (code) => fail(`worker exited with ${code}`));
    // Idle workers must not keep a stopping process alive; after the listeners,
    // since adding a 'message' listener references the worker's port again.
    this.worker.unref();
  }

  open(maxWindow: number): WorkerDecoder {
    const id = this.nextId++;
    const lane = this.spareLanes.pop() ?? this.createLane();
    const post = (message: ToWorker) => this.worker.postMessage(message);
    // A stream's lane may go to the next one as soon as the worker has its end or
    // cancel (messages arrive in order, and the worker never touches the lane of a
    // stream it has ended) and nothing of this side still uses its memory; when
    // something may (a lent chunk never given back), the lane is retired instead.
    const release = (reusable: boolean) => {
      if (!this.streams.delete(id)) return;
      if (reusable && this.spareLanes.length < SPARE_LANES) this.spareLanes.push(lane);
      else post({ type: 'drop-lane', lane: lane.id });
    };
    const stream = new WorkerDecoder(post, id, lane, release, maxWindow);
    this.streams.set(id, stream);
    return stream;
  }

  private createLane(): Lane {
    const lane: Lane = {
      id: this.nextLane++,
      input: new SharedArrayBuffer(INPUT_SLOTS * INPUT_SLOT_BYTES),
      output: new SharedArrayBuffer(OUTPUT_SLOTS * OUTPUT_SLOT_BYTES),
    };
    const { input, output } = lane;
    this.worker.postMessage({ type: 'lane', lane: lane.id, input, inputSlots: INPUT_SLOTS, output, outputSlots: OUTPUT_SLOTS } satisfies ToWorker);
    return lane;
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

/**
 * The stream side of one decode in a worker: compressed bytes in, decoded
 * chunks out, through a few slots of shared memory, with backpressure both
 * ways.
 *
 * As a Duplex (readahead, peek, --keep-compression's check), compressed
 * bytes are written to it, and each decoded chunk is copied out of its slot
 * into memory of this thread (which its collector sees, and the cache may
 * keep); the slot goes back to the worker once the reader wants more.
 *
 * A transfer's decode (readFileDirectly) allocates nothing per chunk: it
 * reads the file straight into the input slots, and lends each decoded slot
 * as the chunk itself (lent-chunks.ts), which goes back to the worker once
 * the transfer gives it back. Copies and per-read buffers were most of a
 * busy hub's memory: 16 streams at once left tens of MiB of them for the
 * collector at any moment.
 */
export class WorkerDecoder extends Duplex {
  private readonly input: SharedArrayBuffer;
  private readonly output: SharedArrayBuffer;
  private readonly freeInputs = Array.from({ length: INPUT_SLOTS }, (_, i) => i);
  /** Output slots this side holds, to give back when the reader wants more. */
  private readonly returnable = Array.from({ length: OUTPUT_SLOTS }, (_, i) => i);
  private waitingForInputSlot: (() => void) | undefined;
  private onDone: ((error?: Error) => void) | undefined;
  /** Set by readFileDirectly and decodeWholeFile: the file read into the input slots, and where the next read starts. */
  private source:
    | {
        readonly handle: FileHandle;
        /** readFileDirectly's file is closed with this stream; decodeWholeFile's caller closes its own. */
        readonly closesHandle: boolean;
        readonly waitTurn: (() => Promise<void> | undefined) | undefined;
        position: number;
        reading: boolean;
        ended: boolean;
        closed: boolean;
      }
    | undefined;
  /** decodeWholeFile's promise, settled by the worker's 'decoded' or by this stream's destruction. */
  private whole: { readonly resolve: (decoded: Buffer) => void; readonly reject: (error: Error) => void } | undefined;
  /** Lent slots not yet given back. */
  private lentOut = 0;
  /** Output slots the worker has been given and not yet filled: with none, it waits for one. */
  private withWorker = 0;
  /** The worker will not touch this stream's lane again: it sent done or an error, or was told to cancel. */
  private workerDone = false;

  constructor(
    private readonly post: (message: ToWorker) => void,
    private readonly id: number,
    lane: Lane,
    private readonly release: (reusable: boolean) => void,
    maxWindow: number,
  ) {
    // Not destroyed by its own end: a transfer destroys it once every stage is
    // done (get-wal.ts), which is when a lent chunk not given back is known lost.
    super({ readableHighWaterMark: OUTPUT_SLOTS * OUTPUT_SLOT_BYTES, writableHighWaterMark: 0, autoDestroy: false });
    this.input = lane.input;
    this.output = lane.output;
    post({ type: 'open', id, lane: lane.id, maxWindow });
  }

  /**
   * Decodes `handle` itself instead of what is written to it, lending its
   * chunks; only before anything is written, for a reader that gives every
   * chunk back (lent-chunks.ts) and destroys this stream when done. Read
   * errors come out as WalhubErrors (toArchiveReadError); the file is closed
   * when this stream is destroyed.
   */
  readFileDirectly(handle: FileHandle): this {
    this.source = { handle, closesHandle: true, waitTurn: undefined, position: 0, reading: false, ended: false, closed: false };
    this.returnable.splice(LENT_SLOTS);
    // Reading starts once the stream is read, inside the transfer that will destroy it.
    return this;
  }

  /**
   * Decodes all of `handle` into one block of shared memory and resolves it
   * (readahead's cache entry): `into`, a block given to be written over, or
   * a number of bytes for the worker to allocate. Decoding past the block
   * is an error. Nothing is copied, and the event loop touches none of that
   * memory first: for new memory, the kernel's work of handing it out is
   * the worker's (on a fresh hub, about 1 s per 256 MiB on the bench
   * machine). Before each read of the file, a promise from `waitTurn` is
   * awaited. Only before anything is written or read; destroy this stream
   * when done (which rejects a decode under way, after which the worker may
   * still write `into` until it reads its cancel).
   */
  decodeWholeFile(handle: FileHandle, into: SharedArrayBuffer | number, waitTurn?: () => Promise<void> | undefined): Promise<Buffer> {
    this.source = { handle, closesHandle: false, waitTurn, position: 0, reading: false, ended: false, closed: false };
    this.returnable.splice(0);
    const decoded = new Promise<Buffer>((resolve, reject) => (this.whole = { resolve, reject }));
    // Errors reach the caller through the promise; as a stream nobody reads this one.
    this.on('error', () => undefined);
    this.post(
      typeof into === 'number'
        ? { type: 'whole', id: this.id, capacity: into }
        : { type: 'whole', id: this.id, memory: into, capacity: into.byteLength },
    );
    this.readAhead();
    return decoded;
  }

  receive(message: FromWorker): void {
    if (message.type === 'output') {
      this.withWorker--;
      // Decoded before the worker read its cancel: nobody will read it, so it is not lent (it would never come back).
      if (this.source && (this.destroyed || this.workerDone)) {
        this.returnable.push(message.slot);
        return;
      }
      if (this.source) {
        this.lentOut++;
        const slot = message.slot;
        const view = Buffer.from(this.output, slot * OUTPUT_SLOT_BYTES, message.length);
        this.push(lend(view, () => this.slotGivenBack(slot)));
        return;
      }
      // Copied with set(), in bulk: Buffer.from() on a view of shared memory
      // goes through a slice and a per-element copy, 24 ms per 16 MiB against 2.
      const chunk = Buffer.allocUnsafe(message.length);
      chunk.set(new Uint8Array(this.output, message.slot * OUTPUT_SLOT_BYTES, message.length));
      this.returnable.push(message.slot);
      if (this.push(chunk) && this.returnable.length >= GIVE_BACK_AT) this.giveBack();
    } else if (message.type === 'took') {
      this.freeInputs.push(message.slot);
      if (this.source) return this.readAhead();
      const waiting = this.waitingForInputSlot;
      this.waitingForInputSlot = undefined;
      waiting?.();
    } else if (message.type === 'decoded') {
      this.workerDone = true;
      this.releaseWhenUnused();
      this.whole?.resolve(Buffer.from(message.memory, 0, message.length));
      this.whole = undefined;
    } else if (message.type === 'done') {
      this.workerDone = true;
      this.releaseWhenUnused();
      this.push(null);
      this.onDone?.();
    } else {
      this.workerDone = true;
      this.releaseWhenUnused();
      this.destroy(message.hub ? new WalhubError('UNAVAILABLE', message.message) : new Error(message.message));
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error) => void): void {
    const slot = this.freeInputs.shift();
    if (slot === undefined) {
      this.waitingForInputSlot = () => this._write(chunk, _encoding, callback);
      return;
    }
    const part = chunk.subarray(0, INPUT_SLOT_BYTES);
    part.copy(new Uint8Array(this.input, slot * INPUT_SLOT_BYTES, INPUT_SLOT_BYTES));
    this.post({ type: 'input', id: this.id, slot, length: part.length });
    if (chunk.length > part.length) this._write(chunk.subarray(part.length), _encoding, callback);
    else callback();
  }

  override _final(callback: (error?: Error) => void): void {
    this.onDone = callback;
    this.post({ type: 'end', id: this.id });
  }

  override _read(): void {
    this.giveBack();
    if (this.source) this.readAhead();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.whole?.reject(error ?? new Error('the decode was stopped'));
    this.whole = undefined;
    if (!this.workerDone) this.post({ type: 'cancel', id: this.id });
    this.workerDone = true;
    // Destroyed with chunks still lent: whoever holds them may still read them.
    if (this.lentOut > 0) this.release(false);
    else this.releaseWhenUnused();
    const source = this.source;
    if (!source?.closesHandle || source.closed) return callback(error);
    source.closed = true;
    // FileHandle.close waits for a read still under way.
    source.handle.close().then(
      () => callback(error),
      () => callback(error),
    );
  }

  /** Reads the file into every free input slot, one read at a time, until its end. */
  private readAhead(): void {
    const source = this.source!;
    if (source.reading || source.ended || this.destroyed || this.freeInputs.length === 0) return;
    const turn = source.waitTurn?.();
    if (turn) {
      // Counted as a read: the lane is not let go while it is pending.
      source.reading = true;
      turn.then(
        () => {
          source.reading = false;
          if (this.destroyed) return this.releaseWhenUnused();
          this.readAhead();
        },
        (error: unknown) => {
          source.reading = false;
          if (this.destroyed) return this.releaseWhenUnused();
          this.destroy(error instanceof Error ? error : new Error(String(error)));
        },
      );
      return;
    }
    const slot = this.freeInputs.shift()!;
    source.reading = true;
    const into = Buffer.from(this.input, slot * INPUT_SLOT_BYTES, INPUT_SLOT_BYTES);
    source.handle.read(into, 0, INPUT_SLOT_BYTES, source.position).then(
      ({ bytesRead }) => {
        source.reading = false;
        if (this.destroyed) return this.releaseWhenUnused();
        if (bytesRead === 0) {
          source.ended = true;
          this.post({ type: 'end', id: this.id });
          return;
        }
        source.position += bytesRead;
        this.post({ type: 'input', id: this.id, slot, length: bytesRead });
        this.readAhead();
      },
      (error: unknown) => {
        source.reading = false;
        if (this.destroyed) return this.releaseWhenUnused();
        this.destroy(toArchiveReadError(error));
      },
    );
  }

  private slotGivenBack(slot: number): void {
    this.lentOut--;
    this.returnable.push(slot);
    if (this.workerDone) return this.releaseWhenUnused();
    if (this.returnable.length >= GIVE_BACK_AT || this.withWorker === 0) this.giveBack();
  }

  /** The lane goes back for reuse once neither the worker, nor a read, nor a lent chunk still uses it. */
  private releaseWhenUnused(): void {
    if (this.workerDone && this.lentOut === 0 && !this.source?.reading) this.release(true);
  }

  private giveBack(): void {
    if (this.returnable.length === 0 || this.workerDone) return;
    this.withWorker += this.returnable.length;
    this.post({ type: 'credit', id: this.id, slots: this.returnable.splice(0) });
  }
}
