// Sessions that never run a command, opened and closed in a loop on one
// connection. ssh2's server keeps a session channel in its channel table
// until the channel made by exec or shell closes; a session that never had
// one stayed there for the life of the connection, so one key could grow
// walhub's memory without bound, and never heard the CHANNEL_CLOSE that
// RFC 4254 5.3 says must answer its own.
import type ssh2 from 'ssh2';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { rssMiB } from '../helpers/proc.js';
import { closedWithin, connectRaw, openBareSession, runRaw } from '../helpers/raw-client.js';
import type { ClientKey } from '../helpers/ssh-client.js';

let hub: Hub;
let standby: ClientKey;

beforeAll(async () => {
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys(
    { 'standby-a': 'servers="pg1"' },
    { extraToml: '[limits]\nsession_start_timeout = "1s"\nidle_timeout = "1h"\n' },
  ));
});

afterAll(async () => {
  await hub?.stop();
});

it('answers a client that closes a session which ran nothing with its own close', async () => {
  const client = await connectRaw(hub, standby);
  try {
    const session = await openBareSession(client);
    const answered = closedWithin(session, 5_000);
    session.close();
    expect(await answered).toBe(true);
    // The connection still serves, and its session slot came back.
    expect((await runRaw(client, 'get-wal --test pg1 x')).status).toBe(3);
  } finally {
    client.end();
  }
});

it('60,000 sessions opened and closed without a command on one connection leave walhub within 40 MiB of where it started', async () => {
  const client = await connectRaw(hub, standby);
  // Ten small opens per batch: without this, Nagle holds each batch for the server's delayed ACK.
  client.setNoDelay(true);
  const pid = hub.process.pid!;
  try {
    // Warm up first, so that what is measured is what stays per session, not the first allocations.
    await churn(client, 2_000);
    const before = await rssMiB(pid);
    const startedAt = Date.now();
    await churn(client, 60_000);
    const after = await rssMiB(pid);
    console.log(`bare-session churn: 60000 sessions in ${Date.now() - startedAt} ms, walhub RSS ${before.toFixed(0)} -> ${after.toFixed(0)} MiB`);
    expect(after - before).toBeLessThan(40);
    expect((await runRaw(client, 'get-wal --test pg1 x')).status).toBe(3);
  } finally {
    client.end();
  }
}, 180_000);

/** Opens `count` bare sessions, 10 at a time (max_sessions), and closes each from the client side. */
async function churn(client: ssh2.Client, count: number): Promise<void> {
  for (let done = 0; done < count; done += 10) {
    const sessions = await Promise.all(Array.from({ length: 10 }, () => openBareSession(client)));
    for (const session of sessions) session.close();
  }
}
