// The readahead cache through the real hub and the real OpenSSH client: after
// a segment is served, the next ones are decoded in the background, and their
// requests are answered from memory, byte for byte, only while the file on
// disk is still the one decoded. Whatever readahead meets (a replaced or
// moved file, a damaged one, a symlink out, a client gone) ends the same way
// a request would have, or opens nothing at all.
import { mkdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { archivedPath, createServerDir, encode, place, sha256 } from '../helpers/archive.js';
import { startFifoWitness, type FifoWitness } from '../helpers/fifo-witness.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { connectRaw, runRaw } from '../helpers/raw-client.js';
import { BARMAN_WRITERS, WRITER_COMPRESSION, writeAsBarman } from '../helpers/python-writers.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture, type WalFixture } from '../helpers/wal-fixture.js';

const EXPECTED_COMPRESSION: Record<string, string> = { none: 'none', ...WRITER_COMPRESSION };
const FORMATS = ['none', ...BARMAN_WRITERS] as const;
const UNDECODABLE = ['truncated-zstd', 'overlong-zstd'] as const;
const SERVERS = [...FORMATS, 'replaced', 'moved', 'damaged', ...UNDECODABLE, 'gone', 'escape', 'waits', 'jumps1', 'jumps2', 'jumps3'];

let fixture: WalFixture;
let hub: Hub;
let standby: ClientKey;
const witnesses: FifoWitness[] = [];
const nameOf = (path: string) => path.split('/').pop()!;
const segment = (index: number) => fixture.segments[index]!;

beforeAll(async () => {
  fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  // Debug: the readahead line of a chain that reached a missing segment is a debug line.
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys(
    { 'standby-a': `servers="${SERVERS.join(',')}"` },
    { env: { WALHUB_LOG_LEVEL: 'debug' } },
  ));
  // Three consecutive segments in each format; the fourth is missing, where readahead stops.
  for (const format of FORMATS) {
    const serverDir = await createServerDir(hub.archive, format);
    for (const source of fixture.segments.slice(0, 3)) {
      if (format === 'none') await place(serverDir, source);
      else {
        const target = archivedPath(serverDir, nameOf(source));
        await mkdir(dirname(target), { recursive: true });
        await writeAsBarman(format, source, target);
      }
    }
  }
});

afterAll(async () => {
  for (const witness of witnesses) witness.stop();
  await hub?.stop();
});

/** The readahead line for `wal` logged after the first `since` lines of the program log. */
function readaheadOf(server: string, wal: string, since = 0): Promise<Record<string, unknown>> {
  return hub.waitForLog((l) => l.msg === 'readahead' && l.server === server && l.wal === wal && hub.logLines.indexOf(l) >= since, 30_000);
}

async function requestRecord(server: string, wal: string): Promise<Record<string, unknown> | undefined> {
  return (await hub.audit()).findLast((r) => r.event === 'request' && r.server === server && r.wal === wal);
}

async function fetchOk(server: string, source: string, extra: readonly string[] = []): Promise<void> {
  const result = await sshExec(hub, standby, `get-wal ${server} ${nameOf(source)}`, { extra });
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  expect(result.sha256).toBe(sha256(await readFile(source)));
}

describe('byte-exact through the cache', () => {
  it.each(FORMATS)('%s: the segments read ahead are served from memory, byte for byte', async (format) => {
    // One connection for all the fetches, as a standby with ControlMaster: its readahead chain lives as long.
    const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${join(hub.dir, `mux-${format}`)}`, '-o', 'ControlPersist=30'];
    await fetchOk(format, segment(0), mux);
    expect(await requestRecord(format, nameOf(segment(0)))).toMatchObject({ result: 'ok', cache: 'miss' });
    for (const index of [1, 2]) expect(await readaheadOf(format, nameOf(segment(index)))).toMatchObject({ outcome: 'cached' });
    // The chain ends at the first segment that is not there.
    expect(await readaheadOf(format, nameOf(segment(3)))).toMatchObject({ outcome: 'missing' });
    for (const index of [1, 2]) {
      await fetchOk(format, segment(index), mux);
      expect(await requestRecord(format, nameOf(segment(index)))).toMatchObject({
        result: 'ok',
        exit: 0,
        cache: 'hit',
        compression: EXPECTED_COMPRESSION[format],
        file: `wals/${nameOf(segment(index)).slice(0, 16)}/${nameOf(segment(index))}`,
        bytes: fixture.segmentSize,
      });
    }
    await sshExec(hub, standby, undefined, { extra: [...mux, '-O', 'exit'] });
  });

  it('says nothing of the cache for requests it could not serve (history file, --partial, -z, --keep-compression)', async () => {
    const commands = [
      `get-wal zstd ${nameOf(segment(1))} --keep-compression`,
      `get-wal -z zstd ${nameOf(segment(1))}`,
      `get-wal --partial zstd ${nameOf(segment(1))}`,
    ];
    for (const command of commands) expect((await sshExec(hub, standby, command)).status).toBe(0);
    const records = (await hub.audit()).filter((r) => r.event === 'request' && commands.includes(r.command as string));
    expect(records).toHaveLength(3);
    for (const record of records) expect(record).not.toHaveProperty('cache');
  });
});

describe('never stale', () => {
  it('serves a file replaced after it was read ahead as it is now (audit: miss)', async () => {
    const serverDir = await createServerDir(hub.archive, 'replaced');
    await place(serverDir, segment(0), { codec: 'zstd' });
    const next = await place(serverDir, segment(1), { codec: 'zstd' });
    await fetchOk('replaced', segment(0));
    expect(await readaheadOf('replaced', next.name)).toMatchObject({ outcome: 'cached' });
    // As an administrator re-archiving it would: written beside, renamed over (a new inode).
    await writeFile(`${next.path}.new`, await encode(await readFile(segment(1)), 'gzip'));
    await rename(`${next.path}.new`, next.path);
    await fetchOk('replaced', segment(1));
    expect(await requestRecord('replaced', next.name)).toMatchObject({ result: 'ok', cache: 'miss', compression: 'gzip' });
  });

  it('serves a file rewritten in place after it was read ahead as it is now: damaged now, exit 4', async () => {
    const serverDir = join(hub.archive, 'replaced');
    const third = await place(serverDir, segment(2));
    const since = hub.logLines.length;
    await fetchOk('replaced', segment(1));
    expect(await readaheadOf('replaced', third.name, since)).toMatchObject({ outcome: 'cached' });
    const bytes = await readFile(third.path);
    // Page 3's address now says another place: the same inode, the same size.
    bytes.writeBigUInt64LE(0x1234_0000n, 3 * 8192 + 8);
    await writeFile(third.path, bytes);
    const result = await sshExec(hub, standby, `get-wal replaced ${third.name}`);
    expect(result.status).toBe(4);
    expect(result.stderr).toMatch(/^walhub: archived file is damaged: page at .* says it is at 0\/12340000 \(replaced /);
    expect(await requestRecord('replaced', third.name)).toMatchObject({ result: 'damaged', cache: 'miss' });
  });

  it('serves a file Barman moved from incoming/ to wals/ after it was read ahead from where it is now (audit: miss)', async () => {
    const serverDir = await createServerDir(hub.archive, 'moved');
    await place(serverDir, segment(0));
    const incoming = await place(serverDir, segment(1), { where: 'incoming' });
    await fetchOk('moved', segment(0));
    expect(await readaheadOf('moved', incoming.name)).toMatchObject({ outcome: 'cached', file: `incoming/${incoming.name}` });
    const archived = archivedPath(serverDir, incoming.name);
    await mkdir(dirname(archived), { recursive: true });
    await rename(incoming.path, archived);
    await fetchOk('moved', segment(1));
    expect(await requestRecord('moved', incoming.name)).toMatchObject({
      result: 'ok',
      cache: 'miss',
      file: `wals/${incoming.name.slice(0, 16)}/${incoming.name}`,
    });
  });
});

it('has a request for the segment being read ahead wait for that decode, not start a second one', async () => {
  const serverDir = await createServerDir(hub.archive, 'waits');
  await place(serverDir, segment(0));
  // bzip2 takes about a second: the next request arrives while it decodes.
  const next = await place(serverDir, segment(1), { codec: 'bzip2' });
  const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${join(hub.dir, 'mux-waits')}`, '-o', 'ControlPersist=30'];
  await fetchOk('waits', segment(0), mux);
  await fetchOk('waits', segment(1), mux);
  await sshExec(hub, standby, undefined, { extra: [...mux, '-O', 'exit'] });
  expect(await requestRecord('waits', next.name)).toMatchObject({ result: 'ok', cache: 'hit', compression: 'bzip2' });
  expect(hub.logLines.filter((l) => l.msg === 'readahead' && l.server === 'waits' && l.wal === next.name)).toMatchObject([{ outcome: 'cached' }]);
});

it('reports a damaged segment read ahead with exit 4 and the same message as without readahead', async () => {
  const serverDir = await createServerDir(hub.archive, 'damaged');
  await place(serverDir, segment(0));
  const damaged = await place(serverDir, segment(1));
  const bytes = await readFile(damaged.path);
  bytes.writeBigUInt64LE(0x5678_0000n, 5 * 8192 + 8);
  await writeFile(damaged.path, bytes);
  // First asked for cold: nothing was read ahead yet.
  const cold = await sshExec(hub, standby, `get-wal damaged ${damaged.name}`);
  expect(cold.status).toBe(4);
  await fetchOk('damaged', segment(0));
  const line = await readaheadOf('damaged', damaged.name);
  expect(line).toMatchObject({ level: 40, outcome: 'damaged' });
  expect(line.error).toMatch(/^archived file is damaged: page at .* says it is at 0\/56780000$/);
  const after = await sshExec(hub, standby, `get-wal damaged ${damaged.name}`);
  expect(after.status).toBe(4);
  expect(after.stderr).toBe(cold.stderr);
  expect(after.bytes).toBe(0);
  expect(await requestRecord('damaged', damaged.name)).toMatchObject({ result: 'damaged', exit: 4, cache: 'miss' });
});

// A zstd segment read ahead is decoded whole in the worker, into the cache's
// memory: the worker's own errors must end as a damaged outcome, the hub up.
it.each(UNDECODABLE)('reports a %s segment read ahead as damaged, stays up, and its request is exit 4 as without readahead', async (server) => {
  const serverDir = await createServerDir(hub.archive, server);
  await place(serverDir, segment(0));
  const source = await readFile(segment(1));
  const compressed =
    server === 'truncated-zstd' ? (await encode(source, 'zstd')).subarray(0, 100_000) : await encode(Buffer.concat([source, Buffer.alloc(8192)]), 'zstd');
  const target = archivedPath(serverDir, nameOf(segment(1)));
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, compressed);
  const cold = await sshExec(hub, standby, `get-wal ${server} ${nameOf(segment(1))}`);
  expect(cold.status).toBe(4);
  await fetchOk(server, segment(0));
  const line = await readaheadOf(server, nameOf(segment(1)));
  expect(line).toMatchObject({ level: 40, outcome: 'damaged' });
  expect(line.error).toBe(server === 'truncated-zstd' ? 'the zstd stream ends in the middle of a frame' : `the file decodes to more than ${source.length} bytes`);
  const after = await sshExec(hub, standby, `get-wal ${server} ${nameOf(segment(1))}`);
  // How much of the file's start arrived before the error depends on timing; never a whole segment.
  expect([after.status, after.stderr]).toEqual([4, cold.stderr]);
  expect(after.bytes).toBeLessThanOrEqual(source.length);
  expect(await requestRecord(server, nameOf(segment(1)))).toMatchObject({ result: 'damaged', exit: 4, cache: 'miss' });
  await fetchOk(server, segment(0));
});

it('opens nothing more for a client that went away: the chain ends after the decode under way', async () => {
  const serverDir = await createServerDir(hub.archive, 'gone');
  await place(serverDir, segment(0));
  // bzip2 decodes slowly: the client has long left when this one is done.
  await place(serverDir, segment(1), { codec: 'bzip2' });
  const third = archivedPath(serverDir, nameOf(segment(2)));
  const witness = await startFifoWitness(third);
  witnesses.push(witness);
  // One connection per fetch, as restore_command without ControlMaster: it closes right after the exit status.
  await fetchOk('gone', segment(0));
  expect(await readaheadOf('gone', nameOf(segment(1)))).toMatchObject({ outcome: 'cached' });
  await new Promise((r) => setTimeout(r, 500));
  expect(hub.logLines.filter((l) => l.msg === 'readahead' && l.server === 'gone')).toHaveLength(1);
  expect(witness.opened()).toBe(false);
  await witness.openItOnce();
  expect(witness.opened()).toBe(true);
});

it('follows a standby that asked for another segment: the older chain ends after the decode under way', async () => {
  // The jump must land while segment 1 still decodes; on a loaded machine it may come too
  // late, which proves nothing either way: then the scenario runs again, in a new directory.
  for (let attempt = 1; ; attempt++) {
    const landed = await jumpWhileDecoding(`jumps${attempt}`);
    if (landed) {
      expect(landed.opened()).toBe(false);
      await landed.openItOnce();
      expect(landed.opened()).toBe(true);
      return;
    }
    if (attempt === 3) throw new Error('in 3 attempts the jump never came while segment 1 was still decoding: the machine is too loaded for this test');
  }
});

/**
 * A standby fetches segment 0 (its chain starts decoding segment 1, bzip2), then jumps to
 * segment 4; segment 2 is a witness of whether the older chain went on. The witness when
 * the jump was answered before segment 1's decode had ended, else undefined.
 */
async function jumpWhileDecoding(server: string): Promise<FifoWitness | undefined> {
  const serverDir = await createServerDir(hub.archive, server);
  await place(serverDir, segment(0));
  // bzip2 decodes slowly (about 400 ms here): the standby asks for segment 4 long before this one is done.
  await place(serverDir, segment(1), { codec: 'bzip2' });
  const witness = await startFifoWitness(archivedPath(serverDir, nameOf(segment(2))));
  witnesses.push(witness);
  for (const n of [3, 4, 5]) await place(serverDir, segment(n));
  const expected = new Map(await Promise.all([0, 3, 4].map(async (n) => [n, sha256(await readFile(segment(n)))] as const)));
  const fetch = async (client: ssh2.Client, n: number) => {
    const result = await runRaw(client, `get-wal ${server} ${nameOf(segment(n))}`);
    expect(result.status).toBe(0);
    expect(sha256(result.stdout)).toBe(expected.get(n));
  };
  const segment1Done = () => hub.logLines.some((l) => l.msg === 'readahead' && l.server === server && l.wal === nameOf(segment(1)));
  // Another standby has segments 4 and 5 read ahead: the jump below is a cache hit, served in
  // tens of milliseconds, so it lands while segment 1 still decodes.
  const other = await connectRaw(hub, standby);
  // One connection, as with ControlMaster: its chains live as long as it does. ssh2's client
  // asks for segment 4 the moment segment 0 has arrived; an ssh process would take longer to start.
  const jumper = await connectRaw(hub, standby);
  let inTime: boolean;
  try {
    await fetch(other, 3);
    expect(await readaheadOf(server, nameOf(segment(5)))).toMatchObject({ outcome: 'cached' });
    await fetch(jumper, 0);
    await fetch(jumper, 4);
    inTime = !segment1Done();
    expect(await requestRecord(server, nameOf(segment(4)))).toMatchObject({ result: 'ok', cache: 'hit' });
    expect(await readaheadOf(server, nameOf(segment(1)))).toMatchObject({ outcome: 'cached' });
    // The older chain's next step would open segment 2 at once; the connections stay open meanwhile.
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    other.end();
    jumper.end();
  }
  return inTime ? witness : undefined;
}

it('reads nothing outside the server directory: a symlink in wals/ leading out, as the next segment, is not opened', async () => {
  const serverDir = await createServerDir(hub.archive, 'escape');
  await place(serverDir, segment(0));
  const outside = join(hub.dir, 'elsewhere');
  await mkdir(outside, { recursive: true });
  const witness = await startFifoWitness(join(outside, nameOf(segment(1))));
  witnesses.push(witness);
  const link = archivedPath(serverDir, nameOf(segment(1)));
  await symlink(witness.path, link);
  await fetchOk('escape', segment(0));
  const line = await readaheadOf('escape', nameOf(segment(1)));
  expect(line).toMatchObject({ level: 40, outcome: 'error' });
  expect(line.error).toBe(`archive path wals/${nameOf(segment(1)).slice(0, 16)}/${nameOf(segment(1))} leads outside the server directory; refusing it`);
  const request = await sshExec(hub, standby, `get-wal escape ${nameOf(segment(1))}`);
  expect(request.status).toBe(5);
  expect(witness.opened()).toBe(false);
  await witness.openItOnce();
  expect(witness.opened()).toBe(true);
});
