import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { createProgramDecoder } from './program-decoder.js';
import { createSnappyDecoder } from './snappy-decoder.js';
import { createZstdDecoder } from './zstd-decoder.js';

export type CompressionName = 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'lz4' | 'snappy' | 'none';

interface Format {
  readonly name: Exclude<CompressionName, 'none'>;
  readonly magic: Buffer;
  /** A decoder in this process, when one exists; else a program, found once at start-up. */
  readonly inProcess?: () => Duplex;
  readonly program?: readonly [command: string, ...args: string[]];
}

/** Barman's magic bytes (barman/compression.py); the longest is 10 bytes. */
const FORMATS: readonly Format[] = [
  { name: 'gzip', magic: Buffer.from('1f8b08', 'hex'), inProcess: () => createGunzip({ chunkSize: 64 * 1024 }) },
  { name: 'zstd', magic: Buffer.from('28b52ffd', 'hex'), inProcess: createZstdDecoder },
  // bzip2, xz and lz4 have no decoder in Node or in our packages; the C tools
  // stream faster than any JavaScript port, so they are run per request.
  { name: 'bzip2', magic: Buffer.from('425a68', 'hex'), program: ['bzip2', '-dc'] },
  { name: 'xz', magic: Buffer.from('fd377a585a00', 'hex'), program: ['xz', '-dc'] },
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

export type DecoderFactory = () => Duplex;

/**
 * The decoders this node can run, built once at start-up: a format whose
 * program is missing maps to the reason, which the request then reports.
 */
export interface DecoderTable {
  readonly decoders: ReadonlyMap<CompressionName, DecoderFactory>;
  readonly missing: ReadonlyMap<CompressionName, string>;
}

export function createDecoderTable(searchPath = process.env.PATH ?? ''): DecoderTable {
  const decoders = new Map<CompressionName, DecoderFactory>();
  const missing = new Map<CompressionName, string>();
  for (const format of FORMATS) {
    if (format.inProcess) decoders.set(format.name, format.inProcess);
    else if (format.program) {
      const [command, ...args] = format.program;
      const path = findProgram(command, searchPath);
      if (path) decoders.set(format.name, () => createProgramDecoder(path, args));
      else missing.set(format.name, `${format.name} decoding needs the ${command} program, which is not installed`);
    } else missing.set(format.name, `${format.name} compression is not supported by walhub`);
  }
  return { decoders, missing };
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
