// Real WAL made by a real PostgreSQL 15: archived segments on timelines 1 and 2,
// the history file of the promotion, and pg_receivewal's .partial.
//
// How: a primary archives timeline 1 while we write and switch segments;
// pg_receivewal streams the current segment briefly (a .partial); a standby made
// with pg_basebackup -R is promoted and archives 00000002.history and timeline 2.
import type { ChildProcess } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  chownToPostgres,
  createCluster,
  createStandby,
  findPgBin,
  spawnAsPostgres,
  toShellWord,
  waitUntil,
  type PgCluster,
} from './postgres.js';

export const SEGMENT_SIZE = 16 * 1024 * 1024;
const SEGMENTS_PER_LOG = 0x1_0000_0000 / SEGMENT_SIZE;
const TIMELINE1_SEGMENTS = 6;
const FORMAT = 1;
const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;

export interface WalFixture {
  /** The directory holding fixture.json, archive/ and streaming/. */
  dir: string;
  /**
   * Timeline-1 segments as archived, absolute paths sorted by name, each 16 MiB; at least 6, consecutive.
   * The last one is the segment the fork happened in, completed and archived by the old primary at its
   * shutdown, so it exists three ways: here, as archivedPartial, and as the first timeline-2 segment.
   */
  segments: string[];
  /** Timeline-2 segments archived by the promoted standby, sorted; the first one's page 0 carries timeline 1. */
  timeline2Segments: string[];
  /** 00000002.history, as archived at promotion. */
  history: string;
  /** pg_receivewal's `<segment>.partial` (timeline 1), padded to 16 MiB; the same segment is archived in full. */
  partial: string;
  /** The last timeline-1 segment renamed `.partial` and archived by the standby when it was promoted. */
  archivedPartial: string;
  /** The backup history file (`<segment>.<offset>.backup`) from pg_basebackup. */
  backupHistory: string;
  systemId: bigint;
  segmentSize: number;
  /** server_version_num of the PostgreSQL that wrote it, e.g. 150018. */
  serverVersionNum: number;
}

/** fixture.json: paths relative to its directory, so a cache dir can move. */
interface FixtureRecord {
  format: number;
  systemId: string;
  segmentSize: number;
  serverVersionNum: number;
  segments: string[];
  timeline2Segments: string[];
  history: string;
  partial: string;
  archivedPartial: string;
  backupHistory: string;
}

interface Segment {
  tli: number;
  segno: number;
}

function parseSegmentName(name: string): Segment {
  const m = SEGMENT_NAME.exec(name);
  if (!m) throw new Error(`not a WAL segment name: ${JSON.stringify(name)}`);
  return { tli: parseInt(m[1] ?? '', 16), segno: parseInt(m[2] ?? '', 16) * SEGMENTS_PER_LOG + parseInt(m[3] ?? '', 16) };
}

function toSegmentName({ tli, segno }: Segment): string {
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');
  return hex(tli) + hex(Math.floor(segno / SEGMENTS_PER_LOG)) + hex(segno % SEGMENTS_PER_LOG);
}

/** Builds the fixture into outDir (replacing archive/, streaming/ and fixture.json there). */
export async function makeWalFixture(outDir: string): Promise<WalFixture> {
  const dir = resolve(outDir);
  await mkdir(dir, { recursive: true });
  // fixture.json goes first and comes back last: a half-built dir is never taken for a fixture.
  for (const name of ['fixture.json', 'archive', 'streaming']) await rm(join(dir, name), { recursive: true, force: true });

  const work = await createWorkDir();
  const clusters: PgCluster[] = [];
  try {
    const archive = join(work.dir, 'archive');
    const settings = { wal_level: 'replica', archive_mode: true, archive_command: toArchiveCommand(archive) };
    const primary = await createCluster({ conf: settings });
    clusters.push(primary);
    await primary.start();
    const systemId = BigInt(await primary.psql('select system_identifier from pg_control_system()'));
    const serverVersionNum = Number(await primary.psql('show server_version_num'));

    const timeline1 = await writeTimeline1(primary);
    await waitForArchive(primary, archive, timeline1);
    const partialName = await receivePartial(primary, join(work.dir, 'receive'));

    const standby = await createStandby(primary, { conf: settings });
    clusters.push(standby);
    await standby.start();
    await forkMidSegment(primary, standby);
    const timeline2 = [await switchSegment(standby), await switchSegment(standby)];
    await waitForArchive(standby, archive, ['00000002.history', ...timeline2]);
    await standby.stop();
    await primary.stop();

    const record = await collect(archive, join(work.dir, 'receive', partialName), dir);
    const full: FixtureRecord = { format: FORMAT, systemId: String(systemId), segmentSize: SEGMENT_SIZE, serverVersionNum, ...record };
    await writeFile(join(dir, 'fixture.json.tmp'), JSON.stringify(full, null, 2) + '\n', { mode: 0o644 });
    await rename(join(dir, 'fixture.json.tmp'), join(dir, 'fixture.json'));
    return toFixture(dir, full);
  } finally {
    for (const cluster of clusters.reverse()) await cluster.cleanup();
    await rm(work.dir, { recursive: true, force: true });
  }
}

/** The fixture in dir if fixture.json is there and every file it names has the right size; else builds it there. */
export async function loadOrMakeWalFixture(cacheDir: string): Promise<WalFixture> {
  return (await loadWalFixture(cacheDir)) ?? makeWalFixture(cacheDir);
}

/** The fixture described by `${dir}/fixture.json`, or undefined if it is missing, stale or incomplete. */
export async function loadWalFixture(dir: string): Promise<WalFixture | undefined> {
  const root = resolve(dir);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(join(root, 'fixture.json'), 'utf8'));
  } catch {
    return undefined;
  }
  if (!isFixtureRecord(parsed) || parsed.format !== FORMAT) return undefined;
  const fixture = toFixture(root, parsed);
  const sized = [...fixture.segments, ...fixture.timeline2Segments, fixture.partial, fixture.archivedPartial];
  const present = [fixture.history, fixture.backupHistory];
  for (const file of [...sized, ...present]) {
    const size = await stat(file).then((s) => s.size, () => -1);
    if (size < 0 || (sized.includes(file) && size !== SEGMENT_SIZE)) return undefined;
  }
  return fixture;
}

function toFixture(dir: string, r: FixtureRecord): WalFixture {
  const abs = (p: string): string => join(dir, p);
  return {
    dir,
    segments: r.segments.map(abs),
    timeline2Segments: r.timeline2Segments.map(abs),
    history: abs(r.history),
    partial: abs(r.partial),
    archivedPartial: abs(r.archivedPartial),
    backupHistory: abs(r.backupHistory),
    systemId: BigInt(r.systemId),
    segmentSize: r.segmentSize,
    serverVersionNum: r.serverVersionNum,
  };
}

function isFixtureRecord(v: unknown): v is FixtureRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  const isStrings = (x: unknown): boolean => Array.isArray(x) && x.every((s) => typeof s === 'string');
  return (
    typeof r['format'] === 'number' && typeof r['systemId'] === 'string' && typeof r['segmentSize'] === 'number' &&
    typeof r['serverVersionNum'] === 'number' && isStrings(r['segments']) && isStrings(r['timeline2Segments']) &&
    typeof r['history'] === 'string' && typeof r['partial'] === 'string' &&
    typeof r['archivedPartial'] === 'string' && typeof r['backupHistory'] === 'string'
  );
}

/** A temp dir owned by postgres with archive/ and receive/ in it: the output dir may be closed to postgres. */
async function createWorkDir(): Promise<{ dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'walhub-wal-'));
  for (const d of [dir, join(dir, 'archive'), join(dir, 'receive')]) {
    await mkdir(d, { recursive: true });
    await chownToPostgres(d);
  }
  return { dir };
}

// Copy then rename, so the archive never holds a half-written segment even if the
// archiver is killed mid-copy (an immediate stop).
function toArchiveCommand(archive: string): string {
  const to = (suffix: string): string => `${toShellWord(archive)}/%f${suffix}`;
  return `cp %p ${to('.tmp')} && mv ${to('.tmp')} ${to('')}`;
}

/** Writes a batch larger than a segment, then small batches and switches; returns the segments completed. */
async function writeTimeline1(primary: PgCluster): Promise<string[]> {
  await primary.psql('create table fill (id int, pad text)');
  const first = parseSegmentName(await primary.psql('select pg_walfile_name(pg_current_wal_lsn())'));
  // Over 16 MiB of WAL in 1 kB records: segments filled to the end, and records that cross a segment boundary.
  await primary.psql(`insert into fill select g, repeat('x', 1000) from generate_series(1, 20000) g`);
  let last = first;
  while (last.segno < first.segno + TIMELINE1_SEGMENTS - 1) last = parseSegmentName(await switchSegment(primary));
  const names: string[] = [];
  for (let segno = first.segno; segno <= last.segno; segno++) names.push(toSegmentName({ tli: first.tli, segno }));
  return names;
}

/**
 * Promotes the standby once it has replayed WAL the primary wrote after the base
 * backup: the fork then falls inside a segment, as in a real failover, so the
 * standby archives that segment's timeline-1 part as .partial and starts
 * timeline 2 in a copy of it (page 0 still says timeline 1).
 */
async function forkMidSegment(primary: PgCluster, standby: PgCluster): Promise<void> {
  await primary.psql(`insert into fill select g, md5(g::text) from generate_series(1, 500) g`);
  const target = await primary.psql('select pg_current_wal_flush_lsn()');
  await waitUntil(`the standby to replay up to ${target}`, async () => {
    return (await standby.psql(`select pg_last_wal_replay_lsn() >= '${target}'`)) === 't';
  });
  await standby.promote();
}

/** Writes a few rows, then pg_switch_wal(); returns the name of the segment it completed. */
async function switchSegment(cluster: PgCluster): Promise<string> {
  await cluster.psql(`insert into fill select g, md5(g::text) from generate_series(1, 500) g`);
  return cluster.psql('select pg_walfile_name(pg_switch_wal())');
}

async function waitForArchive(cluster: PgCluster, archive: string, names: string[]): Promise<void> {
  try {
    await waitUntil(`${names.join(', ')} in ${archive}`, async () => {
      const present = new Set(await readdir(archive));
      return names.every((n) => present.has(n));
    });
  } catch (error) {
    const stats = await cluster.psql('select * from pg_stat_archiver').catch((e: unknown) => String(e));
    throw new Error(`archiving stalled; pg_stat_archiver: ${stats}\n${await cluster.readLogTail()}`, { cause: error });
  }
}

/** Runs pg_receivewal until it has some WAL in its .partial, stops it with SIGINT; returns the file's name. */
async function receivePartial(primary: PgCluster, dir: string): Promise<string> {
  // --synchronous: flush and report at once, so pg_stat_replication shows progress without waiting for -s.
  const child = spawnAsPostgres(findPgBin('pg_receivewal'), ['-D', dir, '--no-loop', '--synchronous'], {
    env: primary.connEnv(),
  });
  let stderr = '';
  let spawnError: Error | undefined;
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((res) => {
    child.once('exit', () => res());
    child.once('error', (error) => {
      spawnError = error;
      res();
    });
  });
  const failIfExited = (): void => {
    if (spawnError) throw spawnError;
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pg_receivewal exited early: ${stderr.trim()}`);
  };
  try {
    // Right after a switch the current segment is empty: pg_receivewal gets no
    // WAL, and opens no file, until something is written.
    const replication = `from pg_stat_replication where application_name = 'pg_receivewal'`;
    await waitUntil('pg_receivewal to connect', async () => {
      failIfExited();
      return (await primary.psql(`select count(*) ${replication} and state = 'streaming'`)) === '1';
    });
    await primary.psql(`insert into fill select g, md5(g::text) from generate_series(1, 500) g`);
    const target = await primary.psql('select pg_current_wal_flush_lsn()');
    await waitUntil(`pg_receivewal to receive up to ${target}`, async () => {
      failIfExited();
      return (await primary.psql(`select coalesce(bool_and(flush_lsn >= '${target}'), false) ${replication}`)) === 't';
    });
    const name = (await readdir(dir)).find((n) => n.endsWith('.partial'));
    if (name === undefined) throw new Error(`pg_receivewal wrote no .partial in ${dir}: ${stderr.trim()}`);
    await stopChild(child, exited);
    return name;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Moves the archive and the .partial into dir as files of ours, mode 0644; returns fixture.json's lists. */
async function collect(archive: string, partial: string, dir: string): Promise<Omit<FixtureRecord, 'format' | 'systemId' | 'segmentSize' | 'serverVersionNum'>> {
  await mkdir(join(dir, 'archive'), { recursive: true });
  await mkdir(join(dir, 'streaming'), { recursive: true });
  const names = (await readdir(archive)).sort();
  const pick = (re: RegExp): string[] => names.filter((n) => re.test(n));
  const lists = {
    segments: pick(/^00000001[0-9A-F]{16}$/),
    timeline2Segments: pick(/^00000002[0-9A-F]{16}$/),
    history: pick(/^00000002\.history$/),
    archivedPartial: pick(/^00000001[0-9A-F]{16}\.partial$/),
    backupHistory: pick(/^00000001[0-9A-F]{16}\.[0-9A-F]{8}\.backup$/),
  };
  for (const [what, list] of Object.entries(lists)) {
    if (list.length === 0) throw new Error(`the archive has no ${what}: ${names.join(' ')}`);
  }
  for (const name of Object.values(lists).flat()) await moveOut(join(archive, name), join(dir, 'archive', name));
  const partialName = partial.slice(partial.lastIndexOf('/') + 1);
  await moveOut(partial, join(dir, 'streaming', partialName));
  const rel = (name: string): string => `archive/${name}`;
  const only = (list: string[]): string => rel(list[0] ?? '');
  const record = {
    segments: lists.segments.map(rel),
    timeline2Segments: lists.timeline2Segments.map(rel),
    history: only(lists.history),
    partial: `streaming/${partialName}`,
    archivedPartial: only(lists.archivedPartial),
    backupHistory: only(lists.backupHistory),
  };
  for (const file of [...record.segments, ...record.timeline2Segments, record.partial, record.archivedPartial]) {
    const { size } = await stat(join(dir, file));
    if (size !== SEGMENT_SIZE) throw new Error(`${file} is ${size} bytes, not ${SEGMENT_SIZE}`);
  }
  return record;
}

async function moveOut(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await copyFile(from, to);
    await unlink(from);
  }
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  if (uid !== undefined && gid !== undefined) await chown(to, uid, gid);
  await chmod(to, 0o644);
}
