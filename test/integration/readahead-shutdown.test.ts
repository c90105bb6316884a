// SIGTERM while segments are being read ahead: the decode under way is
// aborted (its bzip2 killed), no other starts, and the hub exits at once,
// instead of decoding on for a cache that is about to go.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture, type WalFixture } from '../helpers/wal-fixture.js';

let fixture: WalFixture;
let hub: Hub;
let standby: ClientKey;
const nameOf = (path: string) => path.split('/').pop()!;

beforeAll(async () => {
  fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys({ 'standby-a': 'servers="pg1"' }, { extraToml: '[cache]\nreadahead = 8\n' }));
  const serverDir = await createServerDir(hub.archive, 'pg1');
  await place(serverDir, fixture.segments[0]!);
  // bzip2 is the slowest to decode: five of them take seconds.
  for (const source of fixture.segments.slice(1, 6)) await place(serverDir, source, { codec: 'bzip2' });
});

afterAll(async () => {
  await hub?.stop();
});

it('stops readahead at SIGTERM: the decode under way is aborted, none starts after, the hub exits promptly', async () => {
  // ControlMaster keeps the connection, so the chain would run through all five.
  const control = join(hub.dir, 'mux');
  const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=60'];
  const result = await sshExec(hub, standby, `get-wal pg1 ${nameOf(fixture.segments[0]!)}`, { extra: mux });
  expect(result.status).toBe(0);
  await new Promise((r) => setTimeout(r, 300));
  const exited = new Promise<number | null>((resolve) => hub.process.once('exit', (code) => resolve(code)));
  const signalledAt = Date.now();
  hub.process.kill('SIGTERM');
  const code = await exited;
  const ms = Date.now() - signalledAt;
  await sshExec(hub, standby, undefined, { extra: [...mux, '-O', 'exit'] }).catch(() => undefined);

  const stopping = hub.logLines.findIndex((l) => l.msg === 'stopping');
  const readahead = (from: number, to: number) => hub.logLines.slice(from, to).filter((l) => l.msg === 'readahead');
  const before = readahead(0, stopping);
  const after = readahead(stopping, hub.logLines.length);
  expect(code).toBe(0);
  expect(stopping).toBeGreaterThan(0);
  // It was still running: not every segment was done before the signal.
  expect(before.filter((l) => l.outcome === 'cached').length).toBeLessThan(5);
  expect(after.map((l) => l.outcome)).toEqual(['aborted']);
  expect(ms).toBeLessThan(5_000);
});
