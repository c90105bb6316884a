// A cache with room for fewer segments than `readahead` asks for (here two
// of four): the chain must stop when it runs out of room, not make room by
// dropping the segments it read ahead itself, the very next ones its standby
// asks for. A standby replaying through it then gets every segment but the
// first from the cache, and no segment is decoded twice.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

let hub: Hub;
let standby: ClientKey;
let segments: Placed[];

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { standby } } = await startHubWithStandbys({ standby: 'servers="pg1"' }, { extraToml: '[cache]\nmemory = "32MiB"\nreadahead = 4\n' }));
  const dir = await createServerDir(hub.archive, 'pg1');
  segments = await Promise.all(fixture.segments.map((segment) => place(dir, segment, { codec: 'zstd' })));
});

afterAll(async () => {
  await hub?.stop();
});

it('stops a chain that runs out of room rather than dropping its own next segment', async () => {
  const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${join(hub.dir, 'mux')}`, '-o', 'ControlPersist=60'];
  try {
    for (const segment of segments) {
      const result = await sshExec(hub, standby, `get-wal pg1 ${segment.name}`, { extra: mux });
      expect([result.status, result.sha256]).toEqual([0, segment.sha256]);
      // PostgreSQL replays a segment before it asks for the next: readahead runs
      // meanwhile (a request for the segment being decoded waits for it).
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  } finally {
    await sshExec(hub, standby, undefined, { extra: [...mux, '-O', 'exit'] });
  }
  const requests = (await hub.audit()).filter((r) => r.event === 'request' && r.server === 'pg1');
  expect(requests.map((r) => `${String(r.wal)} ${String(r.cache)}`)).toEqual(segments.map((s, i) => `${s.name} ${i === 0 ? 'miss' : 'hit'}`));
  const decoded = hub.logLines.filter((l) => l.msg === 'readahead' && l.outcome === 'cached').map((l) => l.wal);
  expect(decoded).toEqual([...new Set(decoded)]);
  expect(hub.logLines.some((l) => l.msg === 'readahead' && l.outcome === 'no_room')).toBe(true);
});
