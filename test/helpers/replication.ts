// Writing WAL on a primary and checking what a standby has, the way an
// administrator would: LSNs, segment names, a checksum of the table's rows.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chownToPostgres, createStandby, waitUntil, type PgCluster, type PgSettings } from './postgres.js';

/** Settings for a primary that ships WAL and recycles pg_wal fast (small, quick, not durable). */
export function toPrimarySettings(archiveCommand: string): PgSettings {
  return {
    wal_level: 'replica',
    archive_mode: true,
    archive_command: archiveCommand,
    // No slot and nothing kept for standbys: pg_wal holds about two segments past a checkpoint.
    wal_keep_size: 0,
    max_wal_size: '32MB',
    min_wal_size: '32MB',
    checkpoint_timeout: '1h',
    // A standby asks the archive again this soon after a miss (default 5 s).
    wal_retrieve_retry_interval: '1s',
  };
}

const SEGMENT_SIZE = 16 * 1024 * 1024;
const SEGMENTS_PER_LOG = 0x1_0000_0000 / SEGMENT_SIZE;
const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;

function toHex(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}

interface Segment {
  tli: string;
  segno: number;
}

function parseSegmentName(name: string): Segment {
  const m = SEGMENT_NAME.exec(name);
  if (!m) throw new Error(`not a WAL segment name: ${JSON.stringify(name)}`);
  return { tli: m[1]!, segno: parseInt(m[2]!, 16) * SEGMENTS_PER_LOG + parseInt(m[3]!, 16) };
}

function toSegmentName({ tli, segno }: Segment): string {
  return tli + toHex(Math.floor(segno / SEGMENTS_PER_LOG)) + toHex(segno % SEGMENTS_PER_LOG);
}

/** Segment names from `first` to `last` (inclusive), on first's timeline, for 16 MiB segments. */
export function toSegmentRange(first: string, last: string): string[] {
  const from = parseSegmentName(first);
  const to = parseSegmentName(last);
  const names: string[] = [];
  for (let segno = from.segno; segno <= to.segno; segno++) names.push(toSegmentName({ tli: from.tli, segno }));
  return names;
}

/** The segment after `name` on the same timeline. */
export function toNextSegment(name: string): string {
  const segment = parseSegmentName(name);
  return toSegmentName({ ...segment, segno: segment.segno + 1 });
}

export async function createFillTable(primary: PgCluster): Promise<void> {
  await primary.psql('create table fill (id bigint primary key, pad text)');
}

export interface Switched {
  /** The segment the switch completed. */
  readonly segment: string;
  /** What pg_switch_wal() returned: the end of the switch record, where a standby that replayed that segment stands. */
  readonly lsn: string;
}

/**
 * Inserts `rows` rows (about 600 bytes of WAL each: 30000 rows fill a segment),
 * then pg_switch_wal(). Wait for the returned lsn, not for pg_current_wal_lsn():
 * the primary may write more (a standby snapshot, a checkpoint) into the next
 * segment, which is not archived yet.
 */
export async function writeAndSwitch(cluster: PgCluster, rows: number): Promise<Switched> {
  await cluster.psql(
    `insert into fill select m.n + g, repeat(md5(g::text), 16) ` +
      `from (select coalesce(max(id), 0) as n from fill) m, generate_series(1, ${rows}) g`,
  );
  const [lsn, segment] = (await cluster.psql('select s, pg_walfile_name(s) from pg_switch_wal() s')).split('|');
  return { segment: segment!, lsn: lsn! };
}

/** md5 over every row in id order: equal on two clusters means the same data. */
export async function toTableChecksum(cluster: PgCluster): Promise<string> {
  return cluster.psql(`select count(*) || ':' || coalesce(md5(string_agg(f::text, ',' order by id)), '') from fill f`);
}

/** Waits until the standby has replayed up to lsn (a primary's pg_current_wal_lsn()). */
export async function waitForReplay(standby: PgCluster, lsn: string, timeoutMs = 90_000): Promise<void> {
  try {
    await waitUntil(`${standby.dataDir} to replay up to ${lsn}`, async () => {
      return (await standby.psql(`select pg_last_wal_replay_lsn() >= '${lsn}'`)) === 't';
    }, { timeoutMs, intervalMs: 200 });
  } catch (error) {
    throw new Error(`${(error as Error).message}; standby log:\n${await standby.readLogTail()}`, { cause: error });
  }
}

/** Removes primary_conninfo that pg_basebackup -R wrote: the cluster gets WAL from restore_command only. */
export async function dropPrimaryConninfo(cluster: PgCluster): Promise<void> {
  const path = join(cluster.dataDir, 'postgresql.auto.conf');
  const kept = (await readFile(path, 'utf8')).split('\n').filter((l) => !l.startsWith('primary_conninfo'));
  await writeFile(path, kept.join('\n'));
}

/** Lines of the server log that match re (the whole log, not just its tail). */
export async function grepLog(cluster: PgCluster, re: RegExp): Promise<string[]> {
  const text = await readFile(cluster.logFile, 'utf8').catch(() => '');
  return text.split('\n').filter((l) => re.test(l));
}

/**
 * A cluster for archive recovery (recovery.signal, no standby.signal) from
 * `pg_basebackup -X none` (after createStandby's -X stream, so it wins): the
 * backup holds no WAL, every segment must come through restore_command.
 */
export async function createRecoveryCluster(primary: PgCluster, restoreCommand: string): Promise<PgCluster> {
  const cluster = await createStandby(primary, {
    basebackupArgs: ['-X', 'none'],
    conf: { restore_command: restoreCommand, archive_mode: false, log_min_messages: 'log' },
  });
  await rm(join(cluster.dataDir, 'standby.signal'));
  await dropPrimaryConninfo(cluster);
  const signal = join(cluster.dataDir, 'recovery.signal');
  await writeFile(signal, '');
  await chownToPostgres(signal);
  return cluster;
}

/** The segment a base backup starts in, from its backup_label. */
export async function toBackupStartFile(cluster: PgCluster): Promise<string> {
  const label = await readFile(join(cluster.dataDir, 'backup_label'), 'utf8');
  const name = /^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$/m.exec(label)?.[1];
  if (!name) throw new Error(`no START WAL LOCATION in ${cluster.dataDir}/backup_label`);
  return name;
}

/** Waits until archive recovery has ended and the cluster has promoted. */
export async function waitForPromotion(cluster: PgCluster, timeoutMs = 90_000): Promise<void> {
  await waitUntil('archive recovery to end', async () => (await cluster.psql('select pg_is_in_recovery()')) === 'f', {
    timeoutMs,
    intervalMs: 200,
  });
}
