// Commands written to escape: every one is exit 2 with one line, and nothing
// outside the archive is opened. A FIFO outside the archive is the witness:
// a writer blocked on it goes on only if somebody opens it for reading.
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { startFifoWitness, type FifoWitness } from '../helpers/fifo-witness.js';
import { connectRaw, runRaw } from '../helpers/raw-client.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';

let hub: Hub;
let standby: ClientKey;
let witness: FifoWitness;

beforeAll(async () => {
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys({ 'standby-a': 'servers="pg1"' }));
  await mkdir(join(hub.archive, 'pg1', 'wals', '0000000100000000'), { recursive: true });
  witness = await startFifoWitness(join(hub.dir, 'outside-fifo'));
  const fifo = witness.path;
  // Every escape route points at the FIFO: `..` from the server directory,
  // the archive root's parent, and a symlink planted in the archive.
  await symlink(fifo, join(hub.archive, 'pg1', 'wals', '0000000100000000', '000000010000000000000007'));
  await symlink(fifo, join(hub.archive, 'escape'));
  await writeFile(join(hub.dir, '000000010000000000000003'), 'outside the archive');
});

afterAll(async () => {
  witness?.stop();
  await hub?.stop();
});

describe('hostile commands', () => {
  it.each([
    ['a parent directory as WAL name', 'get-wal pg1 ../../000000010000000000000003', 'invalid WAL name "../../000000010000000000000003": expected 24 upper-case hex digits, optionally followed by .partial or .XXXXXXXX.backup, or XXXXXXXX.history'],
    ['an absolute path as WAL name', 'get-wal pg1 /etc/passwd', 'invalid WAL name "/etc/passwd": expected 24 upper-case hex digits, optionally followed by .partial or .XXXXXXXX.backup, or XXXXXXXX.history'],
    ['a path as server ID', 'get-wal pg1/../escape 000000010000000000000003', 'invalid server ID "pg1/../escape"'],
    ['the parent as server ID', 'get-wal .. 000000010000000000000003', 'invalid server ID ".."'],
    ['an absolute server ID', 'get-wal /tmp 000000010000000000000003', 'invalid server ID "/tmp"'],
    ['a command after ;', 'get-wal pg1 000000010000000000000003; cat /etc/passwd', 'walhub runs no shell: ";" is not allowed'],
    ['a command substitution', 'get-wal pg1 $(cat /etc/passwd)', 'walhub runs no shell: "$" is not allowed'],
    ['backticks', 'get-wal pg1 `id`', 'walhub runs no shell: "`" is not allowed'],
    ['a substitution inside double quotes', 'get-wal pg1 "$(id)"', 'walhub runs no shell: "$" inside double quotes is not expanded'],
    ['a pipe', 'get-wal pg1 000000010000000000000003 | sh', 'walhub runs no shell: "|" is not allowed'],
    ['a redirection', 'get-wal pg1 000000010000000000000003 > /tmp/x', 'walhub runs no shell: ">" is not allowed'],
    ['a 10 KiB argument', `get-wal pg1 ${'A'.repeat(10 * 1024)}`, 'the command is longer than 4096 bytes'],
  ])('refuses %s with exit 2', async (_what, command, message) => {
    const result = await sshExec(hub, standby, command);
    expect(result.status).toBe(2);
    expect(result.bytes).toBe(0);
    expect(result.stderr).toBe(`walhub: ${message}\n`);
  });

  it('refuses a NUL byte in the command (sent by a raw SSH client)', async () => {
    // ssh2's own client: the OpenSSH client cannot put a NUL in a command.
    const client = await connectRaw(hub, standby);
    const { status, stderr } = await runRaw(client, 'get-wal pg1 000000010000000000000003\0/../../etc/passwd').finally(() => client.end());
    expect(status).toBe(2);
    expect(stderr).toBe('walhub: the command contains a NUL byte\n');
  });

  it('does not open a symlink in the archive that leads outside it, and refuses it loudly (exit 5, not "not found")', async () => {
    const result = await sshExec(hub, standby, 'get-wal pg1 000000010000000000000007');
    expect(result.status).toBe(5);
    expect(result.stderr).toBe(
      'walhub: archive path wals/0000000100000000/000000010000000000000007 leads outside the server directory; refusing it (pg1 000000010000000000000007)\n',
    );
  });

  it('opened nothing outside the archive through all of the above', async () => {
    await new Promise((r) => setTimeout(r, 200));
    expect(witness.opened()).toBe(false);
    await witness.openItOnce();
    expect(witness.opened()).toBe(true);
  });

  it('records a refused request in the audit log with the command as sent', async () => {
    await sshExec(hub, standby, 'get-wal pg1 ../x');
    const records = await hub.audit();
    const refused = records.find((r) => r.event === 'request' && r.command === 'get-wal pg1 ../x');
    expect(refused).toMatchObject({ result: 'usage', exit: 2, bytes: 0, key: standby.fingerprint, key_name: 'standby-a', user: 'walhub' });
    const long = records.find((r) => r.event === 'request' && typeof r.command === 'string' && r.command.startsWith('get-wal pg1 AAAA'));
    expect(long?.command).toBe(`get-wal pg1 ${'A'.repeat(256 - 12)}...[cut, ${12 + 10 * 1024} characters]`);
  });
});
