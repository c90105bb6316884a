// The readahead cache under many servers at once stays within [cache] memory:
// by its own accounting (the walhub_cache_bytes gauge, sampled throughout),
// and by the hub's resident memory against the same load with the cache off.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, sha256 } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { rssMiB, sampleRss } from '../helpers/proc.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture, type WalFixture } from '../helpers/wal-fixture.js';

const SERVERS = ['pg1', 'pg2', 'pg3', 'pg4', 'pg5', 'pg6'];
const SEGMENTS = 5;
const MiB = 1024 * 1024;
/** Room for three 16 MiB segments (each reserved with 1/32 on top while it decodes). */
const BUDGET_MIB = 50;

let fixture: WalFixture;
const hubs: Hub[] = [];
const nameOf = (path: string) => path.split('/').pop()!;

beforeAll(async () => {
  fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
});

afterAll(async () => {
  for (const hub of hubs) await hub.stop();
});

async function startLoadedHub(cacheToml: string): Promise<{ hub: Hub; standby: ClientKey; metricsUrl: string }> {
  const { hub, keys } = await startHubWithStandbys({ 'standby-a': 'servers="*"' }, { extraToml: `[metrics]\nlisten = "127.0.0.1:0"\n${cacheToml}` });
  hubs.push(hub);
  for (const server of SERVERS) {
    const serverDir = await createServerDir(hub.archive, server);
    for (const source of fixture.segments.slice(0, SEGMENTS)) await place(serverDir, source, { codec: 'zstd' });
  }
  const listening = await hub.waitForLog((l) => l.msg === 'metrics listening');
  return { hub, standby: keys['standby-a'], metricsUrl: `http://127.0.0.1:${String(listening.port)}/metrics` };
}

/**
 * Every server's segments fetched in order, the six servers at once, each
 * over its own ControlMaster connection (so each readahead chain runs its full
 * depth): 6 x 4 segments read ahead would want 384 MiB. Returns the hub's peak RSS.
 */
async function replayAll(hub: Hub, standby: ClientKey): Promise<number> {
  const rss = sampleRss(hub.process.pid!);
  const mux = (server: string) => ['-o', 'ControlMaster=auto', '-o', `ControlPath=${join(hub.dir, `mux-${server}`)}`, '-o', 'ControlPersist=60'];
  try {
    await Promise.all(
      SERVERS.map(async (server) => {
        for (const source of fixture.segments.slice(0, SEGMENTS)) {
          const result = await sshExec(hub, standby, `get-wal ${server} ${nameOf(source)}`, { extra: mux(server) });
          expect(result.status).toBe(0);
          expect(result.sha256).toBe(sha256(await readFile(source)));
          // A standby replays a segment before asking for the next: the readahead runs meanwhile.
          await new Promise((r) => setTimeout(r, 300));
        }
      }),
    );
  } finally {
    rss.stop();
    for (const server of SERVERS) await sshExec(hub, standby, undefined, { extra: [...mux(server), '-O', 'exit'] });
  }
  return rss.peak();
}

function gauge(text: string, state: string): number {
  const match = new RegExp(`^walhub_cache_bytes\\{state="${state}"\\} (\\d+)$`, 'm').exec(text);
  if (!match) throw new Error(`walhub_cache_bytes{state="${state}"} missing from the metrics`);
  return Number(match[1]);
}

it('stays within its budget under six servers read ahead at once, by its own count and by RSS', async () => {
  const off = await startLoadedHub('[cache]\nmemory = 0\n');
  const idleOff = await rssMiB(off.hub.process.pid!);
  const peakOff = await replayAll(off.hub, off.standby);

  const on = await startLoadedHub(`[cache]\nmemory = "${BUDGET_MIB}MiB"\nreadahead = 4\n`);
  const idleOn = await rssMiB(on.hub.process.pid!);
  let maxHeld = 0;
  let scraping = true;
  const scraper = (async () => {
    while (scraping) {
      const text = await (await fetch(on.metricsUrl)).text();
      maxHeld = Math.max(maxHeld, gauge(text, 'cached') + gauge(text, 'decoding') + gauge(text, 'spare') + gauge(text, 'retained'));
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const peakOn = await replayAll(on.hub, on.standby);
  scraping = false;
  await scraper;

  const text = await (await fetch(on.metricsUrl)).text();
  const decodes = Object.fromEntries([...text.matchAll(/^walhub_readahead_decodes_total\{outcome="(\w+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
  const hits = Number(/^walhub_cache_requests_total\{result="hit"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  console.log(
    `readahead budget ${BUDGET_MIB} MiB: cache's own peak ${(maxHeld / MiB).toFixed(1)} MiB; hub RSS idle ${idleOn.toFixed(0)} -> peak ${peakOn.toFixed(0)} MiB with the cache, ` +
      `${idleOff.toFixed(0)} -> ${peakOff.toFixed(0)} MiB without; ${hits} hits; decodes ${JSON.stringify(decodes)}`,
  );
  expect(maxHeld).toBeGreaterThan(0);
  expect(maxHeld).toBeLessThanOrEqual(BUDGET_MIB * MiB);
  expect(decodes.cached).toBeGreaterThan(0);
  expect(hits).toBeGreaterThan(0);
  // The cache adds its budget at most, and the chunks it evicted until V8's next
  // full collection frees them: at the latest once 64 MiB more of buffers were
  // allocated (V8's soft limit for memory outside its heap). A cache ignoring its
  // budget would hold 6 x 4 segments here, 384 MiB.
  expect(peakOn).toBeLessThanOrEqual(peakOff + BUDGET_MIB + 64);
});
