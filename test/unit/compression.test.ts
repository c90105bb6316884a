import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createDecoderTable,
  detectCompression,
  MAGIC_BYTES_NEEDED,
  type CompressionName,
} from '../../src/archive/compression.js';
import { DEFAULT_LIMITS } from '../../src/config.js';
import { requireProgram } from '../helpers/programs.js';

/** Something shaped like WAL: a page header, then records that compress, then zeros. */
function makeWalLikeBytes(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  bytes.writeUInt16LE(0xd110, 0);
  bytes.writeUInt16LE(0x2, 2);
  for (let i = 40; i < size * 0.75; i++) bytes[i] = (i % 251) ^ ((i >> 9) & 0x3f);
  return bytes;
}

async function decodeWith(decoder: Duplex, input: Buffer, chunkSize = 10_000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const parts: Buffer[] = [];
  for (let at = 0; at < input.length; at += chunkSize) parts.push(input.subarray(at, at + chunkSize));
  await pipeline(
    Readable.from(parts, { objectMode: false }),
    decoder,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    }),
  );
  return Buffer.concat(chunks);
}

/** Compress with the real program, as Barman's archiver would have. */
function compressWithProgram(program: string, debianPackage: string, input: Buffer, args: string[] = []): Buffer {
  const path = requireProgram(program, debianPackage);
  const result = spawnSync(path, ['-c', ...args], { input, maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`${program} -c failed: ${result.stderr.toString()}`);
  return result.stdout;
}

describe('detectCompression', () => {
  it.each([
    ['gzip', '1f8b0800000000000003'],
    ['bzip2', '425a683931415926535900'],
    ['xz', 'fd377a585a000004e6d6b446'],
    ['zstd', '28b52ffd0458c5000010'],
    ['lz4', '04224d186440a7e2000000'],
    ['snappy', 'ff060000734e61507059000000'],
  ] as const)('recognises %s by its magic bytes', (name, hex) => {
    expect(detectCompression(Buffer.from(hex, 'hex'))).toBe(name);
  });

  it.each([
    ['plain WAL (PostgreSQL 15 page header)', 'd11002000100000000000003000000000000000000000000'],
    ['plain WAL (PostgreSQL 16 page header)', '13d1020001000000'],
    ['a history file', '310930'],
    ['an empty file', ''],
    ['gzip with another method than deflate', '1f8b09'],
    ['half a gzip magic', '1f8b'],
    ['half a snappy magic', 'ff060000734e'],
    ['xz without its NUL byte', 'fd377a585a01'],
  ])('serves %s as stored', (_what, hex) => {
    expect(detectCompression(Buffer.from(hex, 'hex'))).toBe('none');
  });

  it('needs no more than MAGIC_BYTES_NEEDED bytes to decide', () => {
    expect(MAGIC_BYTES_NEEDED).toBe(10);
    expect(detectCompression(Buffer.from('ff060000734e61507059', 'hex'))).toBe('snappy');
  });
});

describe('createDecoderTable', () => {
  it('always decodes gzip and zstd in process', () => {
    const table = createDecoderTable('');
    expect(table.decoders.has('gzip')).toBe(true);
    expect(table.decoders.has('zstd')).toBe(true);
  });

  it.each([
    ['bzip2', 'bzip2'],
    ['xz', 'xz'],
    ['lz4', 'lz4'],
  ] as const)('reports %s as missing, naming the %s program, when it is not on the path', (name, program) => {
    const table = createDecoderTable('');
    expect(table.decoders.has(name)).toBe(false);
    expect(table.missing.get(name)).toBe(
      `${name} decoding needs the ${program} program, which is not installed: requests for ${name}-compressed files are answered exit 5 (unavailable)`,
    );
  });

  it('decodes gzip, zstd and snappy in process, with no program on the path', () => {
    const table = createDecoderTable('');
    for (const name of ['gzip', 'zstd', 'snappy'] as const) {
      expect(table.decoders.has(name)).toBe(true);
      expect(table.missing.has(name)).toBe(false);
    }
  });

  it('encodes gzip in process always, and bzip2 only with its program, naming it when missing', () => {
    const bare = createDecoderTable('');
    expect(bare.encoders.has('gzip')).toBe(true);
    expect(bare.encoders.has('bzip2')).toBe(false);
    expect(bare.missingEncoders.get('bzip2')).toBe('--bzip2 needs the bzip2 program on the hub, which is not installed');
    expect(createDecoderTable(process.env.PATH ?? '').encoders.has('bzip2')).toBe(true);
  });

  it('never offers a decoder for plain files (they are served as stored)', () => {
    const table = createDecoderTable(process.env.PATH ?? '');
    expect(table.decoders.has('none')).toBe(false);
    expect(table.missing.has('none')).toBe(false);
  });

  describe('with a program directory', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'walhub-decoders-'));
      await writeFile(join(dir, 'xz'), '#!/bin/sh\nexit 0\n');
      await chmod(join(dir, 'xz'), 0o644);
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('does not take a file that is not executable for a program', () => {
      const table = createDecoderTable(dir);
      expect(table.decoders.has('xz')).toBe(false);
      expect(table.missing.get('xz')).toMatch(/needs the xz program/);
    });

    it('finds the program in a later directory of the search path', () => {
      const bzip2 = requireProgram('bzip2', 'bzip2');
      const table = createDecoderTable([dir, '/nonexistent', dirname(bzip2)].join(delimiter));
      expect(table.decoders.has('bzip2')).toBe(true);
      expect(table.missing.has('bzip2')).toBe(false);
    });
  });
});

describe('round trips through the decoder table', () => {
  const original = makeWalLikeBytes(1024 * 1024);
  const table = createDecoderTable(process.env.PATH ?? '');

  const encoders: [CompressionName, () => Buffer][] = [
    ['gzip', () => gzipSync(original)],
    ['zstd', () => zstdCompress(original)],
    ['bzip2', () => compressWithProgram('bzip2', 'bzip2', original)],
    ['xz', () => compressWithProgram('xz', 'xz-utils', original)],
    ['lz4', () => compressWithProgram('lz4', 'lz4', original)],
  ];

  it.each(encoders)('decodes %s back to the same bytes', async (name, encode) => {
    const compressed = encode();
    expect(detectCompression(compressed)).toBe(name);
    const decoder = table.decoders.get(name);
    if (!decoder) throw new Error(`no ${name} decoder: ${table.missing.get(name)}`);
    const decoded = await decodeWith(decoder(DEFAULT_LIMITS), compressed);
    expect(decoded.length).toBe(original.length);
    expect(decoded.equals(original)).toBe(true);
  });

  it.each(encoders)('fails, never ends cleanly, on a truncated %s file', async (name, encode) => {
    const compressed = encode();
    const decoder = table.decoders.get(name);
    if (!decoder) throw new Error(`no ${name} decoder: ${table.missing.get(name)}`);
    await expect(decodeWith(decoder(DEFAULT_LIMITS), compressed.subarray(0, compressed.length - 7))).rejects.toThrow();
  });
});

describe('decoder memory bounds', () => {
  const table = createDecoderTable(process.env.PATH ?? '');
  const MiB = 1024 * 1024;
  // xz reading a pipe does not know the input's size, so the header asks for the whole dictionary.
  const input = makeWalLikeBytes(64 * 1024);

  it('refuses an xz file whose dictionary is larger than limits.max_decode_window (xz -M)', async () => {
    const compressed = compressWithProgram('xz', 'xz-utils', input, ['--lzma2=preset=0,dict=32MiB']);
    const decoder = table.decoders.get('xz')!;
    await expect(decodeWith(decoder({ ...DEFAULT_LIMITS, maxDecodeWindow: 16 * MiB }), compressed)).rejects.toThrow(/Memory usage limit reached/);
  });

  it('decodes an xz file whose dictionary is exactly limits.max_decode_window', async () => {
    const compressed = compressWithProgram('xz', 'xz-utils', input, ['--lzma2=preset=0,dict=16MiB']);
    const decoder = table.decoders.get('xz')!;
    expect((await decodeWith(decoder({ ...DEFAULT_LIMITS, maxDecodeWindow: 16 * MiB }), compressed)).equals(input)).toBe(true);
  });
});
