// Point-in-time recovery without a recovery target, through walhub, with a
// damaged segment in the middle of the archive (a gzip file whose payload is
// another segment). PostgreSQL ends archive recovery and promotes on any exit
// from 1 to 125: walhub's exit 4 would end it at the damage, silently, rows
// lost. With `get-wal --fatal-errors` walhub exits 132 instead, PostgreSQL stops
// with FATAL, and once the file is repaired a second start recovers everything.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archivedPath } from '../helpers/archive.js';
import { waitUntil, type PgCluster } from '../helpers/postgres.js';
import { createRecoverySetup, type RecoverySetup } from '../helpers/recovery-setup.js';
import {
  createRecoveryCluster,
  grepLog,
  toBackupStartFile,
  toSegmentRange,
  toTableChecksum,
  waitForPromotion,
  writeAndSwitch,
} from '../helpers/replication.js';
import { toRestoreCommand } from '../helpers/restore-command.js';

let setup: RecoverySetup | undefined;
const restored: PgCluster[] = [];
let withOption: PgCluster;
let without: PgCluster;
let damaged: string;
let damagedPath: string;
let goodBytes: Buffer;
let expected: string;

/** One more cluster restoring the primary's base backup through walhub, with these get-wal options. */
async function createRestored(p: PgCluster, getWalOptions: readonly string[]): Promise<PgCluster> {
  const cluster = await createRecoveryCluster(p, toRestoreCommand(setup!.access, 'pg1', 'plain', getWalOptions));
  restored.push(cluster);
  return cluster;
}

beforeAll(async () => {
  setup = await createRecoverySetup('gzip');
  const { barman, primary } = setup;
  withOption = await createRestored(primary, ['--fatal-errors']);
  without = await createRestored(primary, []);

  // After both backups: four more segments, all archived; the third is then damaged.
  const first = await toBackupStartFile(withOption);
  let last = first;
  const written: string[] = [];
  for (let i = 0; i < 4; i++) written.push((last = (await writeAndSwitch(primary, 30_000)).segment));
  await barman.archive(primary, 'pg1', toSegmentRange(first, last));
  expected = await toTableChecksum(primary);
  damaged = written[2]!;
  damagedPath = archivedPath(barman.serverDir('pg1'), damaged);
  goodBytes = await readFile(damagedPath);
  // What a broken copy or a mix-up leaves: gzip, the right size, another segment's bytes.
  await writeFile(damagedPath, gzipSync(await readFile(join(barman.shipped, written[1]!))));
}, 300_000);

afterAll(async () => {
  for (const cluster of restored) await cluster.cleanup();
  await setup?.cleanup();
});

describe('point-in-time recovery with a damaged segment in the archive', () => {
  it('without --fatal-errors, promotes at the damage: rows are lost and nothing says so', async () => {
    await without.start();
    await waitForPromotion(without);
    const [expectedRows] = expected.split(':');
    const [rows] = (await toTableChecksum(without)).split(':');
    expect(Number(rows)).toBeLessThan(Number(expectedRows));
    expect(await grepLog(without, /FATAL/)).toEqual([]);
    const requests = (await setup!.hub.audit()).filter((r) => r.event === 'request' && r.wal === damaged);
    expect(requests[0]).toMatchObject({ result: 'damaged', exit: 4 });
  }, 180_000);

  it('with --fatal-errors, stops with FATAL at the damage, and after repair recovers every row', async () => {
    await withOption.start().catch(() => undefined); // pg_ctl may or may not see it up before the FATAL
    await waitUntil('PostgreSQL to stop on FATAL', async () => !existsSync(join(withOption.dataDir, 'postmaster.pid')), {
      timeoutMs: 90_000,
      intervalMs: 200,
    });
    expect(await grepLog(withOption, new RegExp(`FATAL:  could not restore file "${damaged}" from archive: child process exited with exit code 132`))).toHaveLength(1);
    expect(await grepLog(withOption, /archive recovery complete|selected new timeline/)).toEqual([]);
    const refused = (await setup!.hub.audit()).filter((r) => r.event === 'request' && r.wal === damaged && String(r.command).includes('--fatal-errors'));
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ result: 'damaged', exit: 132 });

    // The administrator repairs the archive and starts again.
    await writeFile(damagedPath, goodBytes);
    await withOption.start();
    await waitForPromotion(withOption);
    expect(await toTableChecksum(withOption)).toBe(expected);
    expect(await grepLog(withOption, /archive recovery complete/)).toHaveLength(1);
  }, 240_000);
});
