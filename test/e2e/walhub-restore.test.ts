// etc/standby/walhub-restore, the README's restore_command for catching up:
// it fetches the segment asked for and, in the background, the ones after it
// into a spool, so that PostgreSQL's next request is a rename. Run as the
// postgres user, with the real OpenSSH client (ControlMaster from its own
// ssh_config), against walhub serving a real Barman archive, and by a real
// PostgreSQL recovering through it.
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archivedPath, sha256 } from '../helpers/archive.js';
import { chownToPostgres, findFreePort, waitUntil, type PgCluster } from '../helpers/postgres.js';
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
import { requireProgram } from '../helpers/programs.js';
import { runRestoreCommand } from '../helpers/restore-command.js';

const SCRIPT = fileURLToPath(new URL('../../etc/standby/walhub-restore', import.meta.url));
const SEGMENT_SIZE = 16 * 1024 * 1024;
const SEGMENT_NAME = /^[0-9A-F]{24}$/;
/** What a spool keeps besides segments: the last name asked for, the boot it belongs to, the two fetchers' locks, the segment size. */
const isSpoolOwnFile = (name: string) => /^\.(asked|boot|fetcher-[12]|segment-size)$/.test(name);

let setup: RecoverySetup | undefined;
let restored: PgCluster | undefined;
/** Where the postgres user has the script and its ssh_config, as a standby would. */
let home: string;
let script: string;
let sshConfig: string;
/** Segments archived after the restored cluster's backup, in order; at least 6. */
let archived: string[];
let last: string;

beforeAll(async () => {
  // What the script runs, besides sh: a standby without them gets the package named.
  requireProgram('flock', 'util-linux');
  requireProgram('ssh', 'openssh-client');
  const s = (setup = await createRecoverySetup('zstd'));
  const p = s.primary;
  restored = await createRecoveryCluster(p, 'false');
  const startFile = await toBackupStartFile(restored);
  last = startFile;
  for (let i = 0; i < 6; i++) last = (await writeAndSwitch(p, 20_000)).segment;
  archived = toSegmentRange(startFile, last);
  await s.barman.archive(p, 'pg1', archived);

  // As installed on a standby: the script where postgres can run it, and the
  // README's ssh_config block pointed at this hub.
  home = s.access.dir;
  script = join(home, 'walhub-restore');
  await copyFile(SCRIPT, script);
  await chmod(script, 0o755);
  sshConfig = await writeSshConfig('ssh_config', s.access.port);
  for (const path of [script, sshConfig]) await chownToPostgres(path);
});

afterAll(async () => {
  await restored?.cleanup();
  await setup?.cleanup();
});

async function writeSshConfig(file: string, port: number): Promise<string> {
  const { access } = setup!;
  const path = join(home, file);
  const lines = [
    'Host walhub-test',
    '    HostName 127.0.0.1',
    `    Port ${port}`,
    '    User walhub',
    `    IdentityFile ${access.keyPath}`,
    '    IdentitiesOnly yes',
    `    UserKnownHostsFile ${access.knownHosts}`,
    '    StrictHostKeyChecking yes',
    '    BatchMode yes',
    '    ConnectTimeout 10',
    '    ControlMaster auto',
    '    ControlPersist 60',
    // access.cleanup() ends the master at this path.
    `    ControlPath ${access.controlDir}/%C`,
  ];
  await writeFile(path, `${lines.join('\n')}\n`, { mode: 0o600 });
  await chownToPostgres(path);
  return path;
}

/** A spool directory of the test's own, under the postgres user's directory. */
function spoolFor(name: string): string {
  return join(home, `spool-${name}`);
}

function restoreCommand(spool: string, options = '', config = sshConfig): string {
  return `${script} -F ${config} -d ${spool} ${options} walhub-test pg1 %f %p`.replace(/ +/g, ' ');
}

async function restoreByHand(command: string, wal: string): Promise<{ status: number; stderr: string; sha?: string }> {
  const dest = join(home, 'RECOVERYXLOG');
  await rm(dest, { force: true });
  const run = await runRestoreCommand(command, wal, dest, { cwd: home });
  const bytes = await readFile(dest).catch(() => undefined);
  return { ...run, ...(bytes && run.status === 0 ? { sha: sha256(bytes) } : {}) };
}

async function shippedSha(name: string): Promise<string> {
  return sha256(await readFile(join(setup!.barman.shipped, name)));
}

/**
 * The directory for this hub and server under a spool: HOST@PATH/pg1, PATH
 * being the -F file's path with its slashes made % (another file may send the
 * same host name to another hub).
 */
async function spoolDir(spool: string): Promise<string> {
  return join(spool, `walhub-test@${sshConfig.replaceAll('/', '%')}`, 'pg1');
}

/** What the spool holds: complete segments, and anything else (its own files, locks, transfers under way). */
async function listSpool(spool: string): Promise<{ segments: string[]; others: string[] }> {
  const names = (await readdir(await spoolDir(spool)).catch(() => [] as string[])).sort();
  return { segments: names.filter((n) => SEGMENT_NAME.test(n)), others: names.filter((n) => !SEGMENT_NAME.test(n)) };
}

async function requestsFor(wal: string): Promise<Record<string, unknown>[]> {
  return (await setup!.hub.audit()).filter((r) => r.event === 'request' && r.wal === wal);
}

describe('walhub-restore by hand, as PostgreSQL runs it', () => {
  it('hands over the segment asked for, and fetches the next ones before they are asked for', async () => {
    const spool = spoolFor('ahead');
    const command = restoreCommand(spool, '-n 3');
    const [first, second, third, fourth, fifth] = archived as [string, string, string, string, string];

    const got = await restoreByHand(command, first);
    expect(got).toMatchObject({ status: 0, stderr: '', sha: await shippedSha(first) });
    // The three after it arrive in the spool, whole, with nobody asking for them; no more than three.
    await waitUntil('three segments fetched ahead', async () => (await listSpool(spool)).segments.length === 3 || undefined);
    const ahead = await listSpool(spool);
    expect(ahead.segments).toEqual([second, third, fourth]);
    expect(ahead.others.filter((n) => n !== '.fetcher-2')).toEqual(['.asked', '.boot', '.fetcher-1', '.segment-size']);
    for (const name of ahead.segments) expect(sha256(await readFile(join(await spoolDir(spool), name))), name).toBe(await shippedSha(name));
    expect(await requestsFor(second)).toHaveLength(1);

    // The next request is answered from the spool: same bytes, no new request to walhub.
    const next = await restoreByHand(command, second);
    expect(next).toMatchObject({ status: 0, stderr: '', sha: await shippedSha(second) });
    expect(await requestsFor(second)).toHaveLength(1);
    // The window moved on by one: the segment handed over left the spool, the next one came in.
    await waitUntil('the fifth segment fetched ahead', async () => (await listSpool(spool)).segments.includes(fifth) || undefined);
    expect((await listSpool(spool)).segments).toEqual([third, fourth, fifth]);
  });

  it('passes walhub\'s "not found" on as exit 1, and fetches nothing ahead of it', async () => {
    const spool = spoolFor('missing');
    const missing = toNextSegment(last);
    const got = await restoreByHand(restoreCommand(spool), missing);
    expect(got.status).toBe(1);
    expect(got.stderr).toBe(`walhub: WAL file not found in the archive (pg1 ${missing})\n`);
    // A standby at the end of the archive asks every 5 s: each miss is one request, not five.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await requestsFor(toNextSegment(missing))).toEqual([]);
    expect((await listSpool(spool)).segments).toEqual([]);
  });

  it('answers ssh failures with 5 so that a standby retries; -P passes 255 on and asks for --fatal-errors', async () => {
    const spool = spoolFor('unreachable');
    const closed = await writeSshConfig('ssh_config_closed', await findFreePort());
    const got = await restoreByHand(restoreCommand(spool, '', closed), archived[0]!);
    expect(got.status).toBe(5);
    expect(got.stderr).toMatch(/Connection refused/);
    expect((await restoreByHand(restoreCommand(spool, '-P', closed), archived[0]!)).status).toBe(255);

    // -P against the hub: the command walhub receives carries --fatal-errors.
    const before = (await requestsFor(archived[0]!)).length;
    expect(await restoreByHand(restoreCommand(spoolFor('fatal'), '-P -n 0'), archived[0]!)).toMatchObject({ status: 0, sha: await shippedSha(archived[0]!) });
    const records = await requestsFor(archived[0]!);
    expect(records).toHaveLength(before + 1);
    expect(records.at(-1)).toMatchObject({ command: `get-wal --fatal-errors pg1 ${archived[0]}`, exit: 0 });
  });

  it('refuses a wrong command line with exit 2 and one line saying what is wrong', async () => {
    const spool = spoolFor('usage');
    const cases: [string, RegExp][] = [
      [`${script} walhub-test pg1 %f`, /^walhub-restore: usage: walhub-restore \[-n PREFETCH\]/],
      [restoreCommand(spool, '-n 65'), /^walhub-restore: -n takes a number of segments \(0 to 64\), not '65'$/],
      [restoreCommand(spool, '-n four'), /^walhub-restore: -n takes a number of segments \(0 to 64\), not 'four'$/],
      // Beyond what the shell's test can compare: still this one line, not the shell's own complaint too.
      [restoreCommand(spool, '-n 99999999999999999999'), /^walhub-restore: -n takes a number of segments \(0 to 64\), not '99999999999999999999'$/],
      [`${script} -d ${spool} walhub-test ../pg1 %f %p`, /^walhub-restore: invalid server ID '\.\.\/pg1'$/],
      [`${script} -d ${spool} -oProxyCommand=x pg1 %f %p`, /^walhub-restore: unknown option -o \(usage: walhub-restore /],
    ];
    for (const [command, message] of cases) {
      const got = await restoreByHand(command, archived[0]!);
      expect(got.status, command).toBe(2);
      expect(got.stderr.trimEnd(), command).toMatch(message);
      expect(got.stderr.trimEnd().split('\n'), command).toHaveLength(1);
    }
  });

  it('fetches without a spool it cannot use, and says so in one line', async () => {
    // A directory of root's: the postgres user can neither create pg1/ in it nor write there.
    const notOurs = await mkdtemp(join(tmpdir(), 'walhub-root-spool-'));
    try {
      await chmod(notOurs, 0o755);
      const got = await restoreByHand(restoreCommand(notOurs), archived[1]!);
      expect(got).toMatchObject({ status: 0, sha: await shippedSha(archived[1]!) });
      expect(got.stderr).toBe(
        `walhub-restore: cannot use ${notOurs} as a spool directory (missing, a link, not this user's, or not writable); fetching ${archived[1]} without fetching ahead\n`,
      );
      expect(await readdir(notOurs)).toEqual([]);
    } finally {
      await rm(notOurs, { recursive: true, force: true });
    }
  });

  it('never hands over what waited in the spool more than 5 minutes, and deletes it', async () => {
    const spool = spoolFor('stale');
    const [first, second] = archived as [string, string];
    expect((await restoreByHand(restoreCommand(spool, '-n 1'), first)).status).toBe(0);
    await waitUntil('the next segment fetched ahead', async () => (await listSpool(spool)).segments.includes(second) || undefined);
    // Made a leftover from long ago, with other bytes (as a rebuilt cluster
    // reusing the server ID would have left): it must not be taken.
    const stale = join(await spoolDir(spool), second);
    await writeFile(stale, await readFile(join(setup!.barman.shipped, first)));
    const tenMinutesAgo = new Date(Date.now() - 10 * 60_000);
    await utimes(stale, tenMinutesAgo, tenMinutesAgo);
    const got = await restoreByHand(restoreCommand(spool, '-n 1'), second);
    expect(got).toMatchObject({ status: 0, sha: await shippedSha(second) });
    // Deleted, then fetched again as the one asked for, not ahead: the spool is empty or fetching the third.
    expect((await listSpool(spool)).segments).not.toContain(second);
  });

  it('refuses a spool directory others may write to: fetched without it, and said in one line', async () => {
    const spool = spoolFor('loose');
    expect((await restoreByHand(restoreCommand(spool), archived[0]!)).status).toBe(0);
    await waitUntil('the fetcher to finish', async () => (await listSpool(spool)).segments.length === 4 || undefined);
    const dir = await spoolDir(spool);
    await chmod(dir, 0o777);
    const asked = await readFile(join(dir, '.asked'), 'utf8');
    const got = await restoreByHand(restoreCommand(spool), archived[1]!);
    expect(got).toMatchObject({ status: 0, sha: await shippedSha(archived[1]!) });
    expect(got.stderr).toBe(
      `walhub-restore: cannot use ${dir} as a spool directory (${dir} is writable by others); fetching ${archived[1]} without fetching ahead\n`,
    );
    // Refused before anything was written there.
    expect(await readFile(join(dir, '.asked'), 'utf8')).toBe(asked);
  });

  it('leaves alone the files of a spool directory given with -d that are not its own', async () => {
    // A directory of the postgres user's with files of its own, old ones too (as its home would have).
    const spool = spoolFor('shared');
    await mkdir(spool, { mode: 0o700 });
    await chownToPostgres(spool);
    const own = join(spool, '.pgpass');
    await writeFile(own, 'localhost:5432:*:replicator:secret\n', { mode: 0o600 });
    await chownToPostgres(own);
    const tenMinutesAgo = new Date(Date.now() - 10 * 60_000);
    await utimes(own, tenMinutesAgo, tenMinutesAgo);
    expect((await restoreByHand(restoreCommand(spool), archived[0]!)).status).toBe(0);
    expect((await restoreByHand(restoreCommand(spool), archived[1]!)).status).toBe(0);
    expect(await readFile(own, 'utf8')).toBe('localhost:5432:*:replicator:secret\n');
  });

  it('fetches history files and -n 0 requests as asked, without a spool', async () => {
    const spool = spoolFor('plain');
    const history = await restoreByHand(restoreCommand(spool), '00000002.history');
    expect(history.status).toBe(1);
    expect(history.stderr).toBe('walhub: WAL file not found in the archive (pg1 00000002.history)\n');
    expect(await restoreByHand(restoreCommand(spool, '-n 0'), archived[2]!)).toMatchObject({ status: 0, sha: await shippedSha(archived[2]!) });
    await expect(readdir(spool)).rejects.toThrow(/ENOENT/);
  });

  it('follows a timeline across the end of a log file (…000000FF, then the next log\'s …00000000)', async () => {
    // Two segments that PostgreSQL would write 4 GiB further on, made from a
    // real one with its page addresses moved: walhub checks them as it would
    // any archived segment.
    const serverDir = setup!.barman.serverDir('pg1');
    const source = await readFile(join(setup!.barman.shipped, archived[0]!));
    const endOfLog = '0000000100000001000000FF';
    const nextLog = '000000010000000200000000';
    const placed: string[] = [];
    try {
      for (const [name, segno] of [[endOfLog, 0x1ffn], [nextLog, 0x200n]] as const) {
        const path = archivedPath(serverDir, name);
        await mkdir(join(path, '..'), { recursive: true });
        await writeFile(path, movePages(source, segno));
        placed.push(path);
      }
      const spool = spoolFor('wrap');
      const got = await restoreByHand(restoreCommand(spool, '-n 1'), endOfLog);
      expect(got).toMatchObject({ status: 0, sha: sha256(movePages(source, 0x1ffn)) });
      await waitUntil('the next log file\'s first segment fetched ahead', async () => (await listSpool(spool)).segments.length === 1 || undefined);
      expect((await listSpool(spool)).segments).toEqual([nextLog]);
      expect(sha256(await readFile(join(await spoolDir(spool), nextLog)))).toBe(sha256(movePages(source, 0x200n)));
      // Not the name a plain +1 on the last eight digits would give.
      expect(await requestsFor('000000010000000100000100')).toEqual([]);
    } finally {
      for (const path of placed) await rm(path, { force: true });
    }
  });
});

/** A copy of a 16 MiB segment whose page headers say it is segment `segno`. */
function movePages(segment: Buffer, segno: bigint): Buffer {
  const copy = Buffer.from(segment);
  const blockSize = copy.readUInt32LE(36);
  for (let offset = 0; offset < SEGMENT_SIZE; offset += blockSize) {
    if (copy.readUInt16LE(offset) === 0) continue;
    copy.writeBigUInt64LE(segno * BigInt(SEGMENT_SIZE) + BigInt(offset), offset + 8);
  }
  return copy;
}

it('a recovery through walhub-restore replays every archived segment, each fetched once, and leaves an empty spool', async () => {
  const spool = spoolFor('recovery');
  const r = restored!;
  await r.setConf({ restore_command: restoreCommand(spool) });
  const expected = await toTableChecksum(setup!.primary);
  const auditBefore = (await setup!.hub.audit()).length;

  await r.start();
  await waitForPromotion(r);
  for (const name of archived) {
    expect(await grepLog(r, new RegExp(`restored log file "${name}" from archive`)), name).not.toEqual([]);
  }
  expect(await toTableChecksum(r)).toBe(expected);

  // walhub's account: each segment sent once (the last one twice: the end of
  // recovery reads it again, after it left the spool), every one of them whole.
  const requests = (await setup!.hub.audit()).slice(auditBefore).filter((x) => x.event === 'request');
  for (const name of archived.slice(0, -1)) {
    const sent = requests.filter((x) => x.wal === name);
    expect(sent, name).toHaveLength(1);
    expect(sent[0], name).toMatchObject({ exit: 0, bytes: SEGMENT_SIZE, compression: 'zstd' });
  }
  // What was fetched ahead beyond the end found nothing; nothing is left behind.
  await waitUntil('the spool to hold no segment and no .part', async () => {
    const { segments, others } = await listSpool(spool);
    return (segments.length === 0 && others.every(isSpoolOwnFile)) || undefined;
  });
});
