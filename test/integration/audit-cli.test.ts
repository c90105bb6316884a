// walhub audit over an audit log written by real ssh fetches, and over
// rotated, compressed and damaged logs.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServerDir } from '../helpers/archive.js';
import { CLI, startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { HISTORY_TEXT, walhub } from '../helpers/walhub-cli.js';

let hub: Hub;
let standbyA: ClientKey;
let standbyB: ClientKey;
let stranger: ClientKey;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'walhub-audit-'));
  ({ hub, keys: { 'standby-a': standbyA, 'standby-b': standbyB } } = await startHubWithStandbys({
    'standby-a': 'servers="pg1"',
    'standby-b': 'servers="pg1,pg2"',
  }));
  stranger = await createClientKey(hub.dir, 'stranger');
  await createServerDir(hub.archive, 'pg1');
  await writeFile(join(hub.archive, 'pg1', 'wals', '00000002.history'), HISTORY_TEXT);
  for (let i = 0; i < 3; i++) expect((await sshExec(hub, standbyA, 'get-wal pg1 00000002.history')).status).toBe(0);
  expect((await sshExec(hub, standbyA, 'get-wal pg1 000000010000000000000009')).status).toBe(1);
  expect((await sshExec(hub, standbyB, 'get-wal pg3 000000010000000000000009')).status).toBe(3);
  expect((await sshExec(hub, stranger, 'get-wal pg1 00000002.history')).status).toBe(255);
});

afterAll(async () => {
  await hub?.stop();
  await rm(work, { recursive: true, force: true });
});

const auditLines = async () => (await readFile(hub.auditLog, 'utf8')).split('\n').filter((l) => l !== '');
const audit = (...args: string[]) => walhub(['audit', '--config', hub.configPath, ...args]);

describe('walhub audit on a live audit log', () => {
  it('prints requests and refused logins as a table that fits 80 columns', async () => {
    const result = await audit();
    expect(result.status, result.stderr).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(80);
    expect(lines[0]).toMatch(/^TIME\s+KEY\s+REMOTE\s+SERVER\s+WAL\s+RESULT\s+BYTES MS$/);
    expect(lines[1]).toMatch(/^-- \d{4}-\d{2}-\d{2} \(UTC\) --$/);
    const rows = lines.slice(2).filter((l) => !l.startsWith('--'));
    expect(rows).toHaveLength(3 + 1 + 1 + 1);
    expect(rows[0]).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d standby-a\\s+127\\.0\\.0\\.1 pg1\\s+00000002\\.history\\s+ok\\s+${HISTORY_TEXT.length} +\\d+$`));
    expect(rows[3]).toMatch(/standby-a\s+127\.0\.0\.1 pg1\s+000000010000000000000009 not_found\s+0 +\d+$/);
    expect(rows[4]).toMatch(/standby-b\s+127\.0\.0\.1 pg3\s+000000010000000000000009 denied\s+0 +\d+$/);
    // The fingerprint of an unknown key, cut to fit; --json has it whole.
    expect(rows[5]).toMatch(/^\d\d:\d\d:\d\d SHA256:\S+ +127\.0\.0\.1 -/);
    expect(rows[5]).toMatch(/login: key not authoriz… refused +- +-$/);
  });

  it('--json prints the matching lines unchanged', async () => {
    const result = await audit('--json', '--event', 'request');
    const expected = (await auditLines()).filter((l) => (JSON.parse(l) as { event: string }).event === 'request');
    expect(result.stdout).toBe(expected.map((l) => `${l}\n`).join(''));
  });

  it.each([
    [['--key', 'standby-b', '--result', 'denied'], 1],
    [['--key', 'standby-a', '--server', 'pg1', '--event', 'request'], 4],
    [['--result', 'ok,not_found', '--event', 'request'], 4],
    [['--wal', '000000010000000000000009'], 2],
    [['--remote', '127.0.0.0/8', '--event', 'request'], 5],
    [['--remote', '10.0.0.0/8'], 0],
    // The README's "logins from outside the standby network", written as sshd's from= wants it.
    [['--remote', '*,!10.0.0.0/8', '--event', 'request'], 5],
    [['--remote', '*,!127.0.0.0/8', '--event', 'request'], 0],
    [['--since', '1h', '--event', 'request'], 5],
    [['--until', '2000-01-01', '--event', 'request'], 0],
    [['--event', 'auth', '--result', 'refused'], -1],
  ])('filters %j', async (args, count) => {
    const result = await audit('--json', ...args);
    expect(result.status, result.stderr).toBe(0);
    const lines = result.stdout.split('\n').filter((l) => l !== '');
    if (count >= 0) expect(lines).toHaveLength(count);
    else {
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(JSON.parse(line)).toMatchObject({ event: 'auth', result: 'refused', key: stranger.fingerprint });
    }
  });

  it('--key takes a fingerprint as well as a name', async () => {
    const byName = await audit('--json', '--key', 'standby-a');
    const byFingerprint = await audit('--json', '--key', standbyA.fingerprint);
    expect(byFingerprint.stdout).toBe(byName.stdout);
    expect(byName.stdout).not.toBe('');
  });

  it('--summary prints requests, bytes and failures per key and server, and refused logins', async () => {
    const result = await audit('--summary');
    expect(result.status, result.stderr).toBe(0);
    const lines = result.stdout.split('\n');
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(80);
    expect(lines).toContain('requests by key and server');
    expect(result.stdout).toMatch(new RegExp(`\\nstandby-a +pg1 +4 +${HISTORY_TEXT.length * 3} not_found 1 +\\d\\d-\\d\\d \\d\\d:\\d\\d +\\d\\d-\\d\\d \\d\\d:\\d\\d\\n`));
    expect(result.stdout).toMatch(/\nstandby-b +pg3 +1 +0 denied 1 /);
    expect(result.stdout).toContain('refused logins by key and reason');
    expect(result.stdout).toMatch(new RegExp(`\\n${stranger.fingerprint.slice(0, 8)}\\S* +key not authorized +\\d+ `));

    const json = await audit('--summary', '--json');
    const rows = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toContainEqual(expect.objectContaining({ type: 'requests', key: 'standby-a', server: 'pg1', requests: 4, bytes: HISTORY_TEXT.length * 3, failures: { not_found: 1 } }));
    expect(rows).toContainEqual(expect.objectContaining({ type: 'refused_logins', key: stranger.fingerprint, reason: 'key not authorized' }));
  });

  it('--follow prints new records as they come, across a rotation of the file', async () => {
    const follower = spawn(process.execPath, [CLI, 'audit', '--config', hub.configPath, '--follow', '--json', '--event', 'request', '--since', '1m'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    follower.stdout.setEncoding('utf8').on('data', (t: string) => (out += t));
    const exited = new Promise<number | null>((resolve) => follower.on('close', resolve));
    const waitFor = async (what: () => boolean) => {
      for (let i = 0; i < 100 && !what(); i++) await new Promise((r) => setTimeout(r, 100));
      expect(what()).toBe(true);
    };
    try {
      await waitFor(() => out.split('\n').length > 5);
      const before = out.split('\n').length;
      expect((await sshExec(hub, standbyB, 'get-wal pg1 00000002.history')).status).toBe(0);
      await waitFor(() => out.split('\n').length === before + 1);

      await rename(hub.auditLog, `${hub.auditLog}.1`);
      const reopened = hub.logLines.length;
      hub.process.kill('SIGUSR1');
      await hub.waitForLog((l) => l.msg === 'SIGUSR1: reopening the audit log' && hub.logLines.indexOf(l) >= reopened);
      expect((await sshExec(hub, standbyA, 'get-wal pg1 00000002.history')).status).toBe(0);
      await waitFor(() => out.split('\n').length === before + 2);
      const last = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>;
      expect(last).toMatchObject({ key_name: 'standby-a', wal: '00000002.history', result: 'ok' });
      // The new line is in the new file, the old file ends before it.
      expect(await readFile(hub.auditLog, 'utf8')).toContain(`"conn":"${String(last.conn)}"`);
    } finally {
      follower.kill('SIGINT');
    }
    expect(await exited).toBe(0);
  });
});

describe('walhub audit on rotated and damaged logs', () => {
  const record = (minute: number, extra: object = {}) =>
    JSON.stringify({ event: 'request', time: `2026-11-30T10:${String(minute).padStart(2, '0')}:00.000Z`, conn: `c${minute}`, remote: '10.1.0.7:40000', key_name: 'standby-a', server: 'pg1', wal: '000000010000000000000003', result: 'ok', bytes: 16777216, ms: 40, ...extra });

  async function logDir(name: string, files: Record<string, string | Buffer>): Promise<string> {
    const dir = join(work, name);
    await mkdir(dir);
    for (const [file, content] of Object.entries(files)) await writeFile(join(dir, file), content);
    const config = join(dir, 'walhub.toml');
    await writeFile(config, 'audit_log = "audit.log"\n');
    return config;
  }

  it('reads audit.log.2.gz, audit.log.1 and audit.log in time order', async () => {
    const config = await logDir('rotated', {
      'audit.log.2.gz': gzipSync(`${record(1)}\n${record(2)}\n`),
      'audit.log.1': `${record(3)}\n`,
      'audit.log': `${record(4)}\n${record(5)}\n`,
      'audit.log.1.bak': `${record(59)}\n`,
    });
    const result = await walhub(['audit', '-c', config, '--json']);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { conn: string }).conn)).toEqual(['c1', 'c2', 'c3', 'c4', 'c5']);
  });

  it('counts and skips a malformed line, with a note, and goes on', async () => {
    const config = await logDir('damaged', { 'audit.log': `${record(1)}\n{"event":"requ\nnot json at all\n${record(2)}\n` });
    const result = await walhub(['audit', '-c', config, '--json']);
    expect(result.status).toBe(0);
    expect(result.stdout.trim().split('\n')).toHaveLength(2);
    expect(result.stderr).toBe(`walhub audit: skipped 2 malformed line(s), the first at ${join(work, 'damaged', 'audit.log')}:2\n`);
  });

  it('streams: --summary of a log far larger than the heap it is given', async () => {
    const lines = Array.from({ length: 2000 }, (_, i) => record(i % 60, { conn: `c${i}` })).join('\n');
    const dir = join(work, 'large');
    const config = await logDir('large', {});
    // about 130 MB of audit log, against a 32 MB heap.
    await writeFile(join(dir, 'audit.log'), '');
    for (let i = 0; i < 250; i++) await writeFile(join(dir, 'audit.log'), `${lines}\n`, { flag: 'a' });
    const result = await walhub(['audit', '-c', config, '--summary', '--json'], { env: { NODE_OPTIONS: '--max-old-space-size=32' }, timeoutMs: 120_000 });
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout.split('\n')[0]!)).toMatchObject({ key: 'standby-a', requests: 500_000 });
  });

  it('ends quietly when the reader closes the pipe (walhub audit | head -1)', async () => {
    const config = await logDir('piped', { 'audit.log': `${Array.from({ length: 50_000 }, (_, i) => record(i % 60)).join('\n')}\n` });
    const shell = spawn('bash', ['-c', `set -o pipefail; "${process.execPath}" "${CLI}" audit -c "${config}" --json | head -1`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    shell.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t));
    shell.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t));
    const status = await new Promise<number | null>((resolve) => shell.on('close', resolve));
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(stdout.trim().split('\n')).toHaveLength(1);
  });
});

describe('the walhub audit command line', () => {
  it.each([
    [['--colour'], "walhub audit: unknown option '--colour'"],
    [['--since', 'yesterday'], 'walhub audit: --since "yesterday": expected an ISO time (2026-11-30T10:00:00Z) or an age like 2h or 7d'],
    [['--summary', '--follow'], 'walhub audit: --summary and --follow do not go together'],
    [['--remote', '!10.1.0.0/16'], 'walhub audit: --remote "!10.1.0.0/16": only negations match no address, as in from="..."; for every address but those, put * first: "*,!10.1.0.0/16"'],
    [['pg1'], 'walhub audit: unexpected argument "pg1"'],
  ])('%j prints the usage and exits 2', async (args, message) => {
    const result = await walhub(['audit', ...args]);
    expect(result.status).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe(message);
    expect(result.stderr).toContain('usage: walhub audit');
  });

  it('--help lists every option with a line each', async () => {
    const result = await walhub(['audit', '--help']);
    expect(result.status).toBe(0);
    for (const option of ['--since', '--until', '--server', '--key', '--result', '--remote', '--wal', '--event', '--json', '--summary', '--follow', '--config', '--help']) {
      expect(result.stdout).toMatch(new RegExp(`^ +(-\\w, )?${option} .*\\S`, 'm'));
    }
  });

  it('walhub --help lists keys and audit', async () => {
    const result = await walhub(['--help']);
    expect(result.stdout).toMatch(/^ {2}keys {7}\S/m);
    expect(result.stdout).toMatch(/^ {2}audit {6}\S/m);
  });
});

describe('every walhub command', () => {
  it.each(['serve', 'check', 'host-key', 'keys', 'audit'])('%s: --help lists --config and --help; an unknown option prints the usage and exits 2', async (command) => {
    const help = await walhub([command, '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^ +-c, --config FILE +\S/m);
    expect(help.stdout).toMatch(/^ +-h, --help +\S/m);
    const wrong = await walhub([command, '--bogus']);
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toContain(`usage: walhub ${command}`);
  });
});
