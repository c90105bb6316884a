// SIGTERM while a standby is mid-file: walhub stops taking connections but
// lets the transfer finish, whole and with exit 0, then exits 0 itself.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { requireProgram } from '../helpers/programs.js';
import { sshArgs, sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

let hub: Hub;
let standby: ClientKey;
let segment: Placed;

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys({ 'standby-a': 'servers="pg1"' }));
  segment = await place(await createServerDir(hub.archive, 'pg1'), fixture.segments[0]!, { codec: 'zstd' });
});

afterAll(async () => {
  await hub?.stop();
});

it('finishes a transfer in flight on SIGTERM, refuses new connections, then exits 0', async () => {
  const ssh = requireProgram('ssh', 'openssh-client');
  const client = spawn(ssh, [...sshArgs(hub, standby), `get-wal pg1 ${segment.name}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const hash = createHash('sha256');
  let bytes = 0;
  // A slow reader: the transfer is still going when SIGTERM arrives.
  client.stdout.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
    client.stdout.pause();
    setTimeout(() => client.stdout.resume(), 20);
  });
  const clientExit = new Promise<number | null>((resolve) => client.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve) => client.stdout.once('data', () => resolve()));

  const serverExit = new Promise<number | null>((resolve) => hub.process.on('exit', (code) => resolve(code)));
  hub.process.kill('SIGTERM');
  await hub.waitForLog((l) => l.msg === 'stopping');
  expect(bytes).toBeLessThan(segment.size);
  const late = await sshExec(hub, standby, `get-wal --test pg1 x`);
  expect(late.status).toBe(255);

  const status = await clientExit;
  expect(status).toBe(0);
  expect(bytes).toBe(segment.size);
  expect(hash.digest('hex')).toBe(segment.sha256);
  expect(await serverExit).toBe(0);
  const record = (await hub.audit()).find((r) => r.event === 'request' && r.wal === segment.name);
  expect(record).toMatchObject({ result: 'ok', exit: 0, bytes: segment.size });
});
