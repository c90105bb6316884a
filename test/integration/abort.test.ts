// A client that goes away mid-file: walhub closes the archive file and the
// decoder at once, records the request as aborted, and keeps serving.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { heldOpen } from '../helpers/proc.js';
import { requireProgram } from '../helpers/programs.js';
import { createClientKey, sshArgs, sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

let hub: Hub;
let standby: ClientKey;
let bzip2File: Placed;
let zstdFile: Placed;

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  hub = await startHub();
  standby = await createClientKey(hub.dir, 'standby-a');
  await hub.loadKeys([{ key: standby, options: 'servers="pg1"' }]);
  const dir = await createServerDir(hub.archive, 'pg1');
  bzip2File = await place(dir, fixture.segments[0]!, { codec: 'bzip2' });
  zstdFile = await place(dir, fixture.segments[1]!, { codec: 'zstd' });
});

afterAll(async () => {
  await hub?.stop();
});

/** Files the walhub process holds open under the archive, and its decoder children. */
const heldOpenByHub = () => heldOpen(hub.process.pid!, hub.archive);

it.each([
  ['a bzip2 file (decoded by a child process)', () => bzip2File],
  ['a zstd file (decoded in a worker thread)', () => zstdFile],
])('closes the file and decoder of %s when the client leaves mid-file', async (_what, file) => {
  const ssh = requireProgram('ssh', 'openssh-client');
  const child = spawn(ssh, [...sshArgs(hub, standby), `get-wal pg1 ${file().name}`], { stdio: ['ignore', 'pipe', 'ignore'] });
  // Read one chunk, then stop reading and kill the client while walhub is mid-stream.
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  child.stdout.pause();
  child.kill('SIGKILL');
  const record = await hub.waitForLog((l) => l.msg === 'request' && l.wal === file().name && l.result === 'aborted');
  expect(record.bytes as number).toBeLessThan(16 * 1024 * 1024);
  await expect.poll(heldOpenByHub, { timeout: 5000 }).toEqual({ files: [], children: 0 });
  const again = await sshExec(hub, standby, `get-wal pg1 ${file().name}`);
  expect(again.status).toBe(0);
  expect(again.sha256).toBe(file().sha256);
});

it.each([
  ['-j on a zstd file (bzip2 -c encodes in a child process)', '-j', () => zstdFile],
  ['--keep-compression on a bzip2 file (bzip2 -dc checks alongside)', '--keep-compression', () => bzip2File],
])('leaves no file or child behind after %s when the client leaves early', async (_what, option, file) => {
  const ssh = requireProgram('ssh', 'openssh-client');
  const child = spawn(ssh, [...sshArgs(hub, standby), `get-wal ${option} pg1 ${file().name}`], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  child.stdout.pause();
  child.kill('SIGKILL');
  // Compressed, the file may already be sent whole: whatever the outcome, nothing may stay open.
  const command = `get-wal ${option} pg1 ${file().name}`;
  const recorded = async () => (await hub.audit()).find((r) => r.event === 'request' && r.command === command)?.result;
  await expect.poll(recorded, { timeout: 15_000 }).toBeDefined();
  await expect.poll(heldOpenByHub, { timeout: 5000 }).toEqual({ files: [], children: 0 });
});
