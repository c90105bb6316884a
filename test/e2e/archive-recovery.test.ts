// Scenario 3: archive recovery from a base backup that carries no WAL
// (pg_basebackup -X none, recovery.signal): every segment comes through walhub,
// out of a Barman archive compressed with zstd, and the recovered cluster ends
// up with exactly the data the archive holds.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createBarman, type Barman } from '../helpers/barman.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { createCluster, waitUntil, type PgCluster } from '../helpers/postgres.js';
import {
  createArchiveRecovery,
  createFillTable,
  grepLog,
  toPrimarySettings,
  toNextSegment,
  toSegmentRange,
  toTableChecksum,
  writeAndSwitch,
} from '../helpers/replication.js';
import { createStandbyAccess, toRestoreCommand, type StandbyAccess } from '../helpers/restore-command.js';
import { createClientKey } from '../helpers/ssh-client.js';

let barman: Barman;
let primary: PgCluster | undefined;
let restored: PgCluster | undefined;
let hub: Hub | undefined;
let access: StandbyAccess | undefined;

beforeAll(async () => {
  barman = await createBarman({ pg1: 'zstd' });
  primary = await createCluster({ conf: toPrimarySettings(barman.toArchiveCommand('pg1')) });
  await primary.start();
  await createFillTable(primary);
  await writeAndSwitch(primary, 1000);
  hub = await startHub({ archive: barman.home });
  const key = await createClientKey(hub.dir, 'restore-a');
  await hub.writeKeys([{ key, options: 'servers="pg1"' }]);
  access = await createStandbyAccess(hub, key);
});

afterAll(async () => {
  await restored?.cleanup();
  await primary?.cleanup();
  await access?.cleanup();
  await hub?.stop();
  await barman?.cleanup();
});

it('pg_basebackup -X none + recovery.signal replays every archived segment through walhub', async () => {
  const p = primary!;
  // The plain one-liner: in archive recovery, any miss ends recovery, so an
  // unreachable hub had better stop PostgreSQL (255) than end it early.
  const recovery = await createArchiveRecovery(p, toRestoreCommand(access!, 'pg1', 'plain'));
  restored = recovery.cluster;
  const startFile = recovery.startFile;

  // After the backup: more segments, all archived; then one row that never reaches the archive.
  let last = startFile;
  for (let i = 0; i < 3; i++) last = (await writeAndSwitch(p, 30_000)).segment;
  const archived = toSegmentRange(startFile, last);
  await barman.archive(p, 'pg1', archived);
  const expected = await toTableChecksum(p);
  await p.psql(`insert into fill values (-1, 'never archived')`);

  await restored.start();
  await waitUntil('archive recovery to end', async () => {
    return (await restored!.psql('select pg_is_in_recovery()')) === 'f';
  }, { timeoutMs: 90_000, intervalMs: 200 });

  // PostgreSQL's own account: each segment restored from the archive (the last
  // one twice: the end of recovery reads it again), then the end.
  for (const name of archived) {
    expect(await grepLog(restored, new RegExp(`restored log file "${name}" from archive`)), name).not.toEqual([]);
  }
  expect(await grepLog(restored, /archive recovery complete/)).toHaveLength(1);
  expect(await restored.psql('select timeline_id from pg_control_checkpoint()')).toBe('2');
  expect(await toTableChecksum(restored)).toBe(expected);
  expect(await restored.psql('select count(*) from fill where id = -1')).toBe('0');

  // walhub's account: every segment sent whole, then "not in the archive" for the next one.
  const requests = (await hub!.audit()).filter((r) => r.event === 'request' && r.key_name === 'restore-a');
  for (const name of archived) {
    expect(requests.find((r) => r.wal === name), name).toMatchObject({ result: 'ok', exit: 0, compression: 'zstd' });
  }
  expect(requests.find((r) => r.wal === toNextSegment(last))).toMatchObject({ result: 'not_found', exit: 1 });
});
