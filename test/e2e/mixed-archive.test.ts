// An archive that holds every format at once, as one kept across Barman
// upgrades does: segments archived by Debian's Barman 3.4 (gzip), then some
// of them rewritten the way Barman 3.17 writes each of its formats. A base
// backup without WAL (pg_basebackup -X none, recovery.signal) replays all of
// them through walhub and ends with exactly the data the archive holds.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { archivedPath } from '../helpers/archive.js';
import { createBarman, type Barman } from '../helpers/barman.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { createCluster, waitUntil, type PgCluster } from '../helpers/postgres.js';
import { BARMAN_WRITERS, writeAsBarman } from '../helpers/python-writers.js';
import {
  createArchiveRecovery,
  createFillTable,
  grepLog,
  toPrimarySettings,
  toSegmentRange,
  toTableChecksum,
  writeAndSwitch,
} from '../helpers/replication.js';
import { createStandbyAccess, toRestoreCommand, type StandbyAccess } from '../helpers/restore-command.js';
import { createClientKey } from '../helpers/ssh-client.js';

const COMPRESSION = { pygzip: 'gzip', pybzip2: 'bzip2', xz: 'xz', zstd: 'zstd', lz4: 'lz4', snappy: 'snappy' } as const;

let barman: Barman;
let primary: PgCluster | undefined;
let restored: PgCluster | undefined;
let hub: Hub | undefined;
let access: StandbyAccess | undefined;

beforeAll(async () => {
  barman = await createBarman({ pg1: 'gzip' });
  primary = await createCluster({ conf: toPrimarySettings(barman.toArchiveCommand('pg1')) });
  await primary.start();
  await createFillTable(primary);
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

it('a recovery replays segments of every format, Barman 3.4 and 3.17 mixed, through walhub', async () => {
  const p = primary!;
  const recovery = await createArchiveRecovery(p, toRestoreCommand(access!, 'pg1', 'plain'));
  restored = recovery.cluster;
  const { startFile } = recovery;

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
  await waitUntil('archive recovery to end', async () => (await restored!.psql('select pg_is_in_recovery()')) === 'f', {
    timeoutMs: 120_000,
    intervalMs: 200,
  });
  expect(await toTableChecksum(restored)).toBe(expected);
  const requests = (await hub!.audit()).filter((r) => r.event === 'request' && r.result === 'ok');
  for (const name of archived) {
    expect(await grepLog(restored, new RegExp(`restored log file "${name}" from archive`)), name).not.toEqual([]);
    expect(requests.find((r) => r.wal === name), name).toMatchObject({ compression: formats.get(name), bytes: 16 * 1024 * 1024 });
  }
});
