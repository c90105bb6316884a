// Scenario 1: Barman builds the archive, walhub serves it. A primary ships WAL
// into Barman's incoming/ with archive_command; Barman's own `archive-wal`
// moves and compresses it (gzip, and zstd through `compression = custom`);
// walhub, pointed at that barman_home, hands back what PostgreSQL wrote.
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archivedPath, sha256 } from '../helpers/archive.js';
import { createBarman, type Barman } from '../helpers/barman.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { createCluster, type PgCluster } from '../helpers/postgres.js';
import { createFillTable, toPrimarySettings, toSegmentRange, writeAndSwitch } from '../helpers/replication.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';

const SERVERS = [
  // server, compression as walhub's audit names it, magic bytes of the stored file
  ['pggzip', 'gzip', '1f8b08'],
  ['pgzstd', 'zstd', '28b52ffd'],
] as const;

let barman: Barman;
let primary: PgCluster | undefined;
let hub: Hub | undefined;
let standbyKey: ClientKey;
/** Everything the primary shipped: segments, then the backup history file. */
let names: string[];

beforeAll(async () => {
  barman = await createBarman({ pggzip: 'gzip', pgzstd: 'zstd' });
  primary = await createCluster({ conf: toPrimarySettings(barman.toArchiveCommand('pggzip', 'pgzstd')) });
  await primary.start();
  await createFillTable(primary);
  const first = await primary.psql('select pg_walfile_name(pg_current_wal_lsn())');
  await writeAndSwitch(primary, 30_000);
  // A backup history file (<segment>.<offset>.backup) goes through the archive too.
  await primary.psql(`select pg_backup_start('walhub e2e', true); select pg_backup_stop()`);
  const { segment: last } = await writeAndSwitch(primary, 500);
  const backupHistory = (await readdir(barman.shipped)).filter((n) => n.endsWith('.backup'));
  expect(backupHistory).toHaveLength(1);
  names = [...toSegmentRange(first, last), ...backupHistory];
  for (const [server] of SERVERS) await barman.archive(primary, server, names);

  hub = await startHub({ archive: barman.home });
  standbyKey = await createClientKey(hub.dir, 'standby-a');
  await hub.loadKeys([{ key: standbyKey, options: 'servers="pggzip,pgzstd"' }]);
});

afterAll(async () => {
  await hub?.stop();
  await primary?.cleanup();
  await barman?.cleanup();
});

describe.each(SERVERS)('Barman server %s (%s)', (server, compression, magic) => {
  it('barman archive-wal took every shipped file out of incoming/ and compressed it', async () => {
    const serverDir = barman.serverDir(server);
    expect(await readdir(join(serverDir, 'incoming'))).toEqual([]);
    expect(await readdir(join(serverDir, 'errors'))).toEqual([]);
    for (const name of names) {
      const stored = await readFile(archivedPath(serverDir, name));
      expect(stored.subarray(0, magic.length / 2).toString('hex'), name).toBe(magic);
      const original = await readFile(join(barman.shipped, name));
      expect(stored.length, name).toBeLessThan(original.length);
    }
  });

  it('walhub serves every file byte for byte as PostgreSQL wrote it', async () => {
    for (const name of names) {
      const original = await readFile(join(barman.shipped, name));
      const result = await sshExec(hub!, standbyKey, `get-wal ${server} ${name}`);
      expect(result.stderr, name).toBe('');
      expect(result.status, name).toBe(0);
      expect(result.bytes, name).toBe(original.length);
      expect(result.sha256, name).toBe(sha256(original));
    }
  });

  it("walhub's bytes are the bytes of Barman's own get-wal", async () => {
    const segment = names[1]!;
    const fromBarman = await barman.getWal(server, segment);
    const fromHub = await sshExec(hub!, standbyKey, `get-wal ${server} ${segment}`);
    expect(fromHub.sha256).toBe(sha256(fromBarman));
  });

  it('the audit log has one ok request per file, with the compression found', async () => {
    const requests = (await hub!.audit()).filter((r) => r.event === 'request' && r.server === server && r.result === 'ok');
    for (const name of names) {
      const served = requests.filter((r) => r.wal === name);
      expect(served.length, name).toBeGreaterThan(0);
      for (const record of served) {
        expect(record).toMatchObject({ exit: 0, compression, key_name: 'standby-a' });
      }
    }
  });
});
