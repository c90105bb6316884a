// The window-adjust bomb: a client grants a ~4 GiB channel window on many
// sessions and stops reading TCP. ssh2 writes to the socket without
// backpressure, so without walhub's own flow control every file ends up in
// the process's memory and is audited `ok` although the client read nothing.
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import type ssh2 from 'ssh2';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { rssMiB, sampleRss } from '../helpers/proc.js';
import { connectRaw, execRaw, grantHugeWindow, stopReading } from '../helpers/raw-client.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

let hub: Hub;
let standby: ClientKey;
let segments: Placed[];

const CONNECTIONS = 4;
const SESSIONS = 10;

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  hub = await startHub({ extraToml: '[limits]\nstall_timeout = "4s"\nmax_transfers_per_key = 64\n' });
  standby = await createClientKey(hub.dir, 'standby-a');
  await hub.writeKeys([{ key: standby, options: 'servers="pg1"' }]);
  const dir = await createServerDir(hub.archive, 'pg1');
  segments = await Promise.all(fixture.segments.slice(0, 4).map((s) => place(dir, s)));
  await hub.waitForLog((l) => l.msg === 'authorized keys loaded' && l.keys === 1);
});

afterAll(async () => {
  await hub?.stop();
});

it('window-adjust bomb: 4 connections x 10 stalled sessions with a 4 GiB window grow RSS by less than 200 MiB and are not audited ok', async () => {
  const pid = hub.process.pid!;
  const baseline = await rssMiB(pid);
  const rss = sampleRss(pid);
  const clients: ssh2.Client[] = [];
  const conns = new Set<string>();
  try {
    for (let c = 0; c < CONNECTIONS; c++) {
      const client = await connectRaw(hub, standby);
      clients.push(client);
      const channels = await Promise.all(
        Array.from({ length: SESSIONS }, (_, s) => execRaw(client, `get-wal pg1 ${segments[(c + s) % segments.length]!.name}`)),
      );
      for (const channel of channels) {
        channel.pause();
        grantHugeWindow(client, channel);
      }
      stopReading(client);
    }
    // Long enough for 640 MiB to be pushed at the socket many times over, short of the stall timeout.
    await new Promise((r) => setTimeout(r, 3000));
    for (const line of hub.logLines) if (line.msg === 'authenticated') conns.add(line.conn as string);
    const okWhileStalled = (await hub.audit()).filter((r) => r.event === 'request' && r.result === 'ok' && conns.has(r.conn as string));
    console.log(`window-adjust bomb: RSS ${baseline.toFixed(0)} MiB before, peak ${rss.peak().toFixed(0)} MiB; ${okWhileStalled.length} transfers audited ok while stalled`);
    expect(okWhileStalled).toEqual([]);
    expect(rss.peak() - baseline).toBeLessThan(200);

    // The stall timeout ends them: aborted, with the reason.
    await expect
      .poll(async () => (await hub.audit()).filter((r) => r.event === 'request' && conns.has(r.conn as string)).length, { timeout: 20_000 })
      .toBe(CONNECTIONS * SESSIONS);
    const records = (await hub.audit()).filter((r) => r.event === 'request' && conns.has(r.conn as string));
    for (const record of records) {
      expect(record).toMatchObject({ result: 'aborted', error: 'stalled: no data taken for 4 s' });
      expect(record.bytes as number).toBeLessThan(16 * 1024 * 1024);
    }
  } finally {
    rss.stop();
    for (const client of clients) client.end();
  }
  console.log(`window-adjust bomb: peak RSS ${rss.peak().toFixed(0)} MiB`);
  // And walhub still serves.
  const after = await sshExec(hub, standby, `get-wal pg1 ${segments[0]!.name}`);
  expect(after.status).toBe(0);
  expect(after.sha256).toBe(segments[0]!.sha256);
});
