// A server directory laid out across disks with a symlink (pg4/wals pointing
// to another disk): every request through it is refused loudly, exit 5 with
// the path named, a warning in the program log, and a problem line from
// `walhub check`; never exit 1, which in recovery means "end of archive".
// A FIFO behind the symlink is the witness that nothing there is opened.
import { execFile } from 'node:child_process';
import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createServerDir } from '../helpers/archive.js';
import { CLI, startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { startFifoWitness, type FifoWitness } from '../helpers/fifo-witness.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';

const NAME = '000000010000000000000003';
const MESSAGE = 'archive path wals leads outside the server directory; refusing it';
let hub: Hub;
let standby: ClientKey;
let witness: FifoWitness;

beforeAll(async () => {
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys({ 'standby-a': 'servers="pg4"' }));
  const serverDir = join(hub.archive, 'pg4');
  await mkdir(join(serverDir, 'incoming'), { recursive: true });
  await mkdir(join(serverDir, 'streaming'), { recursive: true });
  const otherDisk = join(hub.dir, 'otherdisk', 'wals');
  await mkdir(join(otherDisk, NAME.slice(0, 16)), { recursive: true });
  witness = await startFifoWitness(join(otherDisk, NAME.slice(0, 16), NAME));
  await symlink(otherDisk, join(serverDir, 'wals'));
  await createServerDir(hub.archive, 'pg5');
});

afterAll(async () => {
  witness?.stop();
  await hub?.stop();
});

it('refuses a request through a symlinked wals/ with exit 5 and the path, never exit 1 "not found"', async () => {
  const result = await sshExec(hub, standby, `get-wal pg4 ${NAME}`);
  expect(result.status).toBe(5);
  expect(result.stderr).toBe(`walhub: ${MESSAGE} (pg4 ${NAME})\n`);
  expect(result.bytes).toBe(0);
});

it('writes a warning with the reason to the program log, and the audit record says unavailable', async () => {
  const line = await hub.waitForLog((l) => l.msg === 'request' && l.wal === NAME);
  expect(line).toMatchObject({ level: 40, server: 'pg4', result: 'unavailable', exit: 5, error: MESSAGE });
  const record = (await hub.audit()).find((r) => r.event === 'request' && r.wal === NAME);
  expect(record).toMatchObject({ result: 'unavailable', exit: 5, error: MESSAGE });
});

it('walhub check names the server and the path as a problem', async () => {
  const result = await promisify(execFile)(process.execPath, [CLI, 'check', '--config', hub.configPath]).then(
    ({ stdout, stderr }) => ({ status: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ status: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
  expect(result.status).toBe(1);
  expect(result.stderr).toBe(
    "walhub: server pg4: wals leads outside the server directory; requests through it are refused (exit 5): point the server's path at the real place\n",
  );
  expect(result.stdout).toContain('1 problem(s)');
});

it('opened nothing behind the symlink through all of the above', async () => {
  await new Promise((r) => setTimeout(r, 200));
  expect(witness.opened()).toBe(false);
  await witness.openItOnce();
  expect(witness.opened()).toBe(true);
});
