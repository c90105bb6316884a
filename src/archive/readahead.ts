import type { FileHandle } from 'node:fs/promises';
import { Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { isWalhubError } from '../errors.js';
import { collectGarbageSoon } from './collect-garbage.js';
import type { DecoderTable } from './compression.js';
import { isSameFile, readFileIdentity } from './file-identity.js';
import type { ArchiveLimits } from './limits.js';
import { findWalFile } from './lookup.js';
import { openWal, type OpenedWal } from './open-wal.js';
import type { PinnedWal, Reservation, WalCache } from './wal-cache.js';
import { nextSegment, type WalName } from './wal-name.js';
import { WalVerifier } from './wal-verifier.js';
import { WorkerDecoder } from './zstd-worker-pool.js';

/** What became of one segment read ahead: a fixed set, for the metrics' labels. */
export const READAHEAD_OUTCOMES = ['cached', 'missing', 'damaged', 'changed', 'no_room', 'too_large', 'error', 'aborted'] as const;
export type ReadaheadOutcome = (typeof READAHEAD_OUTCOMES)[number];

export interface ReadaheadOptions {
  readonly cache: WalCache;
  /** Segments decoded after the one served. */
  readonly depth: number;
  readonly decoders: DecoderTable;
  readonly limits: ArchiveLimits;
  /** get-wal transfers running now: in all, and those reading (decoding) from the archive. */
  readonly requestsActive: () => { readonly all: number; readonly fromArchive: number };
  /**
   * Readahead pauses while a request decodes from the archive (it would share
   * the decoders with it), or while this many requests stream from memory:
   * they then have every core. Below that, a spare core decodes (the zstd
   * worker, zlib's thread pool, the bzip2/xz/lz4 programs) while the event
   * loop sends, which is what readahead is for.
   */
  readonly busyAt: number;
  readonly log: Pick<Logger, 'debug' | 'info' | 'warn'>;
}

/** The segments after `from`, for the connection that was sent it. */
interface Chain {
  readonly server: string;
  readonly serverDir: string;
  readonly from: WalName;
  readonly segmentSize: number;
  /** Aborted when the connection closes. */
  readonly client: AbortSignal;
}

/** Every connection could queue a chain; past this the oldest is forgotten (it is only a guess at the future). */
const MAX_QUEUED_CHAINS = 64;
/** How often a paused decode looks whether the requests are done. */
const YIELD_POLL_MS = 10;
/**
 * Allocations may run past a segment's bytes (the last chunk of a decoder's
 * buffer): room reserved on top, so a whole segment never fails for it.
 */
const RESERVE_SLACK_DIVISOR = 32;

/** A whole-segment entry is served in views this large: each a write of its own to the channel. */
const CACHED_CHUNK = 512 * 1024;

class TooLarge extends Error {}

/**
 * Background decoding of the segments a standby will ask for next, into the
 * shared WalCache. One decode at a time for the whole hub, each through the
 * very stages a request uses (openWal: the escape-proof lookup, the decoder
 * with its limits, the WalVerifier), taking no chunk from the file while a
 * request is streaming. A chain stops at the first segment that is missing,
 * damaged, changed or has no room, when its connection closes (after the
 * decode under way, whose result other requests can still use), and at close().
 */
export class Readahead {
  /** Decodes finished so far, by outcome (for the metrics). */
  readonly outcomes = new Map<ReadaheadOutcome, number>(READAHEAD_OUTCOMES.map((o) => [o, 0]));
  private readonly queue: Chain[] = [];
  private current: { readonly key: string; readonly done: Promise<void> } | undefined;
  /** Requests waiting for the decode under way: it must not give way to them. */
  private waiting = 0;
  private running: Promise<void> | undefined;
  private readonly stopper = new AbortController();

  constructor(private readonly options: ReadaheadOptions) {}

  get cache(): WalCache {
    return this.options.cache;
  }

  /**
   * The cached bytes of `wal`, pinned until released, if they were decoded
   * from the very file the normal lookup finds now; else undefined, and a
   * stale entry is dropped. Waits for the decode of `wal` if it is under way.
   */
  async lookup(serverDir: string, wal: WalName, signal: AbortSignal): Promise<PinnedWal | undefined> {
    const key = toKey(serverDir, wal.name);
    const decoding = this.current;
    if (decoding?.key === key) {
      this.waiting++;
      try {
        await untilAborted(decoding.done, signal);
      } finally {
        this.waiting--;
      }
    }
    if (!this.cache.has(key)) return undefined;
    let identity;
    try {
      const found = await findWalFile(serverDir, wal, false);
      if (!found) return this.dropped(key);
      try {
        identity = await readFileIdentity(found.handle, found.relative);
      } finally {
        await found.handle.close();
      }
    } catch {
      // The normal path meets the same problem and reports it.
      return this.dropped(key);
    }
    const pinned = this.cache.acquire(key);
    if (pinned && isSameFile(pinned.wal.identity, identity)) return pinned;
    pinned?.release();
    return this.dropped(key);
  }

  /** After `served` (a whole segment of `segmentSize` bytes) went to a client: read the next ones ahead. */
  schedule(server: string, serverDir: string, served: WalName, segmentSize: number, client: AbortSignal): void {
    if (this.stopper.signal.aborted || served.kind !== 'segment' || this.options.depth === 0) return;
    // The same connection moved on: its older chain is out of date.
    const older = this.queue.findIndex((c) => c.client === client && c.serverDir === serverDir);
    if (older >= 0) this.queue.splice(older, 1);
    if (this.queue.length >= MAX_QUEUED_CHAINS) this.queue.shift();
    this.queue.push({ server, serverDir, from: served, segmentSize, client });
    this.running ??= this.drain().finally(() => (this.running = undefined));
  }

  /** Stops the decode under way and every chain; resolves once nothing runs. Cached entries are dropped. */
  async close(): Promise<void> {
    this.stopper.abort();
    this.queue.length = 0;
    await this.running;
    this.cache.clear();
  }

  private isSuperseded(chain: Chain): boolean {
    return this.queue.some((c) => c.client === chain.client && c.serverDir === chain.serverDir);
  }

  private isBusy(): boolean {
    const active = this.options.requestsActive();
    return active.fromArchive > 0 || active.all >= this.options.busyAt;
  }

  private dropped(key: string): undefined {
    this.cache.drop(key);
    return undefined;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.stopper.signal.aborted) await this.follow(this.queue.shift()!);
  }

  private async follow(chain: Chain): Promise<void> {
    let wal = chain.from;
    // This chain's segments between the one served and the one decoded: room is never made by dropping them.
    const ahead = new Set<string>();
    for (let step = 0; step < this.options.depth; step++) {
      // A client gone gets no more work done for it; one that asked for another
      // segment since has a newer chain queued, from where it is now.
      if (this.stopper.signal.aborted || chain.client.aborted || this.isSuperseded(chain)) return;
      const next = nextSegment(wal, chain.segmentSize);
      if (!next) return;
      wal = next;
      const key = toKey(chain.serverDir, next.name);
      if (!this.cache.has(key) && (await this.decode(chain, next, ahead)) !== 'cached') return;
      ahead.add(key);
    }
  }

  private async decode(chain: Chain, wal: WalName, keep: ReadonlySet<string>): Promise<ReadaheadOutcome> {
    const key = toKey(chain.serverDir, wal.name);
    const startedAt = Date.now();
    let settle!: () => void;
    this.current = { key, done: new Promise((resolve) => (settle = resolve)) };
    let result: DecodeResult;
    try {
      result = await this.decodeInto(chain, wal, key, keep);
    } finally {
      this.current = undefined;
      settle();
    }
    const { outcome, file, memory, error } = result;
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    const fields = {
      server: chain.server,
      wal: wal.name,
      outcome,
      ms: Date.now() - startedAt,
      ...(file ? { file } : {}),
      ...(memory ? { memory } : {}),
      ...(error ? { error } : {}),
    };
    // A damaged file or an archive problem needs a person, as its request would;
    // the end of the archive is where every chain stops, not news.
    if (outcome === 'damaged' || outcome === 'error') this.options.log.warn(fields, 'readahead');
    else if (outcome === 'missing') this.options.log.debug(fields, 'readahead');
    else this.options.log.info(fields, 'readahead');
    return outcome;
  }

  private async decodeInto(chain: Chain, wal: WalName, key: string, keep: ReadonlySet<string>): Promise<DecodeResult> {
    let reservation: Reservation | undefined;
    let opened: OpenedWal | undefined;
    let failedStage: number | undefined;
    const { signal } = this.stopper;
    try {
      opened = await openWal(chain.serverDir, wal, false, this.options.decoders, this.options.limits, { autoClose: false });
      const wholeDecoder = opened.decoder instanceof WorkerDecoder && opened.verifier instanceof WalVerifier ? opened.decoder : undefined;
      reservation = wholeDecoder
        ? this.cache.reserveBlock(chain.segmentSize, keep)
        : this.cache.reserve(chain.segmentSize + chain.segmentSize / RESERVE_SLACK_DIVISOR, keep);
      if (!reservation) {
        // Blocks that stuck channels held may be free by now, waiting only for the collector.
        if (this.cache.retainedBytes > 0) collectGarbageSoon();
        return { outcome: 'no_room', file: opened.relative };
      }
      const before = await readFileIdentity(opened.handle, opened.relative);
      const mustYield = () => this.waiting === 0 && this.isBusy();
      let decoded: { readonly chunks: Buffer[]; readonly length: number; readonly held: number; readonly memory?: SharedArrayBuffer };
      if (wholeDecoder) {
        const into = reservation.memory ?? chain.segmentSize;
        const whole = await decodeWhole(wholeDecoder, opened.handle, into, mustYield, signal).catch((error: unknown) => {
          // The worker's own errors are the file's: corrupt, or decoding past a segment.
          if (!isWalhubError(error)) failedStage = 2;
          throw error;
        });
        const chunks = splitIntoChunks(whole, CACHED_CHUNK);
        opened.verifier.once('error', () => (failedStage ??= 3));
        await pipeline([Readable.from(chunks), opened.verifier, new Writable({ write: (_chunk, _encoding, callback) => callback() })], { signal });
        decoded = { chunks, length: whole.length, held: whole.buffer.byteLength, memory: whole.buffer as SharedArrayBuffer };
      } else {
        const collector = new ChunkCollector(reservation.bytes);
        const gate = new YieldGate(mustYield, signal);
        const stages = [opened.file, gate, ...(opened.decoder ? [opened.decoder] : []), opened.verifier, collector];
        stages.forEach((stage, index) => stage.once('error', () => (failedStage ??= index)));
        await pipeline(stages, { signal });
        decoded = collector;
      }
      const after = await readFileIdentity(opened.handle, opened.relative);
      // Closed here, so that nothing is awaited between the check below and the
      // outcome's log line: a decode that ends after close() is 'aborted', never cached.
      await opened.handle.close();
      if (signal.aborted) return { outcome: 'aborted', file: opened.relative };
      if (!isSameFile(before, after)) return { outcome: 'changed', file: opened.relative };
      reservation.commit(key, {
        chunks: decoded.chunks,
        segmentSize: decoded.length,
        bytes: decoded.held,
        identity: before,
        compression: opened.compression,
        ...(decoded.memory ? { memory: decoded.memory } : {}),
      });
      return { outcome: 'cached', file: opened.relative, ...(wholeDecoder ? { memory: reservation.memory ? 'reused' : 'new' } : {}) };
    } catch (error) {
      const file = opened?.relative;
      if (signal.aborted) return { outcome: 'aborted', ...(file ? { file } : {}) };
      const message = error instanceof Error ? error.message.split('\n')[0]!.slice(0, 200) : String(error);
      const outcome: ReadaheadOutcome =
        error instanceof TooLarge
          ? 'too_large'
          : isWalhubError(error) && error.code === 'NOT_FOUND'
            ? 'missing'
            : (isWalhubError(error) && error.code === 'DAMAGED') || (failedStage !== undefined && failedStage > 1)
              ? 'damaged'
              : 'error';
      return { outcome, ...(file ? { file } : {}), ...(outcome === 'missing' ? {} : { error: message }) };
    } finally {
      reservation?.release();
      // A decoder never piped (no room) still holds its worker lane until destroyed.
      opened?.decoder?.destroy();
      await opened?.handle.close().catch(() => undefined);
    }
  }
}

interface DecodeResult {
  readonly outcome: ReadaheadOutcome;
  readonly file?: string;
  /** A zstd segment decoded whole: into the block of a dropped entry, or into memory new to the cache. */
  readonly memory?: 'reused' | 'new';
  readonly error?: string;
}

function toKey(serverDir: string, name: string): string {
  return `${serverDir}\0${name}`;
}

function untilAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    void promise.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/**
 * A zstd segment decoded in a worker straight into one block of memory (see
 * WorkerDecoder.decodeWholeFile): `into`, a block a dropped entry left, or
 * new memory of that many bytes. Reads the file only while `mustYield()`
 * is false; the decoder is destroyed when done or when `signal` aborts.
 */
async function decodeWhole(
  decoder: WorkerDecoder,
  handle: FileHandle,
  into: SharedArrayBuffer | number,
  mustYield: () => boolean,
  signal: AbortSignal,
): Promise<Buffer> {
  const stop = () => decoder.destroy(signal.reason as Error);
  signal.addEventListener('abort', stop, { once: true });
  try {
    // A decoder destroyed meanwhile (a worker error) stops waiting at once: its lane is let go after the wait.
    const waitTurn = () => (mustYield() ? waitWhile(() => mustYield() && !decoder.destroyed, signal) : undefined);
    return await decoder.decodeWholeFile(handle, into, waitTurn);
  } finally {
    signal.removeEventListener('abort', stop);
    decoder.destroy();
  }
}

async function waitWhile(condition: () => boolean, signal: AbortSignal): Promise<void> {
  while (condition()) await sleep(YIELD_POLL_MS, undefined, { signal });
}

/** Views of `whole`, as the send path takes them: no copy. */
function splitIntoChunks(whole: Buffer, size: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < whole.length; offset += size) chunks.push(whole.subarray(offset, offset + size));
  return chunks;
}

/** Passes the file's chunks on, but none while `mustYield()`: the decoder behind it then idles. */
class YieldGate extends Transform {
  constructor(
    private readonly mustYield: () => boolean,
    private readonly signal: AbortSignal,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!this.mustYield()) return callback(null, chunk);
    waitWhile(this.mustYield, this.signal).then(() => callback(null, chunk), callback);
  }
}

/**
 * Keeps the verified chunks, counting the memory they keep alive: a chunk
 * that is a small view of a larger allocation is copied out, so the count is
 * what the process holds. More than `limit` fails the decode.
 */
class ChunkCollector extends Writable {
  readonly chunks: Buffer[] = [];
  length = 0;
  held = 0;
  private lastBacking: ArrayBufferLike | undefined;

  constructor(private readonly limit: number) {
    super({ highWaterMark: 0 });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let kept = chunk;
    if (chunk.buffer !== this.lastBacking) {
      if (chunk.buffer.byteLength > chunk.length * 2) {
        kept = Buffer.allocUnsafeSlow(chunk.length);
        chunk.copy(kept);
        this.held += chunk.length;
        this.lastBacking = undefined;
      } else {
        this.held += chunk.buffer.byteLength;
        this.lastBacking = chunk.buffer;
      }
    }
    this.length += chunk.length;
    if (this.held > this.limit) return callback(new TooLarge(`decoded more than the ${this.limit} bytes reserved`));
    this.chunks.push(kept);
    callback();
  }
}
