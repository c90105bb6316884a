// The readahead cache decodes a zstd segment into one block of memory, and
// reuses the block of an entry it evicts for the next segment (wal-cache.ts).
// A block written again while someone still reads it would send a standby
// another segment's bytes: here two standbys replay one server at once
// through a cache of two segments, so that blocks are evicted while the other
// standby may be streaming them, while a third stops reading a cached
// segment for as long, and a fourth goes away in the middle of one. Every
// segment must arrive byte for byte, and the log must show that blocks were
// in fact reused.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { connectRaw, fetchHashed } from '../helpers/raw-client.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

const MIB = 1024 * 1024;
let hub: Hub;
let standby: ClientKey;
let segments: Placed[];

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { standby } } = await startHubWithStandbys(
    { standby: 'servers="pg1"' },
    { extraToml: '[cache]\nmemory = "32MiB"\nreadahead = 2\n' },
  ));
  const dir = await createServerDir(hub.archive, 'pg1');
  segments = await Promise.all(fixture.segments.map((segment) => place(dir, segment, { codec: 'zstd' })));
});

afterAll(async () => {
  await hub?.stop();
});

/** Fetches every segment in order through one ControlMaster, as a standby catching up; the hashes that differ, by name. */
async function replay(id: string): Promise<string[]> {
  const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${join(hub.dir, `mux-${id}`)}`, '-o', 'ControlPersist=30'];
  const wrong: string[] = [];
  try {
    for (const segment of segments) {
      const result = await sshExec(hub, standby, `get-wal pg1 ${segment.name}`, { extra: mux });
      if (result.status !== 0 || result.sha256 !== segment.sha256) wrong.push(`${segment.name}: exit ${result.status}, ${result.stderr.trim()}`);
    }
  } finally {
    await sshExec(hub, standby, undefined, { extra: [...mux, '-O', 'exit'] });
  }
  return wrong;
}

/** A fetch over a raw ssh2 connection that stops reading once 1 MiB has arrived. */
async function pausedFetch(name: string) {
  const client = await connectRaw(hub, standby);
  let paused = false;
  const fetch = await fetchHashed(client, `get-wal pg1 ${name}`, (received, channel) => {
    if (received >= MIB && !paused) {
      paused = true;
      channel.pause();
    }
  });
  await expect.poll(() => paused, { timeout: 10_000 }).toBe(true);
  return { client, fetch };
}

it('reuses the blocks of evicted segments and never sends a standby bytes written over', async () => {
  expect(segments.length).toBeGreaterThanOrEqual(6);
  // The first segment makes the second cached (the connection ends, and its chain with it).
  const first = await sshExec(hub, standby, `get-wal pg1 ${segments[0]!.name}`);
  expect(first.sha256).toBe(segments[0]!.sha256);
  await hub.waitForLog((l) => l.msg === 'readahead' && l.wal === segments[1]!.name && l.outcome === 'cached', 30_000);

  // A standby that stops reading a cached segment, its entry pinned, while two others replay everything past it.
  const slow = await pausedFetch(segments[1]!.name);
  const since = hub.logLines.length;
  try {
    const [a, b] = await Promise.all([replay('a'), replay('b')]);
    expect(a).toEqual([]);
    expect(b).toEqual([]);
    slow.fetch.channel.resume();
    expect(await slow.fetch.done).toEqual({ status: 0, bytes: segments[1]!.size, sha256: segments[1]!.sha256 });
  } finally {
    slow.client.end();
  }

  // One that goes away in the middle of a cached segment, with the rest of it in flight; then a replay after it.
  // The fetch before it keeps its connection: the chain of a connection that
  // closed before readahead got to it (busy with the slow standby's) is dropped.
  const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${join(hub.dir, 'mux-next')}`, '-o', 'ControlPersist=30'];
  expect((await sshExec(hub, standby, `get-wal pg1 ${segments[2]!.name}`, { extra: mux })).sha256).toBe(segments[2]!.sha256);
  const next = segments[3]!;
  await hub.waitForLog((l) => l.msg === 'readahead' && l.wal === next.name && l.outcome === 'cached' && hub.logLines.indexOf(l) >= since, 30_000);
  await sshExec(hub, standby, undefined, { extra: [...mux, '-O', 'exit'] });
  const quitter = await pausedFetch(next.name);
  quitter.client.end();
  await expect
    .poll(async () => (await hub.audit()).find((r) => r.event === 'request' && r.wal === next.name && r.result !== 'ok'), { timeout: 10_000 })
    .toMatchObject({ cache: 'hit', result: 'aborted' });
  expect(await replay('c')).toEqual([]);

  // How many of the replays' requests were hits depends on the load (readahead
  // gives way to requests); the paused and the quitting fetches always are.
  const records = (await hub.audit()).filter((r) => r.event === 'request' && r.server === 'pg1');
  expect(records.filter((r) => r.cache === 'hit').length).toBeGreaterThanOrEqual(2);
  const cached = hub.logLines.filter((l) => l.msg === 'readahead' && l.outcome === 'cached');
  expect(cached.filter((l) => l.memory === 'reused').length).toBeGreaterThan(0);
  expect(cached.filter((l) => l.memory === 'new').length).toBeGreaterThan(0);
});
