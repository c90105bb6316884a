import type { FileHandle } from 'node:fs/promises';
import type { Readable, Transform, Duplex } from 'node:stream';
import { WalhubError } from '../errors.js';
import { CheckedCopy } from './checked-copy.js';
import { detectCompression, MAGIC_BYTES_NEEDED, type CompressionName, type DecoderTable } from './compression.js';
import { MAX_SMALL_FILE_BYTES, type ArchiveLimits } from './limits.js';
import { findWalFile, toArchiveReadError } from './lookup.js';
import { SizeCap } from './size-cap.js';
import { WorkerDecoder } from './zstd-worker-pool.js';
import { needsVerifier, WalVerifier } from './wal-verifier.js';
import type { WalName } from './wal-name.js';

export interface OpenedWal {
  /** The open file under `file`: closed with it (unless opened with `autoClose: false`), or by a decoder that reads it itself (toLendingStages). */
  readonly handle: FileHandle;
  /** A stream of the file, made when first asked for: a decoder may read `handle` itself instead. */
  readonly file: Readable;
  /** Present when the file is compressed. */
  readonly decoder?: Duplex;
  /** Checks segments and .partial files page by page; caps history and .backup files. */
  readonly verifier: Transform;
  readonly compression: CompressionName;
  readonly relative: string;
}

/** file, then decoder, then verifier: the order to pipe them in. */
export function toStages(wal: OpenedWal): [Readable, ...(Duplex | Transform)[]] {
  return [wal.file, ...(wal.decoder ? [wal.decoder] : []), wal.verifier];
}

/**
 * toStages for a transfer that gives back every chunk it is done with and
 * destroys the first stage when done (lent-chunks.ts): a zstd decoder in a
 * worker reads the file itself and lends its chunks, so the first stage is
 * the decoder. Undefined for a file not read that way: another format, or
 * a history or .backup file.
 */
export function toLendingStages(wal: OpenedWal): [WorkerDecoder, Transform] | undefined {
  // Only a segment's verifier passes chunks on as it goes; a history file's size cap holds them to the end.
  if (!(wal.decoder instanceof WorkerDecoder) || !(wal.verifier instanceof WalVerifier)) return undefined;
  return [wal.decoder.readFileDirectly(wal.handle), wal.verifier];
}

/**
 * The stored bytes as they are, checked alongside by the decoder and verifier
 * (see CheckedCopy); for a compressed file only, as a plain one has nothing to decode.
 */
export function toStoredStages(wal: OpenedWal & { readonly decoder: Duplex }): [Readable, Transform] {
  return [wal.file, new CheckedCopy([wal.decoder, wal.verifier])];
}

/**
 * Half a MiB a read: measured against 256 KiB, a plain 16 MiB segment over a
 * ControlMaster went from 78 to 64 ms (fewer trips through the thread pool
 * while the send path waits), for 256 KiB more per stream.
 */
const READ_CHUNK = 512 * 1024;

/**
 * Finds a WAL file and sets up, without reading past its magic, the streams
 * that decode and check it. Every stream is bounded by `limits`: what a
 * decoder allocates, and how many bytes reach the client.
 */
export async function openWal(
  serverDir: string,
  wal: WalName,
  partial: boolean,
  decoders: DecoderTable,
  limits: ArchiveLimits,
  { autoClose = true }: { readonly autoClose?: boolean } = {},
): Promise<OpenedWal> {
  const found = await findWalFile(serverDir, wal, partial);
  if (!found) throw new WalhubError('NOT_FOUND', 'WAL file not found in the archive');
  const { handle, relative } = found;
  try {
    const head = Buffer.alloc(MAGIC_BYTES_NEEDED);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const compression = detectCompression(head.subarray(0, bytesRead));
    const decoder = compression === 'none' ? undefined : decoders.decoders.get(compression);
    if (compression !== 'none' && !decoder) {
      throw new WalhubError('UNAVAILABLE', decoders.missing.get(compression) ?? `cannot decode ${compression}`);
    }
    let file: Readable | undefined;
    return {
      handle,
      get file() {
        return (file ??= handle.createReadStream({ start: 0, highWaterMark: READ_CHUNK, autoClose }));
      },
      ...(decoder ? { decoder: decoder(limits) } : {}),
      verifier: needsVerifier(wal)
        ? new WalVerifier(wal, !relative.endsWith('.partial'), limits.maxSegmentSize)
        : new SizeCap(MAX_SMALL_FILE_BYTES, wal.kind === 'history' ? 'history file' : 'backup label'),
      compression,
      relative,
    };
  } catch (error) {
    await handle.close();
    throw error instanceof WalhubError ? error : toArchiveReadError(error);
  }
}
