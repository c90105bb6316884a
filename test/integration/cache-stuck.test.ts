// A client that stops reading a segment served from the readahead cache
// leaves the rest of a write inside ssh2 (what its window did not take) for
// as long as its channel lives, after the stall timeout has ended the
// transfer: for zstd a view of the segment's whole block, which the cache
// counts as retained until it is collected; for every other compression a
// chunk of the entry. The stall therefore also ends that connection, so a
// hostile key that stalls cached segments one after another, in any
// compression, can neither grow the hub past `[cache] memory` nor hold the
// cache's room from the other standbys.
import { join } from 'node:path';
import type ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createServerDir, place, type Codec, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { rssMiB } from '../helpers/proc.js';
import { connectRaw, fetchHashed } from '../helpers/raw-client.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

const BUDGET_MIB = 24;
const SERVERS = ['pg1', 'pg2'] as const;
const STALL_REASON = 'a stalled transfer left data in its channel';

describe.each<Codec>(['zstd', 'gzip'])('stalled cache hits, %s', (codec) => {
  let hub: Hub;
  let standby: ClientKey;
  let hostile: ClientKey;
  const segments = new Map<string, Placed[]>();
  const stuckClients: ssh2.Client[] = [];

  beforeAll(async () => {
    const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
    ({ hub, keys: { standby, hostile } } = await startHubWithStandbys(
      { standby: 'servers="pg1,pg2"', hostile: 'servers="pg1,pg2"' },
      // Room for one segment and a half, one segment read ahead; a stalled transfer ends after 1 s.
      { extraToml: `[cache]\nmemory = "${BUDGET_MIB}MiB"\nreadahead = 1\n[limits]\nstall_timeout = "1s"\n` },
    ));
    for (const server of SERVERS) {
      const dir = await createServerDir(hub.archive, server);
      segments.set(server, await Promise.all(fixture.segments.map((segment) => place(dir, segment, { codec }))));
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

  /** Fetches `segment` over a connection that stops reading after the first bytes and would stay open; resolves once walhub closed it. */
  async function stallOn(server: string, segment: Placed): Promise<void> {
    const client = await connectRaw(hub, hostile);
    stuckClients.push(client);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    let paused = false;
    await fetchHashed(client, `get-wal ${server} ${segment.name}`, (_received, channel) => {
      if (!paused) channel.pause();
      paused = true;
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`walhub did not end the connection stalled on ${segment.name} within 15 s`)), 15_000);
    });
    await Promise.race([closed, late]).finally(() => clearTimeout(timer));
  }

  it('ends the connection of each stall, stays within the budget, and keeps the room for the other standbys', async () => {
    const pid = hub.process.pid!;
    const [first] = SERVERS;
    // The first fetch's chain reads segment 1 ahead, perhaps before the loop's
    // first fetch; a chain finding it cached already logs nothing.
    const sinceFirst = hub.logLines.length;
    await fetchOk(first, segments.get(first)![0]!);
    const baseline = await rssMiB(pid);
    let stalls = 0;
    for (const server of SERVERS) {
      const list = segments.get(server)!;
      for (let i = 1; i < list.length; i++) {
        const since = server === first && i === 1 ? sinceFirst : hub.logLines.length;
        await fetchOk(server, list[i - 1]!);
        // The chain's one segment: cached, or no room for it.
        await hub.waitForLog((l) => l.msg === 'readahead' && l.wal === list[i]!.name && l.server === server && hub.logLines.indexOf(l) >= since, 30_000);
        await stallOn(server, list[i]!);
        stalls++;
      }
    }
    const grown = (await rssMiB(pid)) - baseline;
    const audit = await hub.audit();
    const stalled = audit.filter((r) => r.event === 'request' && r.key_name === 'hostile');
    console.log(`${codec}: ${stalls} stalled transfers (${stalled.filter((r) => r.cache === 'hit').length} cache hits); hub RSS grew ${grown.toFixed(1)} MiB`);
    expect(stalls).toBeGreaterThanOrEqual(10);
    expect(stalled).toHaveLength(stalls);
    for (const record of stalled) expect(record).toMatchObject({ result: 'aborted', exit: 5, error: 'stalled: no data taken for 1 s' });
    expect(stalled.filter((r) => r.cache === 'hit').length).toBeGreaterThanOrEqual(1);
    // Each stalled connection was ended by walhub, and says why.
    const conns = new Set(stalled.map((r) => r.conn));
    const ended = audit.filter((r) => r.event === 'disconnect' && conns.has(r.conn));
    expect(ended.map((r) => r.reason)).toEqual([...conns].map(() => STALL_REASON));
    // Held past the stalls, each would keep a segment: about 16 MiB x stalls (gzip +241 MiB, zstd +254 MiB measured).
    expect(grown).toBeLessThan(BUDGET_MIB + 4 * 16);

    // The room is back for the standby at once: its chain caches again.
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
});
