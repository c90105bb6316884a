// Archive files written the way Barman 3.17 writes them (barman/compression.py):
// through Python's own libraries, not through the command-line programs. The
// Debian packages python3-zstandard, python3-lz4 and python3-snappy provide the
// libraries Barman imports; Debian's own python3 is used, never another one on PATH.
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type BarmanWriter = 'pygzip' | 'pybzip2' | 'xz' | 'zstd' | 'lz4' | 'snappy';

const PYTHON = '/usr/bin/python3';

/**
 * Debian 12's python3-snappy (0.5.3) has a C _crc32c that fails on Python 3.11
 * ("PY_SSIZE_T_CLEAN macro must be defined"), so its stream_compress cannot run
 * at all there. The framing code is still the library's own; only the checksum
 * function is swapped for the same CRC-32C in Python when the C one fails.
 */
const SNAPPY_CRC_WORKAROUND = `
import snappy.snappy as framing
try:
    framing._crc32c(b'')
except SystemError:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    def crc32c(data):
        crc = 0xFFFFFFFF
        for byte in data:
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    framing._crc32c = crc32c`;

/** Each writer as Barman 3.17 calls it; the Debian package that provides the module. */
const WRITERS: Record<BarmanWriter, { module: string; debian: string; code: string }> = {
  pygzip: { module: 'gzip', debian: 'python3', code: "out = gzip.GzipFile(dst, mode='wb', compresslevel=-1)" },
  pybzip2: { module: 'bz2', debian: 'python3', code: "out = bz2.BZ2File(dst, mode='wb', compresslevel=9)" },
  xz: { module: 'lzma', debian: 'python3', code: "out = lzma.open(dst, mode='wb')" },
  // stream_writer: frames carry no content size, unlike `zstd -c FILE`.
  zstd: { module: 'zstandard', debian: 'python3-zstandard', code: "out = zstandard.ZstdCompressor(level=3).stream_writer(open(dst, 'wb'))" },
  lz4: { module: 'lz4.frame', debian: 'python3-lz4', code: "out = lz4.frame.open(dst, mode='wb')" },
  snappy: { module: 'snappy', debian: 'python3-snappy', code: `${SNAPPY_CRC_WORKAROUND}\nwith open(src, 'rb') as i, open(dst, 'wb') as o:\n    snappy.stream_compress(i, o)\nsys.exit(0)` },
};

export const BARMAN_WRITERS = Object.keys(WRITERS) as BarmanWriter[];

/** The compression walhub detects (and audits) in a file each writer made. */
export const WRITER_COMPRESSION: Record<BarmanWriter, string> = {
  pygzip: 'gzip',
  pybzip2: 'bzip2',
  xz: 'xz',
  zstd: 'zstd',
  lz4: 'lz4',
  snappy: 'snappy',
};

/** Writes `src` compressed to `dst` with the library call Barman uses for `writer`. */
export async function writeAsBarman(writer: BarmanWriter, src: string, dst: string): Promise<void> {
  await access(PYTHON).catch(() => {
    throw new Error(`${PYTHON} not found: install the Debian package python3`);
  });
  const { module, debian, code } = WRITERS[writer];
  const program = [
    'import sys, shutil',
    'src, dst = sys.argv[1], sys.argv[2]',
    `try:\n    import ${module}\nexcept ImportError:\n    sys.exit('python module ${module} missing: install the Debian package ${debian}')`,
    code,
    "with open(src, 'rb') as data:\n    shutil.copyfileobj(data, out)",
    'out.close()',
  ].join('\n');
  await run(PYTHON, ['-c', program, src, dst]);
}
