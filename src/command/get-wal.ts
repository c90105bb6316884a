import { join } from 'node:path';
import { Readable, type Duplex, type Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { lend } from '../archive/lent-chunks.js';
import { isDirectory, toArchiveReadError } from '../archive/lookup.js';
import { openWal, toLendingStages, toStages, toStoredStages, type OpenedWal } from '../archive/open-wal.js';
import { peekWalNames } from '../archive/peek.js';
import type { Readahead } from '../archive/readahead.js';
import { WalVerifier } from '../archive/wal-verifier.js';
import type { CompressionName, DecoderTable, EncodingName } from '../archive/compression.js';
import type { Config } from '../config.js';
import { WalhubError } from '../errors.js';
import { mayRead, type KeyEntry } from '../keys/authorized-keys.js';
import { createChannelSink, TransferStalled, type Outlet, type SinkProgress } from './channel-sink.js';
import type { GetWalRequest } from './grammar.js';

/** What start-up builds for every request: looked up, never re-read. */
export interface Hub {
  readonly config: Config;
  readonly decoders: DecoderTable;
  readonly transfers: TransferCounts;
  /** Absent when [cache] turns it off. */
  readonly readahead?: Readahead;
}

/** Transfers running now: in all, read from the archive (not the cache), and per key (by fingerprint). */
export interface TransferCounts {
  active: number;
  fromArchive: number;
  readonly byKey: Map<string, number>;
}

export function createTransferCounts(): TransferCounts {
  return { active: 0, fromArchive: 0, byKey: new Map() };
}

export interface Io {
  readonly stdout: Writable;
  readonly signal: AbortSignal;
  /** The connection under stdout, for flow control (see channel-sink.ts). */
  readonly outlet: Outlet;
  /** Aborted when the connection closes: ends the readahead done for it. */
  readonly connection?: AbortSignal;
}

export interface Transfer extends SinkProgress {
  compression?: CompressionName;
  file?: string;
  /** For a request the readahead cache could serve: whether it did. */
  cache?: 'hit' | 'miss';
}

/** Same words whether the server does not exist or this key may not read it, so keys cannot probe for server IDs. */
const DENIED_MESSAGE = 'unknown server, or not allowed for this key';

export async function resolveServerDir(hub: Hub, key: KeyEntry, server: string): Promise<string> {
  if (!mayRead(key, server)) throw new WalhubError('DENIED', DENIED_MESSAGE);
  const configured = Object.hasOwn(hub.config.servers, server) ? hub.config.servers[server] : undefined;
  const dir = configured?.path ?? join(hub.config.archive, server);
  if (!(await isDirectory(dir))) throw new WalhubError('DENIED', DENIED_MESSAGE);
  return dir;
}

/**
 * Streams one WAL file to `io.stdout`, decoded and checked. Throws a
 * WalhubError or TransferStalled; `transfer.handed` tells the caller whether stdout has begun.
 */
export async function handleGetWal(request: GetWalRequest, key: KeyEntry, hub: Hub, io: Io, transfer: Transfer): Promise<void> {
  const serverDir = await resolveServerDir(hub, key, request.server);
  if (request.test) {
    transfer.bytes = transfer.handed = write(io.stdout, `Ready to retrieve WAL files from the server ${request.server}\n`);
    return;
  }
  if (request.peek !== undefined) {
    const names = await peekWalNames(serverDir, request.wal!, request.peek, hub.decoders, hub.config.limits);
    transfer.bytes = transfer.handed = write(io.stdout, names.map((name) => `${name}\n`).join(''));
    return;
  }
  const encoding = wantedEncoding(request);
  if (encoding && !hub.decoders.encoders.has(encoding)) {
    throw new WalhubError('UNAVAILABLE', hub.decoders.missingEncoders.get(encoding) ?? `cannot compress with ${encoding}`);
  }
  const { limits } = hub.config;
  const { transfers } = hub;
  const fingerprint = key.key.fingerprint;
  const forKey = transfers.byKey.get(fingerprint) ?? 0;
  if (transfers.active >= limits.maxTransfers) {
    throw new WalhubError('UNAVAILABLE', 'walhub is busy, retry shortly');
  }
  // One key (one standby, or a stolen key) cannot take every slot from the others.
  if (forKey >= limits.maxTransfersPerKey) {
    throw new WalhubError('UNAVAILABLE', `this key already has ${forKey} transfers running, retry shortly`);
  }
  transfers.active++;
  transfers.byKey.set(fingerprint, forKey + 1);
  try {
    const wal = request.wal!;
    let served = await sendFromCache(hub.readahead, serverDir, request, io, transfer, limits.stallTimeout);
    if (served === undefined) {
      transfers.fromArchive++;
      try {
        const opened = await openWal(serverDir, wal, request.partial, hub.decoders, hub.config.limits);
        transfer.compression = opened.compression;
        transfer.file = opened.relative;
        await pump(toSendStages(opened, request, hub.decoders), io, transfer, limits.stallTimeout);
        if (transfer.cache && opened.verifier instanceof WalVerifier) served = opened.verifier.segmentSize;
      } finally {
        transfers.fromArchive--;
      }
    }
    if (served !== undefined) hub.readahead!.schedule(request.server, serverDir, wal, served, io.connection ?? io.signal);
  } finally {
    transfers.active--;
    const left = (transfers.byKey.get(fingerprint) ?? 1) - 1;
    if (left > 0) transfers.byKey.set(fingerprint, left);
    else transfers.byKey.delete(fingerprint);
  }
}

/**
 * A plain request for a segment, served from the readahead cache when it
 * holds that very file (see Readahead.lookup); records hit or miss. Returns
 * the segment size when it was served from the cache, else undefined.
 */
async function sendFromCache(
  readahead: Readahead | undefined,
  serverDir: string,
  request: GetWalRequest,
  io: Io,
  transfer: Transfer,
  stallMs: number,
): Promise<number | undefined> {
  const plain = request.wal?.kind === 'segment' && !request.partial && !request.keepCompression && !wantedEncoding(request);
  if (!readahead || !plain) return undefined;
  const hit = await readahead.lookup(serverDir, request.wal!, io.signal);
  transfer.cache = hit ? 'hit' : 'miss';
  if (!hit) return undefined;
  // Each chunk goes out as a view of its own, lent (lent-chunks.ts): the entry's
  // memory may be decoded into again once it is dropped, but only when every
  // view was given back, none left inside ssh2 by a transfer that failed.
  let lentOut = 0;
  // The list is let go of once the transfer ends or fails (finally, below): a
  // write stuck in ssh2 keeps this stream reachable, and the list is the whole
  // segment (for every compression but zstd, buffers the cache no longer counts).
  let chunks: readonly Buffer[] | undefined = hit.wal.chunks;
  let next = 0;
  const source = new Readable({
    read() {
      const chunk = chunks?.[next++];
      if (!chunk) return void this.push(null);
      lentOut++;
      this.push(lend(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length), () => lentOut--));
    },
  });
  try {
    transfer.compression = hit.wal.compression;
    transfer.file = hit.wal.identity.relative;
    await pump({ stages: [source] }, io, transfer, stallMs);
  } finally {
    chunks = undefined;
    hit.release(lentOut === 0);
  }
  return hit.wal.segmentSize;
}

function wantedEncoding(request: GetWalRequest): EncodingName | undefined {
  return request.gzip ? 'gzip' : request.bzip2 ? 'bzip2' : undefined;
}

interface SendStages {
  readonly stages: [Readable, ...(Duplex | Transform)[]];
  /** Set when the last stage compresses the checked WAL for the client. */
  readonly encoder?: EncodingName;
  /** The first stage is a decoder reading the file itself (toLendingStages), not the file. */
  readonly decoderFirst?: boolean;
}

/**
 * What the client asked for: the WAL decoded (the default), the stored bytes
 * (--keep-compression, or -z/-j when the file already is in that format), or
 * the WAL compressed in that format. The checks always run on the decoded
 * bytes, so an encoder goes after the verifier, and stored bytes are checked
 * alongside (CheckedCopy). A plain file is its own stored form.
 */
function toSendStages(opened: OpenedWal, request: GetWalRequest, codecs: DecoderTable): SendStages {
  const encoding = wantedEncoding(request);
  const { decoder } = opened;
  if (decoder && (request.keepCompression || encoding === opened.compression)) {
    return { stages: toStoredStages({ ...opened, decoder }) };
  }
  if (!encoding) {
    // Every stage of a plain transfer gives back the chunks it is done with: the
    // verifier passes them on as they are, the channel sink gives them back.
    const lending = toLendingStages(opened);
    return lending ? { stages: lending, decoderFirst: true } : { stages: toStages(opened) };
  }
  return { stages: [...toStages(opened), codecs.encoders.get(encoding)!()], encoder: encoding };
}

/**
 * file -> decoder -> verifier [-> encoder] -> stdout, with backpressure. The
 * stage that failed decides the error: the file is an I/O problem, a decoder
 * means the archived bytes are damaged, the encoder a problem on the hub.
 */
async function pump({ stages, encoder, decoderFirst = false }: SendStages, io: Io, transfer: Transfer, stallMs: number): Promise<void> {
  let failedStage: number | undefined;
  stages.forEach((stage, index) => stage.once('error', () => (failedStage ??= index)));
  const { sink, signal } = createChannelSink(io.stdout, io.outlet, transfer, { signal: io.signal, stallMs });
  try {
    await pipeline([...stages, sink], { signal });
  } catch (error) {
    if (signal.reason instanceof TransferStalled && !io.signal.aborted) throw signal.reason;
    if (error instanceof WalhubError || io.signal.aborted) throw error;
    if (failedStage === 0 && !decoderFirst) throw toArchiveReadError(error);
    if (encoder && failedStage === stages.length - 1) {
      throw new WalhubError('UNAVAILABLE', `could not compress with ${encoder} (${firstLine(error)})`, { cause: error });
    }
    if (failedStage !== undefined && failedStage < stages.length) {
      throw new WalhubError('DAMAGED', `archived file is damaged: it does not decode (${firstLine(error)})`, { cause: error });
    }
    throw error;
  } finally {
    // Only now is a chunk it lent and nobody gave back known lost (see WorkerDecoder).
    if (decoderFirst) stages[0].destroy();
  }
}

/** A short answer: counted as sent at once (a few bytes, within any window). */
function write(out: Writable, text: string): number {
  out.write(text);
  return Buffer.byteLength(text);
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 200);
}
