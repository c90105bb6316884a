// The audit log survives what production does to it: a SIGKILL right after
// requests finish, and the real logrotate with the shipped configuration
// while fetches run.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditLog } from '../../src/audit/audit-log.js';
import { createServerDir } from '../helpers/archive.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { requireProgram } from '../helpers/programs.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { HISTORY_TEXT, walhub } from '../helpers/walhub-cli.js';

const run = promisify(execFile);
const SHIPPED_LOGROTATE = new URL('../../etc/logrotate.d/walhub', import.meta.url);
const SHIPPED_UNIT = new URL('../../systemd/walhub.service', import.meta.url);
/** The build, as the unit runs it. */
const AUDIT_LOG_MODULE = new URL('../../dist/audit/audit-log.js', import.meta.url);

let work: string;
let keyDir: string;
let standby: ClientKey;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'walhub-durable-'));
  keyDir = await mkdtemp(join(tmpdir(), 'walhub-durable-keys-'));
  standby = await createClientKey(keyDir, 'standby-a');
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(keyDir, { recursive: true, force: true });
});

async function startServingHub(): Promise<Hub> {
  const hub = await startHub({ keys: [{ key: standby, options: 'servers="pg1"' }] });
  await createServerDir(hub.archive, 'pg1');
  await writeFile(join(hub.archive, 'pg1', 'wals', '00000002.history'), HISTORY_TEXT);
  return hub;
}

const requestLines = (text: string) =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r.event === 'request');

/** `workers` standbys fetching `rounds` times each; the number of fetches that exited 0. */
async function fetchInParallel(hub: Hub, workers: number, rounds: number, during?: (round: number) => Promise<void>): Promise<number> {
  let ok = 0;
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      for (let round = 0; round < rounds; round++) {
        if (worker === 0) await during?.(round);
        const result = await sshExec(hub, standby, 'get-wal pg1 00000002.history');
        expect(result.stderr).toBe('');
        if (result.status === 0 && result.stdout.toString() === HISTORY_TEXT) ok++;
      }
    }),
  );
  return ok;
}

describe('a durable audit log', () => {
  it('a SIGKILL right after requests finish loses no line of a finished request', async () => {
    const hub = await startServingHub();
    try {
      const ok = await fetchInParallel(hub, 4, 5);
      const exited = new Promise((resolve) => hub.process.once('exit', resolve));
      hub.process.kill('SIGKILL');
      await exited;
      expect(ok).toBe(20);
      const served = requestLines(await readFile(hub.auditLog, 'utf8')).filter((r) => r.result === 'ok' && r.exit === 0);
      expect(served).toHaveLength(ok);
    } finally {
      await hub.stop();
    }
  });

  it('creates the audit log 0640 in a directory 0750', async () => {
    const path = join(work, 'new-log-dir', 'audit.log');
    const audit = createAuditLog(path);
    audit.record('connect', { conn: 'c1', remote: '127.0.0.1:1' });
    await audit.flush();
    expect((await stat(path)).mode & 0o777).toBe(0o640);
    expect((await stat(join(work, 'new-log-dir'))).mode & 0o777).toBe(0o750);
    // Written before record() returned: the line is in the file now.
    expect(await readFile(path, 'utf8')).toMatch(/^\{"event":"connect","time":"[^"]+","conn":"c1","remote":"127\.0\.0\.1:1"\}\n$/);
  });

  it('keeps those modes under the shipped systemd unit\'s UMask', async () => {
    const unit = await readFile(SHIPPED_UNIT, 'utf8');
    const mask = /^UMask=([0-7]{3,4})$/m.exec(unit)?.[1];
    expect(mask, 'systemd/walhub.service sets UMask').toBeDefined();
    const path = join(work, 'unit-umask', 'log-dir', 'audit.log');
    // A process of its own: the umask is process-wide, and this one is the unit's.
    const script = `process.umask(0o${mask});
      const { createAuditLog } = await import(${JSON.stringify(AUDIT_LOG_MODULE.href)});
      const audit = createAuditLog(${JSON.stringify(path)});
      audit.record('connect', { conn: 'c1', remote: '127.0.0.1:1' });
      await audit.flush();`;
    await run(process.execPath, ['--input-type=module', '-e', script]);
    expect(((await stat(path)).mode & 0o777).toString(8)).toBe('640');
    expect(((await stat(join(work, 'unit-umask', 'log-dir'))).mode & 0o777).toString(8)).toBe('750');
  });
});

describe('logrotate with the shipped etc/logrotate.d/walhub', () => {
  /** The shipped file, pointed at this test's log and hub: the rotation options stay as shipped. */
  async function logrotateConfig(hub: Hub): Promise<{ config: string; state: string }> {
    const shipped = await readFile(SHIPPED_LOGROTATE, 'utf8');
    expect(shipped).toMatch(/^\/var\/log\/walhub\/audit\.log \{$/m);
    expect(shipped).toMatch(/systemctl kill --kill-whom=main --signal=SIGUSR1 walhub\.service/);
    const text = shipped
      .replace(/^\/var\/log\/walhub\/audit\.log \{$/m, `${hub.auditLog} {`)
      // The test runs as root without the walhub user, and without systemd.
      .replace(/^\s*su walhub adm\n/m, '')
      .replace(/create 0640 walhub adm/, 'create 0640')
      .replace(/systemctl kill .*$/m, `kill -USR1 ${hub.process.pid}`);
    const config = join(hub.dir, 'logrotate.conf');
    await writeFile(config, text, { mode: 0o644 });
    return { config, state: join(hub.dir, 'logrotate.state') };
  }

  it('loses no line and writes none to the old file after the rotation, while fetches run', async () => {
    const logrotate = requireProgram('logrotate', 'logrotate');
    const hub = await startServingHub();
    try {
      const { config, state } = await logrotateConfig(hub);
      let rotatedSize = -1;
      const rotate = async () => {
        const from = hub.logLines.length;
        await run(logrotate, ['-f', '-s', state, config]);
        await hub.waitForLog((l) => l.msg === 'SIGUSR1: reopening the audit log' && hub.logLines.indexOf(l) >= from);
        rotatedSize = (await stat(`${hub.auditLog}.1`)).size;
      };
      const ok = await fetchInParallel(hub, 3, 8, async (round) => {
        if (round === 4) await rotate();
      });
      expect(ok).toBe(24);
      const old = await readFile(`${hub.auditLog}.1`, 'utf8');
      expect(old.length).toBe(rotatedSize);
      const current = await readFile(hub.auditLog, 'utf8');
      const served = [...requestLines(old), ...requestLines(current)].filter((r) => r.result === 'ok');
      expect(served).toHaveLength(ok);
      expect(requestLines(current).length).toBeGreaterThan(0);
      expect((await stat(hub.auditLog)).mode & 0o777).toBe(0o640);

      // A second rotation compresses the first (delaycompress); walhub audit reads all of it, in order.
      await rotate();
      await stat(`${hub.auditLog}.2.gz`);
      const review = await walhub(['audit', '-c', hub.configPath, '--json', '--event', 'request', '--result', 'ok']);
      expect(review.status, review.stderr).toBe(0);
      const times = review.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { time: string }).time);
      expect(times).toHaveLength(ok);
      expect([...times].sort()).toEqual(times);
    } finally {
      await hub.stop();
    }
  });
});
