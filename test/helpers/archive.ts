import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { requireProgram } from './programs.js';


export type Codec = 'none' | 'gzip' | 'zstd' | 'bzip2' | 'xz' | 'lz4';

const PROGRAMS: Record<'bzip2' | 'xz' | 'lz4', [string, string]> = {
  bzip2: ['bzip2', 'bzip2'],
  xz: ['xz', 'xz-utils'],
  lz4: ['lz4', 'lz4'],
};

/** Compresses as Barman's archiver would: gzip and zstd in-process, the others with their real programs. */
export async function encode(bytes: Buffer, codec: Codec): Promise<Buffer> {
  switch (codec) {
    case 'none':
      return bytes;
    case 'gzip':
      return gzipSync(bytes);
    case 'zstd':
      return zstdCompress(bytes);
    default: {
      const [program, pkg] = PROGRAMS[codec];
      const path = requireProgram(program, pkg);
      const { stdout } = await runWithInput(path, ['-c'], bytes);
      return stdout;
    }
  }
}

function runWithInput(path: string, args: string[], input: Buffer): Promise<{ stdout: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = execFile(path, args, { encoding: 'buffer', maxBuffer: 64 << 20 }, (error, stdout) =>
      error ? reject(error) : resolve({ stdout }),
    );
    child.stdin!.end(input);
  });
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Where Barman keeps a file: segments and .backup/.partial under wals/<first 16 chars>/, history files in wals/. */
export function archivedPath(serverDir: string, name: string): string {
  return name.endsWith('.history') ? join(serverDir, 'wals', name) : join(serverDir, 'wals', name.slice(0, 16), name);
}

export interface Placed {
  readonly name: string;
  readonly path: string;
  readonly codec: Codec;
  /** sha256 of the original, decoded bytes. */
  readonly sha256: string;
  readonly size: number;
}

/** Copies a real WAL file into a Barman server directory, compressed with `codec`, at `where`. */
export async function place(
  serverDir: string,
  source: string,
  options: { codec?: Codec; where?: 'wals' | 'incoming' | 'streaming'; name?: string } = {},
): Promise<Placed> {
  const name = options.name ?? basename(source);
  const codec = options.codec ?? 'none';
  const where = options.where ?? 'wals';
  const original = await readFile(source);
  const path = where === 'wals' ? archivedPath(serverDir, name) : join(serverDir, where, name);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, await encode(original, codec));
  return { name, path, codec, sha256: sha256(original), size: original.length };
}

/** Barman's empty server directory. */
export async function createServerDir(root: string, id: string): Promise<string> {
  const dir = join(root, id);
  for (const sub of ['wals', 'incoming', 'streaming', 'errors']) await mkdir(join(dir, sub), { recursive: true });
  return dir;
}

