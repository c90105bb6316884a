// The listener's limits, as a client meets them.
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

let hub: Hub;
let standby: ClientKey;
let segment: Placed;

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys(
    { 'standby-a': 'servers="pg1"' },
    { extraToml: '[limits]\nlogin_grace_time = "1s"\nmax_transfers = 1\n' },
  ));
  segment = await place(await createServerDir(hub.archive, 'pg1'), fixture.segments[0]!);
});

afterAll(async () => {
  await hub?.stop();
});

it('drops a connection that has not logged in within login_grace_time', async () => {
  const socket = connect(hub.port, '127.0.0.1');
  const started = Date.now();
  let banner = '';
  socket.setEncoding('utf8').on('data', (text: string) => (banner += text));
  await new Promise((resolve) => socket.on('close', resolve));
  expect(banner).toMatch(/^SSH-2\.0-walhub_/);
  expect(Date.now() - started).toBeLessThan(10_000);
  const records = await hub.audit();
  expect(records.some((r) => r.event === 'disconnect' && r.reason === 'login grace time exceeded')).toBe(true);
});

it('answers exit 5 "busy" beyond max_transfers, and serves again once a transfer ends', async () => {
  // A client that stops reading holds its transfer open: the SSH window fills and walhub waits.
  const client = new ssh2.Client();
  const privateKey = await readFile(standby.privatePath);
  await new Promise<void>((resolve, reject) => {
    client.on('ready', () => resolve()).on('error', reject);
    client.connect({ host: '127.0.0.1', port: hub.port, username: 'walhub', privateKey });
  });
  const stalled = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
    client.exec(`get-wal pg1 ${segment.name}`, (error, channel) => (error ? reject(error) : resolve(channel))),
  );
  stalled.pause();
  try {
    await new Promise((r) => setTimeout(r, 500));
    const busy = await sshExec(hub, standby, `get-wal pg1 ${segment.name}`);
    expect(busy.status).toBe(5);
    expect(busy.stderr).toBe(`walhub: walhub is busy, retry shortly (pg1 ${segment.name})\n`);
  } finally {
    client.end();
  }
  await hub.waitForLog((l) => l.msg === 'request' && l.result === 'aborted');
  const after = await sshExec(hub, standby, `get-wal pg1 ${segment.name}`);
  expect(after.status).toBe(0);
  expect(after.sha256).toBe(segment.sha256);
});
