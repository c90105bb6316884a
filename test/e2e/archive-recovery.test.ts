// Scenario 3: archive recovery from a base backup that carries no WAL
// (pg_basebackup -X none, recovery.signal): every segment comes through walhub,
// out of a Barman archive compressed with zstd, and the recovered cluster ends
// up with exactly the data the archive holds.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { PgCluster } from '../helpers/postgres.js';
import { createRecoverySetup, type RecoverySetup } from '../helpers/recovery-setup.js';
import {
  createRecoveryCluster,
  grepLog,
  toBackupStartFile,
  toNextSegment,
  toSegmentRange,
  toTableChecksum,
  waitForPromotion,
  writeAndSwitch,
} from '../helpers/replication.js';
import { toRestoreCommand } from '../helpers/restore-command.js';

let setup: RecoverySetup | undefined;
let restored: PgCluster | undefined;

beforeAll(async () => {
  setup = await createRecoverySetup('zstd');
});

afterAll(async () => {
  await restored?.cleanup();
  await setup?.cleanup();
});

it('pg_basebackup -X none + recovery.signal replays every archived segment through walhub', async () => {
  const { primary: p, access, barman, hub } = setup!;
  // The plain one-liner: in archive recovery, any miss ends recovery, so an
  // unreachable hub had better stop PostgreSQL (255) than end it early.
  restored = await createRecoveryCluster(p, toRestoreCommand(access, 'pg1', 'plain'));
  const startFile = await toBackupStartFile(restored);

  // After the backup: more segments, all archived; then one row that never reaches the archive.
  let last = startFile;
  for (let i = 0; i < 3; i++) last = (await writeAndSwitch(p, 30_000)).segment;
  const archived = toSegmentRange(startFile, last);
  await barman.archive(p, 'pg1', archived);
  const expected = await toTableChecksum(p);
  await p.psql(`insert into fill values (-1, 'never archived')`);

  await restored.start();
  await waitForPromotion(restored);

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
  const requests = (await hub.audit()).filter((r) => r.event === 'request' && r.key_name === 'restore-a');
  for (const name of archived) {
    expect(requests.find((r) => r.wal === name), name).toMatchObject({ result: 'ok', exit: 0, compression: 'zstd' });
  }
  expect(requests.find((r) => r.wal === toNextSegment(last))).toMatchObject({ result: 'not_found', exit: 1 });
});
