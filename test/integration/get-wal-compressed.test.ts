// Barman's get-wal options that send compressed bytes: -z/--gzip, -j/--bzip2
// and --keep-compression, through the real OpenSSH client. Whatever is sent,
// it must decode to the segment asked for, and a file that does not is
// refused (exit 4) before a byte is sent, or never ends with exit 0.
import { execFile, spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { archivedPath, createServerDir, place, sha256, type Placed } from '../helpers/archive.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { rssMiB, sampleRss } from '../helpers/proc.js';
import { requireProgram } from '../helpers/programs.js';
import { createClientKey, sshArgs, sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture, type WalFixture } from '../helpers/wal-fixture.js';

let fixture: WalFixture;
let hub: Hub;
let standby: ClientKey;
let serverDir: string;
const stored: Record<string, Placed> = {};

const GZIP_MAGIC = Buffer.from('1f8b08', 'hex');
const BZIP2_MAGIC = Buffer.from('425a68', 'hex');

beforeAll(async () => {
  fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  hub = await startHub({ extraToml: '[limits]\nmax_segment_size = "1024MiB"' });
  standby = await createClientKey(hub.dir, 'standby-a');
  await hub.loadKeys([{ key: standby, options: 'servers="pg1"' }]);
  serverDir = await createServerDir(hub.archive, 'pg1');
  const codecs = ['none', 'gzip', 'bzip2', 'zstd', 'xz', 'lz4'] as const;
  for (const [i, codec] of codecs.entries()) stored[codec] = await place(serverDir, fixture.segments[i]!, { codec });
}, 120_000);

afterAll(async () => {
  await hub?.stop();
});

interface Fetched {
  readonly status: number;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** Whole stdout (a 16 MiB segment, compressed or not), as a restore_command would write it to %p. */
function fetch(command: string): Promise<Fetched> {
  const ssh = requireProgram('ssh', 'openssh-client');
  return new Promise((resolve) => {
    execFile(ssh, [...sshArgs(hub, standby), command], { encoding: 'buffer', maxBuffer: 64 << 20, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? Number((error as { code?: number }).code) : 0, stdout, stderr: stderr.toString() });
    });
  });
}

function bunzip2(bytes: Buffer): Buffer {
  const result = spawnSync(requireProgram('bzip2', 'bzip2'), ['-dc'], { input: bytes, maxBuffer: 64 << 20 });
  if (result.status !== 0) throw new Error(`bzip2 -dc failed: ${result.stderr.toString()}`);
  return result.stdout;
}

describe('get-wal -z / --gzip', () => {
  it.each(['none', 'zstd', 'bzip2', 'xz', 'lz4'])('sends a %s-stored segment gzip-compressed, decoding to the segment', async (codec) => {
    const placed = stored[codec]!;
    const result = await fetch(`get-wal -z pg1 ${placed.name}`);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.subarray(0, 3)).toEqual(GZIP_MAGIC);
    expect(result.stdout.length).toBeLessThan(placed.size);
    expect(sha256(gunzipSync(result.stdout))).toBe(placed.sha256);
  });

  it.each(['-z', '-x', '--gzip'])('sends a gzip-stored segment as stored with %s', async (option) => {
    const placed = stored.gzip!;
    const result = await fetch(`get-wal ${option} pg1 ${placed.name}`);
    expect(result.status, result.stderr).toBe(0);
    expect(sha256(result.stdout)).toBe(sha256(await readFile(placed.path)));
  });
});

describe('get-wal -j / --bzip2', () => {
  it.each(['none', 'gzip', 'zstd'])('sends a %s-stored segment bzip2-compressed, decoding to the segment', async (codec) => {
    const placed = stored[codec]!;
    const result = await fetch(`get-wal --bzip2 pg1 ${placed.name}`);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.subarray(0, 3)).toEqual(BZIP2_MAGIC);
    expect(sha256(bunzip2(result.stdout))).toBe(placed.sha256);
  });

  it('sends a bzip2-stored segment as stored', async () => {
    const placed = stored.bzip2!;
    const result = await fetch(`get-wal -j pg1 ${placed.name}`);
    expect(result.status, result.stderr).toBe(0);
    expect(sha256(result.stdout)).toBe(sha256(await readFile(placed.path)));
  });
});

describe('get-wal --keep-compression', () => {
  it.each(['gzip', 'bzip2', 'zstd', 'xz', 'lz4'])('sends a %s-stored segment exactly as stored', async (codec) => {
    const placed = stored[codec]!;
    const result = await fetch(`get-wal --keep-compression pg1 ${placed.name}`);
    expect(result.status, result.stderr).toBe(0);
    expect(sha256(result.stdout)).toBe(sha256(await readFile(placed.path)));
  });

  it('sends a plain segment plain', async () => {
    const result = await fetch(`get-wal --keep-compression pg1 ${stored.none!.name}`);
    expect(result.status, result.stderr).toBe(0);
    expect(sha256(result.stdout)).toBe(stored.none!.sha256);
  });

  it('sends a compressed history file as stored', async () => {
    const placed = await place(serverDir, fixture.history, { codec: 'gzip' });
    const result = await fetch(`get-wal --keep-compression pg1 ${basename(fixture.history)}`);
    expect(result.status, result.stderr).toBe(0);
    expect(sha256(result.stdout)).toBe(sha256(await readFile(placed.path)));
  });
});

describe('stored bytes are checked before they are sent', () => {
  it.each(['--keep-compression', '-z'])(
    'refuses with %s a gzip file whose payload is another segment, before sending a byte',
    async (option) => {
      const wanted = '000000010000000000000077';
      const path = archivedPath(serverDir, wanted);
      await place(serverDir, fixture.segments[2]!, { codec: 'gzip', name: wanted });
      const result = await fetch(`get-wal ${option} pg1 ${wanted}`);
      expect(result.status).toBe(4);
      expect(result.stdout.length).toBe(0);
      expect(result.stderr).toMatch(new RegExp(`^walhub: archived file is damaged: the first page is at 0/[0-9A-F]+, the name says 0/77000000 \\(pg1 ${wanted}\\)\\n$`));
      expect((await readFile(path)).subarray(0, 3)).toEqual(GZIP_MAGIC);
    },
  );

  it('never ends a truncated stored file with exit 0', async () => {
    const wanted = '000000010000000000000078';
    await place(serverDir, fixture.segments[0]!, { codec: 'bzip2', name: wanted });
    const path = archivedPath(serverDir, wanted);
    const whole = await readFile(path);
    await writeFile(path, whole.subarray(0, Math.floor(whole.length * 0.7)));
    const kept = await fetch(`get-wal --keep-compression pg1 ${wanted}`);
    expect(kept.status).toBe(4);
    const asBzip2 = await fetch(`get-wal -j pg1 ${wanted}`);
    expect(asBzip2.status).toBe(4);
  });

  it('refuses a gzip file with an endless header (a 9 MiB file name) without holding it: exit 4, nothing sent', async () => {
    const wanted = '000000010000000000000079';
    // gzip with FNAME: zlib reads the name to its NUL and decodes nothing meanwhile.
    const header = Buffer.from([0x1f, 0x8b, 0x08, 0x08, 0, 0, 0, 0, 0, 0xff]);
    const name = Buffer.alloc(9 * 1024 * 1024, 0x61);
    const body = gzipSync(await readFile(fixture.segments[0]!)).subarray(10);
    await place(serverDir, fixture.segments[0]!, { name: wanted });
    await writeFile(archivedPath(serverDir, wanted), Buffer.concat([header, name, Buffer.from([0]), body]));
    const result = await fetch(`get-wal --keep-compression pg1 ${wanted}`);
    expect(result.status).toBe(4);
    expect(result.stdout.length).toBe(0);
    expect(result.stderr).toBe(`walhub: archived file is damaged: its first 8 MiB decode to nothing that can be checked (pg1 ${wanted})\n`);
  });
});

describe('get-wal -o', () => {
  it('is refused with exit 2 and a line saying it would write on the hub', async () => {
    const result = await sshExec(hub, standby, `get-wal -o /tmp pg1 ${stored.none!.name}`);
    expect(result.status).toBe(2);
    expect(result.bytes).toBe(0);
    expect(result.stderr).toBe(
      `walhub: --output-directory (-o) is refused: it would write files on the hub; walhub only sends WAL to stdout (redirect it on the standby: get-wal SERVER WAL_NAME > FILE)\n`,
    );
  });
});

const GIB = 1024 * 1024 * 1024;

/**
 * A 1 GiB segment as a cluster made with --wal-segsize=1024 starts one: a real
 * page 0 with its segment size and address patched for 000000010000000000000001,
 * then zero pages (what PostgreSQL leaves after a switch). Stored gzip-compressed.
 */
async function writeGiantSegment(path: string): Promise<void> {
  const page0 = Buffer.from((await readFile(fixture.segments[0]!)).subarray(0, 8192));
  page0.writeBigUInt64LE(1n * BigInt(GIB), 8); // xlp_pageaddr: segment 1 of 1 GiB segments
  page0.writeUInt32LE(GIB, 32); // xlp_seg_size
  page0.fill(0, 40); // nothing after the long header but zeros: no record points outside this file
  const zeros = Buffer.alloc(8 * 1024 * 1024);
  async function* pages() {
    yield page0;
    yield zeros.subarray(0, zeros.length - page0.length);
    for (let sent = zeros.length; sent < GIB; sent += zeros.length) yield zeros;
  }
  await mkdir(dirname(path), { recursive: true });
  await pipeline(Readable.from(pages()), createGzip({ level: 1 }), createWriteStream(path));
}

describe('memory stays flat whatever is sent', () => {
  it('sends a 1 GiB segment with -z (stored), --keep-compression and -j (decoded, re-encoded) without growing with the segment', async () => {
    const name = '000000010000000000000001';
    const path = archivedPath(serverDir, name);
    await writeGiantSegment(path);
    const storedSha = sha256(await readFile(path));
    const pid = hub.process.pid!;
    const idle = await rssMiB(pid);
    const sampler = sampleRss(pid);
    try {
      const plain = await sshExec(hub, standby, `get-wal pg1 ${name}`, { timeoutMs: 240_000 });
      expect(plain).toMatchObject({ status: 0, bytes: GIB });
      for (const option of ['-z', '--keep-compression']) {
        const kept = await sshExec(hub, standby, `get-wal ${option} pg1 ${name}`, { timeoutMs: 240_000 });
        expect(kept, option).toMatchObject({ status: 0, sha256: storedSha });
      }
      const asBzip2 = await sshExec(hub, standby, `get-wal -j pg1 ${name}`, { timeoutMs: 240_000 });
      expect(asBzip2.status, asBzip2.stderr).toBe(0);
      expect(asBzip2.stdout.subarray(0, 3)).toEqual(BZIP2_MAGIC);
    } finally {
      sampler.stop();
    }
    const growth = sampler.peak() - idle;
    console.log(`1 GiB segment plain, -z, --keep-compression, -j: hub RSS ${idle.toFixed(1)} MiB idle, peak ${sampler.peak().toFixed(1)} MiB`);
    // Buffers in flight (a few MiB per stage, 8 MiB held at most before page 0), not the segment.
    expect(growth).toBeLessThan(100);
  }, 600_000);
});

describe('the audit record', () => {
  it('names the stored compression, and the options in the command', async () => {
    await fetch(`get-wal -z pg1 ${stored.zstd!.name}`);
    const records = (await hub.audit()).filter((r) => r.event === 'request' && r.command === `get-wal -z pg1 ${stored.zstd!.name}`);
    expect(records.at(-1)).toMatchObject({ result: 'ok', exit: 0, compression: 'zstd' });
  });
});
