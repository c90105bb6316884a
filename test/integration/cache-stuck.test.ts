// A client that stops reading a segment served from the readahead cache
// leaves a view of the segment's block inside ssh2 (the rest of a write its
// window did not take) for as long as its channel lives, after the stall
// timeout has ended the transfer. The cache must count that block until it
// is collected: a hostile key that does so segment after segment must not
// make walhub decode into new memory each time, past `[cache] memory`. Once
// such clients are gone, readahead must get its room back.
import { join } from 'node:path';
import type ssh2 from 'ssh2';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { rssMiB } from '../helpers/proc.js';
import { connectRaw, fetchHashed } from '../helpers/raw-client.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

const MIB = 1024 * 1024;
const BUDGET_MIB = 16;
const SERVERS = ['pg1', 'pg2'] as const;
let hub: Hub;
let standby: ClientKey;
let hostile: ClientKey;
const segments = new Map<string, Placed[]>();
const stuckClients: ssh2.Client[] = [];

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { standby, hostile } } = await startHubWithStandbys(
    { standby: 'servers="pg1,pg2"', hostile: 'servers="pg1,pg2"' },
    // One segment's room, one segment read ahead; a stalled transfer ends after 1 s.
    { extraToml: `[cache]\nmemory = "${BUDGET_MIB}MiB"\nreadahead = 1\n[limits]\nstall_timeout = "1s"\n` },
  ));
  for (const server of SERVERS) {
    const dir = await createServerDir(hub.archive, server);
    segments.set(server, await Promise.all(fixture.segments.map((segment) => place(dir, segment, { codec: 'zstd' }))));
  }
});

afterAll(async () => {
  for (const client of stuckClients) client.end();
  await hub?.stop();
});

const muxOf = (server: string) => ['-o', 'ControlMaster=auto', '-o', `ControlPath=${join(hub.dir, `mux-${server}`)}`, '-o', 'ControlPersist=60'];

/** A standby's fetch through its ControlMaster: its chain reads the next segment ahead. */
async function fetchOk(server: string, segment: Placed): Promise<void> {
  const result = await sshExec(hub, standby, `get-wal ${server} ${segment.name}`, { extra: muxOf(server) });
  expect([result.status, result.sha256]).toEqual([0, segment.sha256]);
}

/** Fetches `segment` over a connection that stops reading after the first bytes and stays open. */
async function stallOn(server: string, segment: Placed): Promise<void> {
  const client = await connectRaw(hub, hostile);
  stuckClients.push(client);
  let paused = false;
  await fetchHashed(client, `get-wal ${server} ${segment.name}`, (_received, channel) => {
    if (!paused) channel.pause();
    paused = true;
  });
  await expect
    .poll(async () => (await hub.audit()).find((r) => r.event === 'request' && r.server === server && r.wal === segment.name && r.result !== 'ok'), {
      timeout: 15_000,
    })
    .toBeDefined();
}

it('counts blocks that stuck channels hold against the budget, and gets the room back once they are gone', async () => {
  const pid = hub.process.pid!;
  const [first] = SERVERS;
  await fetchOk(first, segments.get(first)![0]!);
  const baseline = await rssMiB(pid);
  let stalls = 0;
  for (const server of SERVERS) {
    const list = segments.get(server)!;
    for (let i = 1; i < list.length; i++) {
      const since = hub.logLines.length;
      await fetchOk(server, list[i - 1]!);
      // The chain's one segment: cached, or no room for it.
      await hub.waitForLog((l) => l.msg === 'readahead' && l.wal === list[i]!.name && l.server === server && hub.logLines.indexOf(l) >= since, 30_000);
      await stallOn(server, list[i]!);
      stalls++;
    }
  }
  const grown = (await rssMiB(pid)) - baseline;
  const records = (await hub.audit()).filter((r) => r.event === 'request' && r.cache === 'hit' && r.result !== 'ok');
  console.log(`${stalls} stalled transfers (${records.length} of them cache hits); hub RSS grew ${grown.toFixed(1)} MiB`);
  // Without the count, each stall keeps 16 MiB more: about 16 MiB x stalls.
  expect(stalls).toBeGreaterThanOrEqual(10);
  expect(grown).toBeLessThan(BUDGET_MIB + 4 * 16);
  // The first stall held a cached segment's block; after that there was no room to read ahead.
  expect(records.length).toBeGreaterThanOrEqual(1);
  expect(hub.logLines.some((l) => l.msg === 'readahead' && l.outcome === 'no_room')).toBe(true);

  // The hostile connections close: their blocks are collected, and readahead decodes again.
  for (const client of stuckClients.splice(0)) client.end();
  const since = hub.logLines.length;
  const list = segments.get(first)!;
  const deadline = Date.now() + 30_000;
  let round = 0;
  while (!hub.logLines.slice(since).some((l) => l.msg === 'readahead' && l.outcome === 'cached') && Date.now() < deadline) {
    await fetchOk(first, list[round++ % (list.length - 1)]!);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  expect(hub.logLines.slice(since).filter((l) => l.msg === 'readahead').map((l) => l.outcome)).toContain('cached');
  for (const server of SERVERS) await sshExec(hub, standby, undefined, { extra: [...muxOf(server), '-O', 'exit'] });
});
