// A zstd transfer lends the worker's decoded slots to the send path instead
// of copying them (src/archive/lent-chunks.ts). A slot written again while
// ssh2 still holds its bytes would send a standby bytes of another chunk, or
// of another standby's segment. Such a hold is what a standby that stops
// reading its channel makes: ssh2 keeps the part of a chunk beyond the SSH
// window until the standby grants more. (That a lane goes to the next
// transfer only once its last chunks are given back is proven in
// test/unit/zstd-decoder.test.ts, where the timing is in the test's hands.)
import { readFile, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { compress } from 'zstd-napi';
import { archivedPath, createServerDir, place, sha256, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { connectRaw, fetchHashed } from '../helpers/raw-client.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

const MIB = 1024 * 1024;
let hub: Hub;
let standby: ClientKey;
let segments: Placed[];
let tinyFrames: Placed;

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  // No cache: every fetch decodes, each through its own lane of the worker.
  ({ hub, keys: { standby } } = await startHubWithStandbys({ standby: 'servers="pg1"' }, { extraToml: '[cache]\nmemory = 0\n' }));
  const dir = await createServerDir(hub.archive, 'pg1');
  segments = await Promise.all(fixture.segments.slice(0, 4).map((segment) => place(dir, segment, { codec: 'zstd' })));
  // Valid zstd, oddly made: its first frames decode to a byte each, fewer than page 0's header needs.
  const original = await readFile(fixture.segments[4]!);
  const name = basename(fixture.segments[4]!);
  const frames = [0, 1, 2, 3].map((i) => compress(original.subarray(i, i + 1)));
  await writeFile(archivedPath(dir, name), Buffer.concat([...frames, compress(original.subarray(4))]));
  tinyFrames = { name, path: archivedPath(dir, name), codec: 'zstd', sha256: sha256(original), size: original.length };
});

afterAll(async () => {
  await hub?.stop();
});

it('a standby that stops reading its channel mid-segment, while three others fetch, gets its segment byte for byte', async () => {
  const [slowSegment, ...others] = segments;
  const client = await connectRaw(hub, standby);
  try {
    let stopped = false;
    const fetch = await fetchHashed(client, `get-wal pg1 ${slowSegment!.name}`, (received, channel) => {
      // Not read, its data fills ssh2's buffer: no more window goes to walhub.
      if (received >= 2 * MIB && !stopped) {
        stopped = true;
        channel.pause();
      }
    });
    await expect.poll(() => stopped, { timeout: 10_000 }).toBe(true);
    await new Promise((r) => setTimeout(r, 500));

    const fetched = await Promise.all(others.map((s) => sshExec(hub, standby, `get-wal pg1 ${s.name}`)));
    fetched.forEach((result, i) => {
      expect(result.status, result.stderr).toBe(0);
      expect(result.sha256).toBe(others[i]!.sha256);
    });

    fetch.channel.resume();
    expect(await fetch.done).toEqual({ status: 0, bytes: slowSegment!.size, sha256: slowSegment!.sha256 });
  } finally {
    client.end();
  }
});

it('serves a segment whose first zstd frames decode to a byte each (fewer than page 0 needs) byte for byte', async () => {
  const result = await sshExec(hub, standby, `get-wal pg1 ${tinyFrames.name}`);
  expect(result.status, result.stderr).toBe(0);
  expect(result.sha256).toBe(tinyFrames.sha256);
});
