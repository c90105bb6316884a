// An archive that holds every format at once, as one kept across Barman
// upgrades does: segments archived by Debian's Barman 3.4 (gzip), then some
// of them rewritten the way Barman 3.17 writes each of its formats. A base
// backup without WAL (pg_basebackup -X none, recovery.signal) replays all of
// them through walhub and ends with exactly the data the archive holds.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { archivedPath } from '../helpers/archive.js';
import type { PgCluster } from '../helpers/postgres.js';
import { BARMAN_WRITERS, writeAsBarman } from '../helpers/python-writers.js';
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

const COMPRESSION = { pygzip: 'gzip', pybzip2: 'bzip2', xz: 'xz', zstd: 'zstd', lz4: 'lz4', snappy: 'snappy' } as const;

let setup: RecoverySetup | undefined;
let restored: PgCluster | undefined;

beforeAll(async () => {
  setup = await createRecoverySetup('gzip');
});

afterAll(async () => {
  await restored?.cleanup();
  await setup?.cleanup();
});

it('a recovery replays segments of every format, Barman 3.4 and 3.17 mixed, through walhub', async () => {
  const { primary: p, access, barman, hub } = setup!;
  restored = await createRecoveryCluster(p, toRestoreCommand(access, 'pg1', 'plain'));
  const startFile = await toBackupStartFile(restored);

  let last = startFile;
  for (let i = 0; i < BARMAN_WRITERS.length + 1; i++) last = (await writeAndSwitch(p, 30_000)).segment;
  const archived = toSegmentRange(startFile, last);
  await barman.archive(p, 'pg1', archived);
  const expected = await toTableChecksum(p);

  // The first segments stay as Barman 3.4 wrote them (gzip); each later one is rewritten by one of 3.17's writers.
  const formats = new Map<string, string>(archived.map((name) => [name, 'gzip']));
  for (const [i, writer] of BARMAN_WRITERS.entries()) {
    const name = archived[archived.length - 1 - i]!;
    await writeAsBarman(writer, join(barman.shipped, name), archivedPath(barman.serverDir('pg1'), name));
    formats.set(name, COMPRESSION[writer]);
  }
  expect(new Set(formats.values()).size).toBe(6);

  await restored.start();
  await waitForPromotion(restored, 120_000);
  expect(await toTableChecksum(restored)).toBe(expected);
  const requests = (await hub.audit()).filter((r) => r.event === 'request' && r.result === 'ok');
  for (const name of archived) {
    expect(await grepLog(restored, new RegExp(`restored log file "${name}" from archive`)), name).not.toEqual([]);
    expect(requests.find((r) => r.wal === name), name).toMatchObject({ compression: formats.get(name), bytes: 16 * 1024 * 1024 });
  }
});
