// Clusters made with `initdb --wal-segsize` 1, 64 and 1024 MiB: their WAL is
// served (checked against its page headers and exact size), replayed by a
// standby end to end, and a 1 GiB segment streams through walhub with flat memory.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createServerDir } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { chownToPostgres, createCluster, createStandby, toShellWord, type PgCluster } from '../helpers/postgres.js';
import { requireProgram } from '../helpers/programs.js';
import { createFillTable, dropPrimaryConninfo, toTableChecksum, waitForReplay, writeAndSwitch } from '../helpers/replication.js';
import { createStandbyAccess, toRestoreCommand, type StandbyAccess } from '../helpers/restore-command.js';
import { sshArgs } from '../helpers/ssh-client.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

/** Peak resident memory of a process so far (VmHWM), in bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)![1]) * 1024;
}

/** sha256 and length of what `cmd args` writes on stdout, streamed (a segment may be 1 GiB). */
function hashOutput(cmd: string, args: string[]): Promise<{ status: number | null; sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const hash = createHash('sha256');
    let bytes = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('error', reject);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, sha256: hash.digest('hex'), bytes });
    });
  });
}

describe.each([1, 64, 1024])('a cluster with %i MiB WAL segments', (sizeMB) => {
  let primary: PgCluster;
  let standby: PgCluster;
  let hub: Hub;
  let access: StandbyAccess;

  it('is served, checked and replayed through walhub', async () => {
    const zstd = requireProgram('zstd', 'zstd');
    const archive = await mkdtemp(join(tmpdir(), 'walhub-segsize-'));
    cleanups.push(() => rm(archive, { recursive: true, force: true }));
    await chmod(archive, 0o755);
    const serverDir = await createServerDir(archive, 'pg1');
    await chmod(serverDir, 0o755);
    const incoming = join(serverDir, 'incoming');
    await chownToPostgres(incoming);
    // zstd straight from pg_wal into incoming/, as a Barman custom filter would; a dot file until whole.
    const into = (name: string) => toShellWord(join(incoming, name));
    const archiveCommand = `${zstd} -q -c %p > ${into('.%f.tmp')} && mv ${into('.%f.tmp')} ${into('%f')}`;
    primary = await createCluster({
      walSegSizeMB: sizeMB,
      conf: {
        wal_level: 'replica',
        archive_mode: true,
        archive_command: archiveCommand,
        // PostgreSQL wants room for at least two segments.
        min_wal_size: `${Math.max(32, 2 * sizeMB)}MB`,
        max_wal_size: `${Math.max(64, 4 * sizeMB)}MB`,
        wal_retrieve_retry_interval: '1s',
      },
    });
    cleanups.push(() => primary.cleanup());
    await primary.start();
    await createFillTable(primary);

    const started = await startHubWithStandbys({ 'standby-a': 'servers="pg1"' }, {
      archive,
      // The default bound is 64 MiB: a 1 GiB cluster is configured, as the README says.
      ...(sizeMB > 64 ? { extraToml: `[limits]\nmax_segment_size = "${sizeMB}MiB"` } : {}),
    });
    hub = started.hub;
    cleanups.push(() => hub.stop());
    const key = started.keys['standby-a'];
    const idlePeak = await peakRss(hub.process.pid!);
    access = await createStandbyAccess(hub, key);
    cleanups.push(() => access.cleanup());

    standby = await createStandby(primary, { conf: { restore_command: toRestoreCommand(access, 'pg1', 'recommended') } });
    cleanups.push(() => standby.cleanup());
    await dropPrimaryConninfo(standby);
    await standby.start();

    const switched = await writeAndSwitch(primary, 2000);
    await waitForReplay(standby, switched.lsn, 180_000);
    expect(await toTableChecksum(standby)).toBe(await toTableChecksum(primary));

    const served = (await hub.audit()).find((r) => r.event === 'request' && r.wal === switched.segment && r.result === 'ok');
    expect(served).toMatchObject({ exit: 0, bytes: sizeMB * 1024 * 1024, compression: 'zstd', file: `incoming/${switched.segment}` });

    // By hand: byte for byte what zstd itself decodes; and neither fetch made the hub's memory follow the segment's size.
    const fetched = await hashOutput(requireProgram('ssh', 'openssh-client'), [...sshArgs(hub, key), `get-wal pg1 ${switched.segment}`]);
    const decoded = await hashOutput(zstd, ['-q', '-dc', join(incoming, switched.segment)]);
    expect(fetched).toMatchObject({ status: 0, bytes: sizeMB * 1024 * 1024, sha256: decoded.sha256 });
    const growth = (await peakRss(hub.process.pid!)) - idlePeak;
    console.log(`${sizeMB} MiB segments: hub peak RSS grew ${(growth / 1048576).toFixed(1)} MiB over two fetches and a replay`);
    // A fraction of one segment of 1 GiB: buffers in flight, not the segment.
    expect(growth).toBeLessThan(100 * 1024 * 1024);
  }, 300_000);
});
