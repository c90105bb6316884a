// Scenario 2, the reason walhub exists: a streaming standby (no replication
// slot) is down while the primary writes and recycles pg_wal. Streaming alone
// cannot bring it back ("requested WAL segment ... has already been removed");
// with restore_command through walhub, the plain one-liner, it fetches the
// missing segments from the Barman archive and goes back to streaming.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createBarman, type Barman } from '../helpers/barman.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { createCluster, createStandby, waitUntil, type PgCluster } from '../helpers/postgres.js';
import {
  createFillTable,
  grepLog,
  toPrimarySettings,
  toSegmentRange,
  toTableChecksum,
  waitForReplay,
  writeAndSwitch,
} from '../helpers/replication.js';
import { createStandbyAccess, toRestoreCommand, type StandbyAccess } from '../helpers/restore-command.js';
import { createClientKey } from '../helpers/ssh-client.js';

let barman: Barman;
let primary: PgCluster | undefined;
let standby: PgCluster | undefined;
let hub: Hub | undefined;
let access: StandbyAccess | undefined;

beforeAll(async () => {
  barman = await createBarman({ pg1: 'gzip' });
  primary = await createCluster({ conf: toPrimarySettings(barman.toArchiveCommand('pg1')) });
  await primary.start();
  await createFillTable(primary);
  hub = await startHub({ archive: barman.home });
  const key = await createClientKey(hub.dir, 'standby-a');
  await hub.loadKeys([{ key, options: 'servers="pg1"' }]);
  access = await createStandbyAccess(hub, key);
  standby = await createStandby(primary, { conf: { restore_command: toRestoreCommand(access, 'pg1', 'plain') } });
});

afterAll(async () => {
  await standby?.cleanup();
  await primary?.cleanup();
  await access?.cleanup();
  await hub?.stop();
  await barman?.cleanup();
});

async function walFilesOn(cluster: PgCluster): Promise<string[]> {
  const text = await cluster.psql(`select name from pg_ls_waldir() where name ~ '^[0-9A-F]{24}$' order by name`);
  return text === '' ? [] : text.split('\n');
}

it('a standby whose WAL left the primary catches up through walhub, then streams again', async () => {
  const p = primary!;
  const s = standby!;
  await s.start();
  await waitForReplay(s, (await writeAndSwitch(p, 1000)).lsn);
  const stoppedAt = await p.psql(`select pg_walfile_name('${await s.psql('select pg_last_wal_replay_lsn()')}')`);
  await s.stop();

  // Several segments while the standby is away; archived, then a checkpoint lets the primary drop them.
  let last = stoppedAt;
  for (let i = 0; i < 4; i++) last = (await writeAndSwitch(p, 30_000)).segment;
  await barman.archive(p, 'pg1', toSegmentRange(stoppedAt, last));
  await p.psql('checkpoint');
  const target = await p.psql('select pg_current_wal_lsn()');
  const expected = await toTableChecksum(p);

  // What an administrator would look at: the primary no longer has what the standby needs next.
  // The standby has everything up to stoppedAt; from the next segment on, it must get WAL elsewhere.
  const needed = toSegmentRange(stoppedAt, last).slice(1);
  const onPrimary = await walFilesOn(p);
  expect(onPrimary.filter((n) => n <= needed[0]!)).toEqual([]);
  const onlyInArchive = needed.filter((n) => !onPrimary.includes(n));
  expect(onlyInArchive.length).toBeGreaterThanOrEqual(2);

  await s.start();
  await waitForReplay(s, target);
  await waitUntil('the standby to stream from the primary again', async () => {
    return (await s.psql('select status from pg_stat_wal_receiver')) === 'streaming';
  }, { timeoutMs: 60_000, intervalMs: 200 });
  expect(await toTableChecksum(s)).toBe(expected);
  // And it keeps following the primary by streaming alone.
  await p.psql(`insert into fill values (-1, 'after catch-up')`);
  const after = await p.psql('select pg_current_wal_lsn()');
  await waitForReplay(s, after);
  expect(await s.psql('select pad from fill where id = -1')).toBe('after catch-up');

  // Both sides' accounts of every segment that existed nowhere else: PostgreSQL restored it, walhub sent it whole.
  const served = (await hub!.audit()).filter((r) => r.event === 'request' && r.server === 'pg1' && r.result === 'ok');
  for (const name of onlyInArchive) {
    expect(await grepLog(s, new RegExp(`restored log file "${name}" from archive`)), name).not.toEqual([]);
    expect(served.find((r) => r.wal === name), `${name} served by walhub`).toMatchObject({
      key_name: 'standby-a',
      exit: 0,
      bytes: 16 * 1024 * 1024,
      compression: 'gzip',
    });
  }
});
