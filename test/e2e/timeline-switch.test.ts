// Scenario 4: a failover. The primary goes away, standby A is promoted and
// archives timeline 2 (00000002.history first) into the same Barman server.
// Standby B cannot stream from A (it only knows the old primary); with
// recovery_target_timeline = 'latest' and the recommended restore_command
// (ControlMaster) it finds the history file through walhub and follows A.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
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
let standbyA: PgCluster | undefined;
let standbyB: PgCluster | undefined;
let hub: Hub | undefined;
let accessA: StandbyAccess | undefined;
let accessB: StandbyAccess | undefined;

beforeAll(async () => {
  barman = await createBarman({ pg1: 'gzip' });
  primary = await createCluster({ conf: toPrimarySettings(barman.toArchiveCommand('pg1')) });
  await primary.start();
  await createFillTable(primary);
  hub = await startHub({ archive: barman.home });
  const keyA = await createClientKey(hub.dir, 'standby-a');
  const keyB = await createClientKey(hub.dir, 'standby-b');
  await hub.loadKeys([keyA, keyB].map((key) => ({ key, options: 'servers="pg1"' })));
  accessA = await createStandbyAccess(hub, keyA);
  accessB = await createStandbyAccess(hub, keyB);
  // A keeps the primary's archive_command: once promoted, it archives to the same Barman server.
  standbyA = await createStandby(primary, { conf: { restore_command: toRestoreCommand(accessA, 'pg1', 'recommended') } });
  standbyB = await createStandby(primary, {
    conf: {
      restore_command: toRestoreCommand(accessB, 'pg1', 'recommended'),
      recovery_target_timeline: 'latest',
      archive_mode: false,
      log_min_messages: 'log',
    },
  });
});

afterAll(async () => {
  await standbyB?.cleanup();
  await standbyA?.cleanup();
  await primary?.cleanup();
  await accessA?.cleanup();
  await accessB?.cleanup();
  await hub?.stop();
  await barman?.cleanup();
});

it('a standby follows the promoted one onto timeline 2 through walhub', async () => {
  const p = primary!;
  const a = standbyA!;
  const b = standbyB!;
  await a.start();
  await b.start();
  const { lsn: before } = await writeAndSwitch(p, 1000);
  await waitForReplay(a, before);
  await waitForReplay(b, before);

  await p.stop();
  await a.promote();
  // pg_control shows timeline 2 only after the checkpoint that follows the promotion; the WAL position at once.
  const forkSegment = await a.psql('select pg_walfile_name(pg_current_wal_lsn())');
  expect(forkSegment.startsWith('00000002')).toBe(true);
  // Written on A only, after the promotion; a checkpoint in between gives B a restartpoint on timeline 2.
  await writeAndSwitch(a, 20_000);
  await a.psql('checkpoint');
  const { segment: last, lsn: target } = await writeAndSwitch(a, 1000);
  await barman.archive(a, 'pg1', ['00000002.history', ...toSegmentRange(forkSegment, last)]);
  const expected = await toTableChecksum(a);

  await waitForReplay(b, target);
  expect(await b.psql('select pg_is_in_recovery()')).toBe('t');
  expect(await toTableChecksum(b)).toBe(expected);
  expect(await grepLog(b, /new target timeline is 2/)).not.toEqual([]);
  // pg_control, as pg_controldata shows it, after B's next restartpoint.
  await waitUntil('a restartpoint on timeline 2 on B', async () => {
    await b.psql('checkpoint');
    return (await b.psql('select timeline_id from pg_control_checkpoint()')) === '2';
  }, { timeoutMs: 30_000, intervalMs: 500 });

  const requests = (await hub!.audit()).filter((r) => r.event === 'request' && r.key_name === 'standby-b');
  const ok = requests.filter((r) => r.result === 'ok');
  // Served from incoming/ or from wals/, whichever B asked first: the bytes are the same.
  const history = await stat(join(barman.shipped, '00000002.history'));
  expect(ok.find((r) => r.wal === '00000002.history')).toMatchObject({ exit: 0, bytes: history.size });
  for (const name of toSegmentRange(forkSegment, last)) {
    expect(ok.find((r) => r.wal === name), name).toMatchObject({ exit: 0, bytes: 16 * 1024 * 1024 });
  }
  // ControlMaster: one SSH connection carried several requests.
  expect(new Set(requests.map((r) => r.conn)).size).toBeLessThan(requests.length);
});
