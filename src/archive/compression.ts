import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import type { ArchiveLimits } from './limits.js';
import { createProgramStage } from './program-stage.js';
import { createSnappyDecoder } from './snappy-decoder.js';
import { createZstdDecoder } from './zstd-decoder.js';
import type { ZstdWorkerPool } from './zstd-worker-pool.js';

export type CompressionName = 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'lz4' | 'snappy' | 'none';

/** What get-wal can send compressed, as Barman's get-wal does: -z/--gzip, -j/--bzip2. */
export type EncodingName = 'gzip' | 'bzip2';

/** zlib's default level, as Barman's get-wal -z (Python's gzip) uses a default level too. */
function createGzipEncoder(): Duplex {
  return createGzip({ chunkSize: 64 * 1024 });
}

interface Format {
  readonly name: Exclude<CompressionName, 'none'>;
  readonly magic: Buffer;
  /** A decoder in this process, when one exists; else a program, found once at start-up. */
  readonly inProcess?: (limits: ArchiveLimits) => Duplex;
  readonly program?: readonly [command: string, ...args: string[]];
  /** Arguments that bound the program's memory, from the limits. */
  readonly programBounds?: (limits: ArchiveLimits) => string[];
}

/** xz needs its dictionary plus about 1 MiB of state (xz -lvv "Memory needed"). */
const XZ_STATE_BYTES = 1024 * 1024;

/** Barman's magic bytes (barman/compression.py); the longest is 10 bytes. */
const FORMATS: readonly Format[] = [
  // gzip's window is 32 KiB by its format: nothing in the file can ask for more.
  { name: 'gzip', magic: Buffer.from('1f8b08', 'hex'), inProcess: () => createGunzip({ chunkSize: 64 * 1024 }) },
  { name: 'zstd', magic: Buffer.from('28b52ffd', 'hex'), inProcess: (limits) => createZstdDecoder(limits.maxDecodeWindow) },
  // bzip2, xz and lz4 have no streaming decoder in Node: the native bindings on
  // npm (lz4-napi, @napi-rs/lzma) decode whole buffers only, which would hold a
  // 1 GiB segment at once and leave a bomb unbounded. Their C tools stream, with
  // backpressure through the pipe, so they are run per request.
  // bzip2 (blocks of at most 900 kB) and lz4 frames (blocks of at most 4 MiB,
  // a 64 KiB window) are bounded by their formats: measured, decoding 1 GB of
  // zeros packed as tightly as each allows peaks at 14 MB RSS for either program.
  { name: 'bzip2', magic: Buffer.from('425a68', 'hex'), program: ['bzip2', '-dc'] },
  // An xz dictionary can be up to 1.5 GiB, all allocated by the decoder: -M refuses
  // a file that needs more (xz exits 1, "Memory usage limit reached").
  {
    name: 'xz',
    magic: Buffer.from('fd377a585a00', 'hex'),
    program: ['xz', '-dc'],
    programBounds: (limits) => ['-M', String(limits.maxDecodeWindow + XZ_STATE_BYTES)],
  },
  { name: 'lz4', magic: Buffer.from('04224d18', 'hex'), program: ['lz4', '-dc'] },
  { name: 'snappy', magic: Buffer.from('ff060000734e61507059', 'hex'), inProcess: createSnappyDecoder },
];

export const MAGIC_BYTES_NEEDED = Math.max(...FORMATS.map((f) => f.magic.length));

export function detectCompression(head: Buffer): CompressionName {
  for (const format of FORMATS) {
    if (head.length >= format.magic.length && head.subarray(0, format.magic.length).equals(format.magic)) return format.name;
  }
  return 'none';
}

export type DecoderFactory = (limits: ArchiveLimits) => Duplex;

/**
 * The decoders this node can run, built once at start-up: a format whose
 * program is missing maps to the reason, which the request then reports.
 */
export interface DecoderTable {
  readonly decoders: ReadonlyMap<CompressionName, DecoderFactory>;
  readonly missing: ReadonlyMap<CompressionName, string>;
  /** For get-wal --gzip/--bzip2; a missing program maps to the reason, in `missingEncoders`. */
  readonly encoders: ReadonlyMap<EncodingName, () => Duplex>;
  readonly missingEncoders: ReadonlyMap<EncodingName, string>;
}

/** Said at start-up and to each request that meets such a file, so the log reader knows what standbys will see. */
function answeredUnavailable(name: string): string {
  return `: requests for ${name}-compressed files are answered exit 5 (unavailable)`;
}

/** `zstdPool`: decode zstd in its worker threads rather than on the event loop (walhub serve). */
export function createDecoderTable(searchPath = process.env.PATH ?? '', zstdPool?: ZstdWorkerPool): DecoderTable {
  const decoders = new Map<CompressionName, DecoderFactory>();
  const missing = new Map<CompressionName, string>();
  for (const format of FORMATS) {
    if (format.name === 'zstd' && zstdPool) decoders.set(format.name, (limits) => zstdPool.createDecoder(limits.maxDecodeWindow));
    else if (format.inProcess) decoders.set(format.name, format.inProcess);
    else if (format.program) {
      const [command, ...args] = format.program;
      const path = findProgram(command, searchPath);
      const bounds = format.programBounds;
      if (path) decoders.set(format.name, (limits) => createProgramStage(path, [...args, ...(bounds ? bounds(limits) : [])]));
      else missing.set(format.name, `${format.name} decoding needs the ${command} program, which is not installed${answeredUnavailable(format.name)}`);
    } else missing.set(format.name, `${format.name} compression is not supported by walhub${answeredUnavailable(format.name)}`);
  }
  // Encoders: gzip in this process; bzip2 by its program, as its decoder (Node has no bzip2).
  // bzip2 -c holds about 8 MB whatever its input (900 kB blocks).
  const encoders = new Map<EncodingName, () => Duplex>([['gzip', createGzipEncoder]]);
  const missingEncoders = new Map<EncodingName, string>();
  const bzip2 = findProgram('bzip2', searchPath);
  if (bzip2) encoders.set('bzip2', () => createProgramStage(bzip2, ['-c']));
  else missingEncoders.set('bzip2', '--bzip2 needs the bzip2 program on the hub, which is not installed');
  return { decoders, missing, encoders, missingEncoders };
}

function findProgram(command: string, searchPath: string): string | undefined {
  for (const dir of searchPath.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}
