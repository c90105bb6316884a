// An attacker with no key opens hundreds of connections that never log in,
// from two other hosts. A standby must go on fetching WAL as if nothing
// happened: today's global max_startups let the flood lock it out (ssh exit 255).
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Codec, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { startIdleFlood, type IdleFlood } from '../helpers/idle-sockets.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

const FETCHES = 20;
let hub: Hub;
let standby: ClientKey;
const files: Placed[] = [];
const floods: IdleFlood[] = [];

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys({ 'standby-a': 'servers="pg1"' }));
  const dir = await createServerDir(hub.archive, 'pg1');
  const codecs: Codec[] = ['zstd', 'gzip', 'none', 'zstd', 'lz4', 'gzip'];
  for (const [i, segment] of fixture.segments.slice(0, codecs.length).entries()) {
    files.push(await place(dir, segment, { codec: codecs[i]! }));
  }
});

afterAll(async () => {
  await Promise.all(floods.map((f) => f.stop()));
  await hub?.stop();
});

it('a flood of idle connections from other hosts does not keep WAL from a standby', async () => {
  floods.push(startIdleFlood(hub.port, '127.0.0.2', 300), startIdleFlood(hub.port, '127.0.0.3', 300));
  await new Promise((r) => setTimeout(r, 1500));
  const failures: string[] = [];
  const times: number[] = [];
  // Spread over the 10 s ident timeout, so the fetches also meet the flood's
  // connections being closed, penalized and opened again.
  for (let i = 0; i < FETCHES; i++) {
    const file = files[i % files.length]!;
    const started = Date.now();
    const result = await sshExec(hub, standby, `get-wal pg1 ${file.name}`, { timeoutMs: 30_000 });
    const ms = Date.now() - started;
    times.push(ms);
    if (result.status !== 0 || result.sha256 !== file.sha256 || ms >= 2000) {
      failures.push(`#${i} ${file.name}: exit ${result.status}, ${result.bytes} bytes in ${ms} ms, ${result.stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  expect(failures).toEqual([]);
  const counts = await Promise.all(floods.map((f) => f.stop()));
  // The hub never held more than its per-source cap of 10 unauthenticated connections from either host,
  // and refused the rest before sending a byte.
  // The attacker counts a socket as held from its banner to the close it sees;
  // a close can reach it after the next socket's banner although the hub had
  // already let go, so its count may run one or two above the hub's (without
  // the cap it would be in the hundreds).
  for (const c of counts) {
    expect(c.maxHeld).toBeLessThanOrEqual(12);
    expect(c.refusedBeforeBanner).toBeGreaterThan(1000);
  }
  // Thousands of refusals, a handful of lines: one per source and reason a minute, one per penalty period.
  for (const address of ['127.0.0.2', '127.0.0.3']) {
    const reasons = hub.logLines.filter((l) => l.msg === 'connection refused' && l.address === address).map((l) => l.reason);
    expect(reasons).toEqual(['too many unauthenticated connections from this source', 'penalized for connections that did not log in']);
  }
}, 120_000);
