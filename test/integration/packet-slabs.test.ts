// walhub carves outgoing packets from slabs it reuses once the kernel has
// taken them (src/ssh/packet-slabs.ts). Reusing one a moment too early would
// overwrite bytes still queued for a client: OpenSSH would see a bad MAC, or a
// client a different segment. A reader that stops with walhub's queue full
// while other standbys fetch, then resumes, must get every byte as archived.
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { connectRaw, fetchHashed, resumeReading, stopReading } from '../helpers/raw-client.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

let hub: Hub;
let standby: ClientKey;
let segments: Placed[];

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { standby } } = await startHubWithStandbys({ standby: 'servers="pg1"' }));
  const dir = await createServerDir(hub.archive, 'pg1');
  segments = await Promise.all([
    place(dir, fixture.segments[0]!, { codec: 'zstd' }),
    place(dir, fixture.segments[1]!),
    place(dir, fixture.segments[2]!, { codec: 'gzip' }),
    place(dir, fixture.segments[3]!, { codec: 'zstd' }),
  ]);
});

afterAll(async () => {
  await hub?.stop();
});

it('a reader that stops with walhub queue full while three other standbys fetch, then resumes, gets its segment byte for byte', async () => {
  const [slowSegment, ...others] = segments;
  const client = await connectRaw(hub, standby);
  try {
    const fetch = await fetchHashed(client, `get-wal pg1 ${slowSegment!.name}`);
    await expect.poll(() => fetch.received(), { timeout: 10_000 }).toBeGreaterThan(0);
    stopReading(client);
    // Walhub fills the kernel's buffers and its own queue, then waits: packets from several slabs wait to be sent.
    await new Promise((r) => setTimeout(r, 1000));
    const receivedWhileStopped = fetch.received();

    // Meanwhile others fetch through their own connections: slabs go round at full speed.
    const fetched = await Promise.all(others.map((s) => sshExec(hub, standby, `get-wal pg1 ${s.name}`)));
    fetched.forEach((result, i) => {
      expect(result.status, result.stderr).toBe(0);
      expect(result.sha256).toBe(others[i]!.sha256);
    });

    resumeReading(client);
    expect(receivedWhileStopped).toBeLessThan(slowSegment!.size);
    expect(await fetch.done).toEqual({ status: 0, bytes: slowSegment!.size, sha256: slowSegment!.sha256 });
  } finally {
    client.end();
  }
});
