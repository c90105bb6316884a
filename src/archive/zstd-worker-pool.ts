import { availableParallelism } from 'node:os';
import { Duplex } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { WalhubError } from '../errors.js';
import { ZSTD_OUTPUT_CHUNK } from './zstd-step.js';

/** Messages to a zstd worker (zstd-worker.ts). */
export type ToWorker =
  | { readonly type: 'open'; readonly id: number; readonly maxWindow: number }
  | { readonly type: 'input'; readonly id: number; readonly bytes: Uint8Array }
  | { readonly type: 'credit'; readonly id: number; readonly chunks: number }
  | { readonly type: 'end'; readonly id: number }
  | { readonly type: 'cancel'; readonly id: number };

type FromWorker =
  | { readonly type: 'took' | 'done'; readonly id: number }
  | { readonly type: 'output'; readonly id: number; readonly bytes: Uint8Array }
  | { readonly type: 'error'; readonly id: number; readonly message: string };

/**
 * Decoded chunks a stream may have in flight or waiting for its reader:
 * 512 KiB, about what the file and verifier stages hold together.
 */
const CREDIT_CHUNKS = 4;

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

  constructor(script: URL) {
    this.worker = new Worker(script);
    // Idle workers must not keep a stopping process alive.
    this.worker.unref();
    this.worker.on('message', (message: FromWorker) => this.streams.get(message.id)?.receive(message));
    const fail = (why: string) => {
      this.dead = true;
      for (const stream of this.streams.values()) stream.destroy(new WalhubError('UNAVAILABLE', `zstd decoding failed on the hub (${why})`));
      this.streams.clear();
    };
    this.worker.on('error', (error) => fail(error.message));
    this.worker.on('exit', (code) => fail(`worker exited with ${code}`));
  }

  open(maxWindow: number): WorkerDecoder {
    const id = this.nextId++;
    const stream = new WorkerDecoder((message) => this.worker.postMessage(message), id, () => this.streams.delete(id));
    this.streams.set(id, stream);
    this.worker.postMessage({ type: 'open', id, maxWindow } satisfies ToWorker);
    return stream;
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

/** The stream side of one decode in a worker: compressed bytes in, decoded chunks out, with backpressure both ways. */
class WorkerDecoder extends Duplex {
  private outstanding = 0;
  private onTook: ((error?: Error) => void) | undefined;
  private onDone: ((error?: Error) => void) | undefined;

  constructor(
    private readonly post: (message: ToWorker) => void,
    private readonly id: number,
    private readonly release: () => void,
  ) {
    super({ readableHighWaterMark: CREDIT_CHUNKS * ZSTD_OUTPUT_CHUNK, writableHighWaterMark: 0 });
  }

  receive(message: FromWorker): void {
    if (message.type === 'output') {
      this.outstanding--;
      if (this.push(Buffer.from(message.bytes.buffer, message.bytes.byteOffset, message.bytes.byteLength))) this.grant();
    } else if (message.type === 'took') {
      const callback = this.onTook;
      this.onTook = undefined;
      callback?.();
    } else if (message.type === 'done') {
      this.release();
      this.push(null);
      this.onDone?.();
    } else if (message.type === 'error') {
      this.release();
      this.destroy(new Error(message.message));
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error) => void): void {
    this.onTook = callback;
    this.post({ type: 'input', id: this.id, bytes: chunk });
  }

  override _final(callback: (error?: Error) => void): void {
    this.onDone = callback;
    this.post({ type: 'end', id: this.id });
  }

  override _read(): void {
    this.grant();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.release();
    this.post({ type: 'cancel', id: this.id });
    callback(error);
  }

  private grant(): void {
    const chunks = CREDIT_CHUNKS - this.outstanding;
    if (chunks <= 0) return;
    this.outstanding += chunks;
    this.post({ type: 'credit', id: this.id, chunks });
  }
}
