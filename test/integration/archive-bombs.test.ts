// Decompression bombs planted in the archive, fetched 8 at once by the real
// OpenSSH client: each is refused with exit 4 and one line, none of its bytes
// reach the standby, and the hub's memory stays flat. The files are built
// here with the real programs, as whoever can write the archive would.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { archivedPath, createServerDir } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { requireProgram } from '../helpers/programs.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;
let hub: Hub;
let standby: ClientKey;
let serverDir: string;

/** `{ head; zeros } | program args > path`: the bomb streams through a pipe, never through this process's memory. */
async function packZeros(path: string, zeros: number, program: string, args: string[], head: Buffer = Buffer.alloc(0)): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const headFile = `${path}.head`;
  await writeFile(headFile, head);
  const command = `{ cat "$1"; head -c ${zeros} /dev/zero; } | "$2" ${args.join(' ')} > "$3" && rm "$1"`;
  await new Promise<void>((resolve, reject) =>
    spawn('/bin/sh', ['-c', command, 'sh', headFile, program, path], { stdio: 'inherit' }).on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`packing ${path} failed: ${code}`)),
    ),
  );
}

/** Page 0 of a segment whose long header says segments are `segmentSize` bytes. */
function pageZero(segno: bigint, segmentSize: number): Buffer {
  const page = Buffer.alloc(8192);
  page.writeUInt16LE(0xd110, 0); // PostgreSQL 15
  page.writeUInt16LE(0x2, 2); // XLP_LONG_HEADER
  page.writeUInt32LE(1, 4); // timeline
  page.writeBigUInt64LE(segno * BigInt(segmentSize), 8);
  page.writeBigUInt64LE(7_000_000_000_000_000_000n, 24);
  page.writeUInt32LE(segmentSize, 32);
  page.writeUInt32LE(8192, 36);
  return page;
}

const BOMBS = [
  // The finding: 128 MiB window, 1 GiB of output, a few KB on disk.
  { name: '00000003.history', what: 'zstd --long=27 history file', expect: 'archived file is damaged: it does not decode (the zstd frame needs a window larger than 16 MiB (limits.max_decode_window))' },
  { name: '00000004.history', what: 'gzip history file decoding to 64 MiB', expect: 'archived file is damaged: it decodes to more than 1 MiB, larger than any history file' },
  { name: '00000005.history', what: 'xz history file with a 256 MiB dictionary', expect: /^archived file is damaged: it does not decode \(xz failed: .*Memory usage limit reached\)$/ },
  { name: '00000006.history', what: 'zstd history file decoding to 64 MiB', expect: 'archived file is damaged: it decodes to more than 1 MiB, larger than any history file' },
  { name: '000000010000000000000003', what: 'zstd segment whose page header claims 1 GiB', expect: 'archived file is damaged: the page header says segments are 1024 MiB, above limits.max_segment_size (64 MiB)' },
] as const;

beforeAll(async () => {
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys({ 'standby-a': 'servers="pg1"' }));
  serverDir = await createServerDir(hub.archive, 'pg1');
  const zstd = requireProgram('zstd', 'zstd');
  await packZeros(archivedPath(serverDir, '00000003.history'), GiB, zstd, ['-q', '-c', '--long=27']);
  await packZeros(archivedPath(serverDir, '00000004.history'), 64 * MiB, requireProgram('gzip', 'gzip'), ['-c']);
  await packZeros(archivedPath(serverDir, '00000005.history'), 2 * MiB, requireProgram('xz', 'xz-utils'), ['-c', '--lzma2=preset=0,dict=256MiB']);
  await packZeros(archivedPath(serverDir, '00000006.history'), 64 * MiB, zstd, ['-q', '-c']);
  await packZeros(archivedPath(serverDir, '000000010000000000000003'), GiB - 8192, zstd, ['-q', '-c', '-1'], pageZero(3n, GiB));
}, 120_000);

afterAll(async () => {
  await hub?.stop();
});

function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

it('refuses every decompression bomb with exit 4 and one line, 8 at once, sending none of it, with the hub memory flat', async () => {
  const pid = hub.process.pid!;
  const before = memoryOf(pid);
  let peakRss = before.rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, memoryOf(pid).rss)), 20);
  const fetches = Array.from({ length: 8 }, (_, i) => BOMBS[i % BOMBS.length]!);
  let results;
  try {
    results = await Promise.all(fetches.map((bomb) => sshExec(hub, standby, `get-wal pg1 ${bomb.name}`, { timeoutMs: 120_000 })));
  } finally {
    clearInterval(sampler);
  }
  const after = memoryOf(pid);
  console.log(
    `hub RSS before ${(before.rss / MiB).toFixed(1)} MiB, peak sampled ${(peakRss / MiB).toFixed(1)} MiB, ` +
      `VmHWM ${(before.hwm / MiB).toFixed(1)} -> ${(after.hwm / MiB).toFixed(1)} MiB; bytes sent ${results.map((r) => r.bytes).join(',')}`,
  );
  for (const [i, result] of results.entries()) {
    const bomb = fetches[i]!;
    expect({ what: bomb.what, status: result.status, bytes: result.bytes }).toEqual({ what: bomb.what, status: 4, bytes: 0 });
    const lines = result.stderr.split('\n');
    expect(lines).toHaveLength(2);
    const prefix = 'walhub: ';
    const suffix = ` (pg1 ${bomb.name})`;
    expect(lines[0]!.startsWith(prefix) && lines[0]!.endsWith(suffix)).toBe(true);
    expect(lines[0]!.slice(prefix.length, -suffix.length)).toMatch(typeof bomb.expect === 'string' ? new RegExp(`^${escape(bomb.expect)}$`) : bomb.expect);
  }
  expect(after.hwm - before.hwm).toBeLessThan(100 * MiB);
  const records = (await hub.audit()).filter((r) => r.event === 'request');
  expect(records.map((r) => [r.result, r.exit])).toEqual(Array.from({ length: 8 }, () => ['damaged', 4]));
}, 180_000);

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
