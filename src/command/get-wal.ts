import { join } from 'node:path';
import { Writable, type Duplex, type Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isDirectory, toArchiveReadError } from '../archive/lookup.js';
import { openWal, toStages } from '../archive/open-wal.js';
import { peekWalNames } from '../archive/peek.js';
import type { CompressionName, DecoderTable } from '../archive/compression.js';
import type { Config } from '../config.js';
import { WalhubError } from '../errors.js';
import { mayRead, type KeyEntry } from '../keys/authorized-keys.js';
import type { GetWalRequest } from './grammar.js';

/** What start-up builds for every request: looked up, never re-read. */
export interface Hub {
  readonly config: Config;
  readonly decoders: DecoderTable;
  readonly transfers: { active: number };
}

export interface Io {
  readonly stdout: Writable;
  readonly signal: AbortSignal;
}

export interface Transfer {
  bytes: number;
  compression?: CompressionName;
  file?: string;
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
 * WalhubError; `transfer.bytes` tells the caller whether anything was sent.
 */
export async function handleGetWal(request: GetWalRequest, key: KeyEntry, hub: Hub, io: Io, transfer: Transfer): Promise<void> {
  const serverDir = await resolveServerDir(hub, key, request.server);
  if (request.test) {
    transfer.bytes += write(io.stdout, `Ready to retrieve WAL files from the server ${request.server}\n`);
    return;
  }
  if (request.gzip || request.bzip2 || request.keepCompression) {
    throw new WalhubError('USAGE', 'this walhub does not support --gzip, --bzip2 or --keep-compression yet');
  }
  if (request.peek !== undefined) {
    const names = await peekWalNames(serverDir, request.wal!, request.peek, hub.decoders, hub.config.limits);
    transfer.bytes += write(io.stdout, names.map((name) => `${name}\n`).join(''));
    return;
  }
  if (hub.transfers.active >= hub.config.limits.maxTransfers) {
    throw new WalhubError('UNAVAILABLE', 'walhub is busy, retry shortly');
  }
  hub.transfers.active++;
  try {
    const wal = request.wal!;
    const opened = await openWal(serverDir, wal, request.partial, hub.decoders, hub.config.limits);
    transfer.compression = opened.compression;
    transfer.file = opened.relative;
    await pump(toStages(opened), io, transfer);
  } finally {
    hub.transfers.active--;
  }
}

/**
 * file -> decoder -> verifier -> stdout, with backpressure. The stage that
 * failed decides the error: the file is an I/O problem, a decoder means the
 * archived bytes are damaged.
 */
async function pump(stages: [Readable, ...(Duplex | Transform)[]], io: Io, transfer: Transfer): Promise<void> {
  let failedStage: number | undefined;
  stages.forEach((stage, index) => stage.once('error', () => (failedStage ??= index)));
  const sink = new Writable({
    highWaterMark: 0,
    write(chunk: Buffer, _encoding, callback) {
      transfer.bytes += chunk.length;
      // Done when the channel has taken the chunk on (sent it within the SSH
      // window), not merely queued it: so at most one chunk waits in the
      // channel, and the exit status goes out after the last byte.
      io.stdout.write(chunk, (error) => callback(error ?? undefined));
    },
  });
  try {
    await pipeline([...stages, sink], { signal: io.signal });
  } catch (error) {
    if (error instanceof WalhubError || io.signal.aborted) throw error;
    if (failedStage === 0) throw toArchiveReadError(error);
    if (failedStage !== undefined && failedStage < stages.length) {
      throw new WalhubError('DAMAGED', `archived file is damaged: it does not decode (${firstLine(error)})`, { cause: error });
    }
    throw error;
  }
}

function write(out: Writable, text: string): number {
  out.write(text);
  return Buffer.byteLength(text);
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 200);
}
