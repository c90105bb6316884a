// Sessions that do nothing: a session channel that never runs a command must
// not hold its connection (and a session slot) open forever.
import type ssh2 from 'ssh2';
import { afterEach, expect, it } from 'vitest';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { closedWithin, connectRaw, openBareSession, runRaw } from '../helpers/raw-client.js';

let hub: Hub | undefined;
let client: ssh2.Client | undefined;

afterEach(async () => {
  client?.end();
  await hub?.stop();
});

async function startWithStandby(limits: string) {
  const started = await startHubWithStandbys({ 'standby-a': 'servers="pg1"' }, { extraToml: `[limits]\n${limits}\n` });
  hub = started.hub;
  client = await connectRaw(hub, started.keys['standby-a']);
  return hub;
}

it('closes a session that has not started a command within session_start_timeout, and keeps the connection', async () => {
  await startWithStandby('session_start_timeout = "1s"\nidle_timeout = "1h"');
  const session = await openBareSession(client!);
  expect(await closedWithin(session, 10_000)).toBe(true);
  // The connection itself is still good for real work.
  const { status, stdout } = await runRaw(client!, 'get-wal --test pg1 dummy');
  expect(status).toBe(3);
  expect(stdout.length).toBe(0);
  const log = await hub!.waitForLog((l) => l.msg === 'session closed: no command started');
  expect(log.ms).toBe(1000);
});

it('counts a session that runs nothing as idle: the connection is closed after idle_timeout', async () => {
  await startWithStandby('session_start_timeout = "1m"\nidle_timeout = "2s"');
  await openBareSession(client!);
  expect(await closedWithin(client!, 15_000)).toBe(true);
  const records = await hub!.audit();
  expect(records.find((r) => r.event === 'disconnect' && r.user === 'walhub')).toMatchObject({ reason: 'idle timeout', requests: 0 });
});
