import { Writable } from 'node:stream';
import { giveBack } from '../archive/lent-chunks.js';

/**
 * The connection under a channel, as the send path needs it. ssh2 writes
 * every packet to the socket at once, whatever the socket holds: a client
 * that grants a 4 GiB window and stops reading TCP would otherwise get whole
 * files queued in walhub's memory. Implemented by ssh/connection.ts.
 */
export interface Outlet {
  /** Resolves once the connection has room: few bytes queued in its socket and no key re-exchange under way. */
  waitForRoom(signal: AbortSignal): Promise<void>;
  /** Resolves when the socket next makes progress, or after a short while. */
  waitForProgress(signal: AbortSignal): Promise<void>;
  /** Bytes handed to the socket so far. */
  written(): number;
  /** Bytes the kernel has taken from the socket so far. */
  taken(): number;
  /** Runs `send` with the socket corked: the packets it writes go to the kernel in one writev, not one write each. */
  batched<T>(send: () => T): T;
}

export interface SinkProgress {
  /** Payload bytes the client's TCP has taken (see createChannelSink). */
  bytes: number;
  /** Payload bytes handed to the channel, taken or not: anything here means stdout has begun. */
  handed: number;
}

/** The client took nothing for `stall_timeout` while walhub had bytes for it. */
export class TransferStalled extends Error {
  constructor(
    ms: number,
    /**
     * The channel still holds part of a write: what the client's SSH window did
     * not take, or its stale rest (keepsChunk). ssh2 keeps it (and the memory
     * it is a view of, a cached segment's whole block) for as long as the
     * channel lives, and a client that never confirms the channel's close
     * keeps it alive with its connection.
     */
    readonly leftInChannel: boolean,
  ) {
    super(`stalled: no data taken for ${Math.round(ms / 1000)} s`);
    this.name = 'TransferStalled';
  }
}

/**
 * ssh2 1.17 keeps the rest of a partly sent write in `channel._chunk`, and
 * does not clear it once the rest has gone (Channel.js, server.js): until its
 * next partial write, the channel still holds a view of memory walhub lent
 * (a cached segment's whole block) though the write's callback has come.
 */
function keepsChunk(out: Writable): boolean {
  return (out as unknown as { _chunk?: unknown })._chunk != null;
}

/**
 * The last stage of a transfer: hands a chunk to the channel only when the
 * connection has room, and counts a chunk in `progress.bytes` only once the
 * kernel has taken every socket byte up to the end of its packets, so `bytes`
 * in the audit means bytes that left walhub (approximately: the kernel's
 * buffers and the client's still hold some; packets queued by ssh2 during a
 * key re-exchange are counted when handed, at most one chunk per session).
 * `final` waits until the last chunk is taken: a transfer is `ok` only then.
 *
 * A transfer that waits on its client with nothing taken for `stallMs` is
 * aborted with TransferStalled: a reader that never reads would otherwise
 * hold its file, decoder and transfer slot forever.
 */
export function createChannelSink(
  out: Writable,
  outlet: Outlet,
  progress: SinkProgress,
  options: { readonly signal: AbortSignal; readonly stallMs: number },
): { sink: Writable; signal: AbortSignal } {
  const stall = new AbortController();
  const signal = AbortSignal.any([options.signal, stall.signal]);
  /** Chunks handed to the socket, not yet all taken: socket offsets where their packets start and end. */
  const pending: { start: number; end: number; bytes: number }[] = [];
  let progressAt = Date.now();
  let lastTaken = outlet.taken();
  let waitingSince: number | undefined;
  /** A write handed to the channel whose callback has not come: the channel holds (part of) it. */
  let inChannel = false;

  const settle = () => {
    const taken = outlet.taken();
    // Any byte of our packets taken is progress: a slow reader is not a stalled one,
    // even while a whole chunk takes it minutes. That includes a chunk still
    // in the channel, whose packets ssh2 writes as the client's window opens.
    if (taken > lastTaken && (inChannel || (pending.length > 0 && taken > pending[0]!.start))) progressAt = Date.now();
    lastTaken = taken;
    while (pending.length > 0 && pending[0]!.end <= taken) progress.bytes += pending.shift()!.bytes;
  };
  /** Only time spent waiting on the client counts towards a stall, not a slow decoder. */
  const onClient = async (wait: () => Promise<void>) => {
    waitingSince = Date.now();
    try {
      await wait();
    } finally {
      waitingSince = undefined;
    }
  };
  const watchdog = setInterval(() => {
    settle();
    if (waitingSince !== undefined && Date.now() - Math.max(progressAt, waitingSince) >= options.stallMs) {
      stall.abort(new TransferStalled(options.stallMs, inChannel || keepsChunk(out)));
    }
  }, Math.min(1000, options.stallMs / 4)).unref();

  const sink = new Writable({
    highWaterMark: 0,
    write(chunk: Buffer, _encoding, callback) {
      onClient(async () => {
        await outlet.waitForRoom(signal);
        progress.handed += chunk.length;
        const start = outlet.written();
        // Done when the channel has taken the chunk on (sent it within the SSH
        // window), not merely queued it: at most one chunk waits in the channel.
        inChannel = true;
        await new Promise<void>((resolve, reject) =>
          outlet.batched(() => out.write(chunk, (error) => (error ? reject(error) : resolve()))),
        );
        inChannel = false;
        // ssh2 has copied it into its packets by now.
        giveBack(chunk);
        pending.push({ start, end: outlet.written(), bytes: chunk.length });
        settle();
      }).then(() => callback(), callback);
    },
    final(callback) {
      onClient(async () => {
        for (settle(); pending.length > 0; settle()) await outlet.waitForProgress(signal);
      }).then(() => callback(), callback);
    },
    destroy(error, callback) {
      clearInterval(watchdog);
      callback(error);
    },
  });
  return { sink, signal };
}
