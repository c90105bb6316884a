// The README's restore_command recipes, taken from its text and run as
// written. A real standby replays WAL through walhub with each line in turn,
// as an OS user made for the test whose home is the test's own directory:
// ssh reads ~/.ssh from the passwd entry, not $HOME, and the real postgres
// user's ~/.ssh is never touched. Only what the README tells a reader to
// change is changed: the hub's name and port in the ~/.ssh/config block (and
// in the line that does without it).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../helpers/archive.js';
import { createBarman, type Barman } from '../helpers/barman.js';
import { CLI, startHub, type Hub } from '../helpers/hub.js';
import {
  asPostgres,
  chownToOsUser,
  createCluster,
  createStandby,
  type PgCluster,
} from '../helpers/postgres.js';
import { requireProgram } from '../helpers/programs.js';
import { runRestoreCommand } from '../helpers/restore-command.js';
import {
  createFillTable,
  dropPrimaryConninfo,
  grepLog,
  toNextSegment,
  toPrimarySettings,
  toSegmentRange,
  toTableChecksum,
  waitForReplay,
  writeAndSwitch,
} from '../helpers/replication.js';

const README = fileURLToPath(new URL('../../README.md', import.meta.url));

/** The indented block that starts with `Host walhub-backup`, dedented: what goes into ~/.ssh/config. */
function findSshConfigBlock(readme: string): string {
  const lines = readme.split('\n');
  const start = lines.findIndex((l) => /^\s+Host walhub-backup$/.test(l));
  if (start < 0) throw new Error('README.md has no "Host walhub-backup" block');
  const indent = /^\s+/.exec(lines[start]!)![0];
  const block: string[] = [];
  for (const line of lines.slice(start)) {
    if (!line.startsWith(indent) || line.trim() === '') break;
    block.push(line.slice(indent.length));
  }
  return `${block.join('\n')}\n`;
}

/** Every `restore_command = '...'` line of the README, unquoted as postgresql.conf reads it. */
function findRestoreCommands(readme: string): string[] {
  return [...readme.matchAll(/^\s+restore_command = '((?:[^']|'')*)'$/gm)].map((m) => m[1]!.replaceAll("''", "'"));
}

function pickOne(commands: string[], what: string, test: (c: string) => boolean): string {
  const found = commands.filter(test);
  if (found.length !== 1) throw new Error(`README.md should have exactly one ${what} restore_command line, has ${found.length}`);
  return found[0]!;
}

const readme = await readFile(README, 'utf8');
const commands = findRestoreCommands(readme);
const recipes = {
  recommended: pickOne(commands, 'recommended', (c) => c.startsWith('ssh walhub-backup ') && c.includes('rc=5')),
  plain: pickOne(commands, 'plain', (c) => c.startsWith('ssh walhub-backup ') && !c.includes('rc=')),
  barman: pickOne(commands, 'barman-wal-restore', (c) => c.startsWith('barman-wal-restore ')),
  withoutConfig: pickOne(commands, 'self-contained', (c) => c.includes('walhub@backup.example')),
  fetchAhead: pickOne(commands, 'walhub-restore', (c) => c.startsWith('/usr/local/bin/walhub-restore ')),
};
const RESTORE_SCRIPT = fileURLToPath(new URL('../../etc/standby/walhub-restore', import.meta.url));

let osUser: string | undefined;
let home: string;
let barman: Barman;
let primary: PgCluster | undefined;
let standby: PgCluster | undefined;
let hub: Hub | undefined;
/** The last segment archived so far. */
let last: string;

function run(cmd: string, args: string[]): void {
  const result = spawnSync(cmd, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${result.stderr || result.error?.message}`);
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('this test creates an OS user for its standby: run it as root (CI does)');
  const useradd = requireProgram('useradd', 'passwd');
  const keygen = requireProgram('ssh-keygen', 'openssh-client');
  requireProgram('barman-wal-restore', 'barman-cli');

  home = await mkdtemp(join(tmpdir(), 'walhub-home-'));
  await chmod(home, 0o755);
  const name = `whstandby${randomBytes(3).toString('hex')}`;
  run(useradd, ['--no-create-home', '--home-dir', home, '--shell', '/bin/sh', '--user-group', name]);
  osUser = name;
  await chownToOsUser(home, name);

  barman = await createBarman({ pg1: 'gzip' });
  primary = await createCluster({ conf: toPrimarySettings(barman.toArchiveCommand('pg1')) });
  await primary.start();
  await createFillTable(primary);

  // Step 1 of the recipes: the standby's own key, made by its own user.
  const ssh = join(home, '.ssh');
  await mkdir(ssh, { mode: 0o700 });
  await chownToOsUser(ssh, name);
  const keyPath = join(ssh, 'walhub_ed25519');
  await asPostgres(keygen, ['-q', '-t', 'ed25519', '-N', '', '-C', 'standby-a', '-f', keyPath], { user: name });
  const publicLine = (await readFile(`${keyPath}.pub`, 'utf8')).trim();

  hub = await startHub({ archive: barman.home });
  await writeFile(hub.authorizedKeys, `servers="pg1" ${publicLine}\n`);
  await hub.waitForLog((l) => l.msg === 'authorized keys loaded' && l.keys === 1);

  // Step 2: what `walhub host-key --host NAME` prints goes into known_hosts as it is.
  const hostKey = spawnSync(process.execPath, [CLI, 'host-key', '--config', hub.configPath, '--host', '127.0.0.1'], { encoding: 'utf8' });
  expect(hostKey.status).toBe(0);
  // The test's hub listens on port 0 and reads its port back: put that port where a real config has its own.
  const knownHosts = hostKey.stdout.replace('[127.0.0.1]:0 ', `[127.0.0.1]:${hub.port} `);
  expect(knownHosts).toMatch(/^# SHA256:\S+ ssh-ed25519 /);
  // Step 3: the README's block, pointed at this hub.
  const config = findSshConfigBlock(readme)
    .replace(/^(\s*HostName) backup\.example$/m, '$1 127.0.0.1')
    .replace(/^(\s*Port) 2222$/m, `$1 ${hub.port}`);
  expect(config).toContain(`Port ${hub.port}`);
  for (const [file, text] of [['known_hosts', knownHosts], ['config', config]] as const) {
    await writeFile(join(ssh, file), text, { mode: 0o600 });
    await chownToOsUser(join(ssh, file), name);
  }

  standby = await createStandby(primary, {
    osUser: name,
    conf: { restore_command: recipes.plain, log_min_messages: 'log', wal_retrieve_retry_interval: '500ms' },
  });
  // Archive only: every segment after the backup comes through restore_command.
  await dropPrimaryConninfo(standby);
  await standby.start();
  last = (await writeAndSwitch(primary, 100)).segment;
  await barman.archive(primary, 'pg1', [last]);
});

afterAll(async () => {
  await standby?.cleanup();
  await primary?.cleanup();
  await hub?.stop();
  await barman?.cleanup();
  if (osUser !== undefined) {
    // ControlPersist keeps a master ssh running for a minute after the last fetch.
    spawnSync('pkill', ['-KILL', '-u', osUser]);
    spawnSync('userdel', [osUser]);
  }
  if (home) await rm(home, { recursive: true, force: true });
});

/** Writes two more segments on the primary, archives them, and waits for the standby to replay them. */
async function replayMore(): Promise<string[]> {
  const first = toNextSegment(last);
  await writeAndSwitch(primary!, 30_000);
  const switched = await writeAndSwitch(primary!, 1000);
  const names = toSegmentRange(first, switched.segment);
  await barman.archive(primary!, 'pg1', names);
  last = switched.segment;
  await waitForReplay(standby!, switched.lsn);
  for (const segment of names) {
    expect(await grepLog(standby!, new RegExp(`restored log file "${segment}" from archive`)), segment).not.toEqual([]);
  }
  return names;
}

async function useRestoreCommand(command: string): Promise<void> {
  await standby!.setConf({ restore_command: command });
  await standby!.psql('select pg_reload_conf()');
}

async function servedRequests(names: string[]): Promise<Record<string, unknown>[]> {
  const requests = (await hub!.audit()).filter((r) => r.event === 'request' && r.result === 'ok');
  return names.map((name) => {
    const record = requests.find((r) => r.wal === name);
    expect(record, `walhub's audit log has ${name} served`).toBeDefined();
    return record!;
  });
}

describe('the README recipes, run by a real standby as its own OS user', () => {
  it('the plain line replays through the ~/.ssh/config block', async () => {
    const names = await replayMore();
    // The remote command exactly as the README's line sends it (get-wal --fatal-errors pg1 %f).
    const remote = recipes.plain.replace(/^ssh walhub-backup /, '').replace(/ > %p$/, '');
    expect(remote).toBe('get-wal --fatal-errors pg1 %f');
    for (const record of await servedRequests(names)) {
      expect(record).toMatchObject({ key_name: 'standby-a', command: remote.replace('%f', String(record.wal)), exit: 0, bytes: 16 * 1024 * 1024 });
    }
  });

  it('the recommended line replays, over one multiplexed connection', async () => {
    await useRestoreCommand(recipes.recommended);
    const names = await replayMore();
    const records = await servedRequests(names);
    for (const record of records) expect(record).toMatchObject({ key_name: 'standby-a', exit: 0 });
    // ControlMaster from the config block: the segments share a connection.
    expect(new Set(records.map((r) => r.conn)).size).toBeLessThan(records.length);
  });

  it('the barman-wal-restore line replays', async () => {
    await useRestoreCommand(recipes.barman);
    const names = await replayMore();
    for (const record of await servedRequests(names)) {
      expect(record.command).toMatch(/^barman (?:--config \S+ )?get-wal /);
    }
    expect(await toTableChecksum(standby!)).toBe(await toTableChecksum(primary!));
  });

  it('the walhub-restore line replays, each segment fetched once, through the spool in ~/.cache', async () => {
    // The README has the script copied to /usr/local/bin; the test puts its copy
    // in the standby user's home instead, and leaves the machine's /usr/local alone.
    const script = join(home, 'walhub-restore');
    await copyFile(RESTORE_SCRIPT, script);
    await chmod(script, 0o755);
    await useRestoreCommand(recipes.fetchAhead.replace('/usr/local/bin/walhub-restore', script));
    const before = (await hub!.audit()).length;
    const names = await replayMore();
    const requests = (await hub!.audit()).slice(before).filter((r) => r.event === 'request');
    for (const name of names) {
      expect(requests.filter((r) => r.wal === name && r.exit === 0), name).toHaveLength(1);
    }
    // The spool at its default place, the user's own, mode 0700.
    const spool = await stat(join(home, '.cache', 'walhub-restore', 'walhub-backup', 'pg1'));
    expect(spool.mode & 0o777).toBe(0o700);
    expect(await toTableChecksum(standby!)).toBe(await toTableChecksum(primary!));
  });

  it('the line without a ~/.ssh/config fetches a segment byte for byte, and exits 1 past the end of the archive', async () => {
    const command = recipes.withoutConfig.replace(/ -p 2222 /, ` -p ${hub!.port} `).replace('walhub@backup.example', 'walhub@127.0.0.1');
    expect(command).toContain(`-p ${hub!.port}`);
    const dest = join(home, 'fetched');
    const fetched = await runRestoreCommand(command, last, dest, { user: osUser!, cwd: home });
    expect(fetched).toMatchObject({ status: 0 });
    expect(sha256(await readFile(dest))).toBe(sha256(await readFile(join(barman.shipped, last))));
    const missing = await runRestoreCommand(command, toNextSegment(toNextSegment(last)), dest, { user: osUser!, cwd: home });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('walhub: WAL file not found in the archive');
  });
});
