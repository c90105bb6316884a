// The window-adjust bomb: a client grants a ~4 GiB channel window on many
// sessions and stops reading TCP. ssh2 writes to the socket without
// backpressure, so without walhub's own flow control every file ends up in
// the process's memory and is audited `ok` although the client read nothing.
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import type ssh2 from 'ssh2';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { rssMiB, sampleRss } from '../helpers/proc.js';
import { connectRaw, execRaw, grantHugeWindow, startEndlessRekey, stopReading } from '../helpers/raw-client.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

let hub: Hub;
let standby: ClientKey;
let segments: Placed[];

const CONNECTIONS = 4;
const SESSIONS = 10;

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys(
    { 'standby-a': 'servers="pg1"' },
    { extraToml: '[limits]\nstall_timeout = "4s"\nmax_transfers_per_key = 64\n' },
  ));
  const dir = await createServerDir(hub.archive, 'pg1');
  segments = await Promise.all(fixture.segments.slice(0, 4).map((s) => place(dir, s)));
});

afterAll(async () => {
  await hub?.stop();
});

/** 4 connections x 10 sessions of get-wal, each with a ~4 GiB window, then `stall` each client. */
async function bomb(stall: (client: ssh2.Client) => void): Promise<{ clients: ssh2.Client[]; conns: Set<string> }> {
  const seen = hub.logLines.length;
  const clients: ssh2.Client[] = [];
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
    stall(client);
  }
  const conns = new Set(hub.logLines.slice(seen).filter((l) => l.msg === 'authenticated').map((l) => l.conn as string));
  return { clients, conns };
}

async function requestRecords(conns: Set<string>) {
  return (await hub.audit()).filter((r) => r.event === 'request' && conns.has(r.conn as string));
}

it.each([
  ['stops reading TCP', stopReading],
  ['starts a key re-exchange it never finishes (ssh2 queues packets in memory meanwhile)', startEndlessRekey],
])('window-adjust bomb: 4 connections x 10 sessions with a 4 GiB window whose client %s grow RSS by less than 200 MiB and are not audited ok', async (what, stall) => {
  const pid = hub.process.pid!;
  const baseline = await rssMiB(pid);
  const rss = sampleRss(pid);
  let clients: ssh2.Client[] = [];
  try {
    const attack = await bomb(stall);
    clients = attack.clients;
    // Long enough for 640 MiB to be pushed at the socket many times over, short of the stall timeout.
    await new Promise((r) => setTimeout(r, 3000));
    const okWhileStalled = (await requestRecords(attack.conns)).filter((r) => r.result === 'ok');
    console.log(`window-adjust bomb, client ${what}: RSS ${baseline.toFixed(0)} MiB before, peak ${rss.peak().toFixed(0)} MiB; ${okWhileStalled.length} transfers audited ok while stalled`);
    expect(okWhileStalled).toEqual([]);
    expect(rss.peak() - baseline).toBeLessThan(200);

    // The stall timeout ends them: aborted, with the reason.
    await expect.poll(async () => (await requestRecords(attack.conns)).length, { timeout: 20_000 }).toBe(CONNECTIONS * SESSIONS);
    for (const record of await requestRecords(attack.conns)) {
      expect(record).toMatchObject({ result: 'aborted', error: 'stalled: no data taken for 4 s' });
      expect(record.bytes as number).toBeLessThan(16 * 1024 * 1024);
    }
  } finally {
    rss.stop();
    for (const client of clients) client.end();
  }
  console.log(`window-adjust bomb, client ${what}: peak RSS ${rss.peak().toFixed(0)} MiB`);
  // And walhub still serves.
  const after = await sshExec(hub, standby, `get-wal pg1 ${segments[0]!.name}`);
  expect(after.status).toBe(0);
  expect(after.sha256).toBe(segments[0]!.sha256);
});
