// Scenario 5: walhub unreachable. Bare ssh exits 255 when it cannot connect,
// and PostgreSQL takes any restore_command status above 125 as fatal: the
// standby shuts down. The README's recommended restore_command turns 255 into
// 5, "not available now": an archive-only standby keeps running while walhub
// is down and catches up once it is back.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sha256 } from '../helpers/archive.js';
import { createBarman, type Barman } from '../helpers/barman.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { chownToPostgres, createCluster, waitUntil, type PgCluster } from '../helpers/postgres.js';
import {
  createFillTable,
  grepLog,
  toPrimarySettings,
  toSegmentRange,
  toTableChecksum,
  waitForReplay,
  writeAndSwitch,
} from '../helpers/replication.js';
import {
  createStandbyAccess,
  runRestoreCommand,
  toRestoreCommand,
  type StandbyAccess,
} from '../helpers/restore-command.js';
import { startArchiveOnlyStandby } from '../helpers/recovery-setup.js';
import { createClientKey, type ClientKey } from '../helpers/ssh-client.js';

const DOWN_FOR_MS = 12_000;

let barman: Barman;
let primary: PgCluster | undefined;
let standby: PgCluster | undefined;
let hub: Hub | undefined;
/** Kept across restarts: the host key (so known_hosts stays right) and the audit log live here. */
let hubDir: string;
let key: ClientKey;
let access: StandbyAccess | undefined;
let scratch: string;

function startOurHub(port?: number): Promise<Hub> {
  return startHub({ archive: barman.home, dir: hubDir, keys: [{ key, options: 'servers="pg1"' }], ...(port ? { port } : {}) });
}

beforeAll(async () => {
  barman = await createBarman({ pg1: 'gzip' });
  primary = await createCluster({ conf: toPrimarySettings(barman.toArchiveCommand('pg1')) });
  await primary.start();
  await createFillTable(primary);
  hubDir = await mkdtemp(join(tmpdir(), 'walhub-hub-'));
  key = await createClientKey(hubDir, 'standby-a');
  hub = await startOurHub();
  access = await createStandbyAccess(hub, key);
  scratch = await mkdtemp(join(tmpdir(), 'walhub-restore-'));
  await chownToPostgres(scratch);
});

afterAll(async () => {
  await standby?.cleanup();
  await primary?.cleanup();
  await access?.cleanup();
  await hub?.stop();
  await barman?.cleanup();
  if (hubDir) await rm(hubDir, { recursive: true, force: true });
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function expectStillInRecovery(cluster: PgCluster): Promise<void> {
  const inRecovery = await cluster.psql('select pg_is_in_recovery()').catch(async (error: unknown) => {
    throw new Error(`the standby is gone; its log:\n${await cluster.readLogTail()}`, { cause: error });
  });
  expect(inRecovery).toBe('t');
}

async function restartHub(): Promise<void> {
  hub = await startOurHub(hub!.port);
}

it('by hand, as postgres: the plain command exits 255 while walhub is down, the recommended one 5', async () => {
  const { segment } = await writeAndSwitch(primary!, 1000);
  await barman.archive(primary!, 'pg1', [segment]);
  const plain = toRestoreCommand(access!, 'pg1', 'plain');
  const recommended = toRestoreCommand(access!, 'pg1', 'recommended');
  const dest = join(scratch, 'RECOVERYXLOG');

  const up = await runRestoreCommand(recommended, segment, dest);
  expect(up).toMatchObject({ status: 0, stderr: '' });
  expect(sha256(await readFile(dest))).toBe(sha256(await readFile(join(barman.shipped, segment))));
  const missing = await runRestoreCommand(recommended, '0000000100000000000000FF', dest);
  expect(missing.status).toBe(1);
  expect(missing.stderr).toContain('walhub: WAL file not found in the archive (pg1 0000000100000000000000FF)');

  // A ControlMaster is open to walhub now; walhub must still stop at once.
  expect(await hub!.stop()).toBe(0);
  const bare = await runRestoreCommand(plain, segment, dest);
  expect(bare.status).toBe(255);
  expect(bare.stderr).toMatch(/Connection refused/);
  const mapped = await runRestoreCommand(recommended, segment, dest);
  expect(mapped.status).toBe(5);
  expect(mapped.stderr).toMatch(/Connection refused/);

  await restartHub();
  const back = await runRestoreCommand(recommended, segment, dest);
  expect(back).toMatchObject({ status: 0, stderr: '' });
});

it('an archive-only standby keeps running while walhub is down, and catches up when it is back', async () => {
  const p = primary!;
  const stopped = hub!.process.exitCode !== null || hub!.process.signalCode !== null;
  if (stopped) await restartHub(); // the test above failed while walhub was down
  const s = (standby = await startArchiveOnlyStandby(p, barman, access!));

  expect(await hub!.stop()).toBe(0);
  const downSince = Date.now();
  const refusedBefore = (await grepLog(s, /Connection refused/)).length;
  const { segment: first } = await writeAndSwitch(p, 30_000);
  const { segment: last, lsn: target } = await writeAndSwitch(p, 1000);
  await barman.archive(p, 'pg1', toSegmentRange(first, last));
  const expected = await toTableChecksum(p);

  // Several failed attempts, each answered "not available now", over more than 10 s.
  await waitUntil('the standby to retry for a while with walhub down', async () => {
    await expectStillInRecovery(s);
    const refused = (await grepLog(s, /Connection refused/)).length - refusedBefore;
    return Date.now() - downSince > DOWN_FOR_MS && refused >= 3;
  }, { timeoutMs: 60_000, intervalMs: 500 });
  expect(await s.psql(`select pg_last_wal_replay_lsn() < '${target}'`)).toBe('t');
  expect(await grepLog(s, /FATAL|PANIC|could not restore file/)).toEqual([]);

  await restartHub();
  await waitForReplay(s, target);
  await expectStillInRecovery(s);
  expect(await toTableChecksum(s)).toBe(expected);
  const served = (await hub!.audit()).filter((r) => r.event === 'request' && r.result === 'ok');
  for (const name of toSegmentRange(first, last)) {
    expect(served.find((r) => r.wal === name), name).toBeDefined();
    expect(await grepLog(s, new RegExp(`restored log file "${name}" from archive`)), name).not.toEqual([]);
  }
});
