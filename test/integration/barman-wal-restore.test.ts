// Barman's own client, barman-wal-restore, against walhub: single fetches,
// --test, --parallel (which peeks ahead and prefetches into its spool), -z and
// -j (walhub sends gzip/bzip2, the client decompresses), -P, and exit codes.
import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createServerDir, place, sha256, type Placed } from '../helpers/archive.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { requireProgram } from '../helpers/programs.js';
import { createClientKey, sshArgs, sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture, type WalFixture } from '../helpers/wal-fixture.js';

const run = promisify(execFile);
let fixture: WalFixture;
let hub: Hub;
let standby: ClientKey;
let binDir: string;
const segments: Placed[] = [];

beforeAll(async () => {
  fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  hub = await startHub();
  standby = await createClientKey(hub.dir, 'standby-a');
  await hub.loadKeys([{ key: standby, options: 'servers="pg1"' }]);
  const dir = await createServerDir(hub.archive, 'pg1');
  const codecs = ['zstd', 'gzip', 'none', 'zstd', 'bzip2'] as const;
  for (const [i, segment] of fixture.segments.slice(0, codecs.length).entries()) {
    segments.push(await place(dir, segment, { codec: codecs[i]!, where: i === 3 ? 'incoming' : 'wals' }));
  }
  // barman-wal-restore runs plain `ssh`: a wrapper first in PATH adds this hub's key and known_hosts.
  binDir = join(hub.dir, 'bin');
  await mkdir(binDir);
  const ssh = requireProgram('ssh', 'openssh-client');
  const fixed = sshArgs(hub, standby).filter((a, i, all) => a !== '-T' && !(a === '-p' || all[i - 1] === '-p')).slice(0, -1);
  await writeFile(join(binDir, 'ssh'), `#!/bin/sh\nexec ${ssh} ${fixed.map((a) => `'${a}'`).join(' ')} "$@"\n`);
  await chmod(join(binDir, 'ssh'), 0o755);
});

afterAll(async () => {
  await hub?.stop();
});

async function walRestore(args: string[]): Promise<{ status: number; stderr: string }> {
  const program = requireProgram('barman-wal-restore', 'barman-cli');
  try {
    const { stderr } = await run(program, ['-U', 'walhub', '--port', String(hub.port), ...args], {
      env: { ...process.env, PATH: `${binDir}:${process.env.PATH}` },
    });
    return { status: 0, stderr };
  } catch (error) {
    const e = error as { code: number; stderr: string };
    return { status: e.code, stderr: e.stderr };
  }
}

describe('barman-wal-restore', () => {
  it('tests the connection with --test', async () => {
    const result = await walRestore(['--test', '127.0.0.1', 'pg1', segments[0]!.name, join(hub.dir, 'unused')]);
    expect(result.status).toBe(0);
  });

  it('fetches one segment, byte for byte', async () => {
    const dest = join(hub.dir, 'RECOVERYXLOG');
    const result = await walRestore(['127.0.0.1', 'pg1', segments[1]!.name, dest]);
    expect(result.status).toBe(0);
    expect(sha256(await readFile(dest))).toBe(segments[1]!.sha256);
  });

  it('answers a missing segment with exit 1, which PostgreSQL reads as "not available"', async () => {
    const result = await walRestore(['127.0.0.1', 'pg1', '0000000100000000000000EE', join(hub.dir, 'x')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('walhub: WAL file not found in the archive (pg1 0000000100000000000000EE)');
  });

  it('prefetches with --parallel: later segments come from its spool, every one byte for byte', async () => {
    const spool = join(hub.dir, 'spool');
    for (const segment of segments) {
      const dest = join(hub.dir, `restored-${segment.name}`);
      const result = await walRestore(['--parallel', '3', '--spool-dir', spool, '127.0.0.1', 'pg1', segment.name, dest]);
      expect(result.status, result.stderr).toBe(0);
      expect(sha256(await readFile(dest))).toBe(segment.sha256);
    }
    const peeks = (await hub.audit()).filter((r) => r.event === 'request' && String(r.command).includes('--peek'));
    expect(peeks.length).toBeGreaterThan(0);
    // Fewer peeks than segments: the rest were served from the spool.
    expect(peeks.length).toBeLessThan(segments.length);
  });

  it.each(['-z', '-j'])('fetches with %s every stored format, each file it writes byte for byte the segment', async (option) => {
    for (const segment of segments) {
      const dest = join(hub.dir, `restored${option}-${segment.name}`);
      const result = await walRestore([option, '127.0.0.1', 'pg1', segment.name, dest]);
      expect(result.status, result.stderr).toBe(0);
      expect(sha256(await readFile(dest))).toBe(segment.sha256);
    }
    const sent = (await hub.audit()).filter((r) => r.event === 'request' && String(r.command).includes(option === '-z' ? '--gzip' : '--bzip2'));
    expect(sent.filter((r) => r.result === 'ok' && Number(r.bytes) > 0 && Number(r.bytes) < 16 * 1024 * 1024)).toHaveLength(segments.length);
  });

  it.each([[[]], [['-z']]])('prefetches with --parallel 4 %j, every file byte for byte', async (options) => {
    const spool = join(hub.dir, `spool4${options.join('')}`);
    for (const segment of segments) {
      const dest = join(hub.dir, `restored-p4${options.join('')}-${segment.name}`);
      const result = await walRestore([...options, '--parallel', '4', '--spool-dir', spool, '127.0.0.1', 'pg1', segment.name, dest]);
      expect(result.status, result.stderr).toBe(0);
      expect(sha256(await readFile(dest))).toBe(segment.sha256);
    }
  });

  it('fetches a segment that exists only as streaming/<name>.partial with -P', async () => {
    const name = basename(fixture.partial, '.partial');
    expect(segments.map((s) => s.name)).not.toContain(name);
    await place(join(hub.archive, 'pg1'), fixture.partial, { where: 'streaming' });
    const dest = join(hub.dir, `restored-partial-${name}`);
    expect((await walRestore(['127.0.0.1', 'pg1', name, dest])).status).toBe(1);
    const result = await walRestore(['-P', '127.0.0.1', 'pg1', name, dest]);
    expect(result.status, result.stderr).toBe(0);
    expect(sha256(await readFile(dest))).toBe(sha256(await readFile(fixture.partial)));
  });
});

describe('barman-wal-restore passes walhub\'s exit codes through', () => {
  it.each([[[]], [['-z']], [['-j']]])('exit 4 for a damaged file %j, which it never writes as a segment', async (options) => {
    // A gzip file whose payload is another segment: the right size, the wrong WAL.
    const wanted = '0000000100000000000000D0';
    await place(join(hub.archive, 'pg1'), fixture.segments[1]!, { codec: 'gzip', name: wanted });
    const dest = join(hub.dir, `damaged${options.join('')}`);
    const result = await walRestore([...options, '127.0.0.1', 'pg1', wanted, dest]);
    expect(result.status).toBe(4);
    expect(result.stderr).toContain(`walhub: archived file is damaged: the first page is at `);
    expect((await readFile(dest)).length).toBe(0);
  });

  it('exit 3 for a server this key may not read', async () => {
    const result = await walRestore(['127.0.0.1', 'pg2', segments[0]!.name, join(hub.dir, 'denied')]);
    expect(result.status).toBe(3);
    expect(result.stderr).toContain(`walhub: unknown server, or not allowed for this key (pg2 ${segments[0]!.name})`);
  });

  it('exit 3 from --test for a server this key may not read, 0 for one it may', async () => {
    expect((await walRestore(['--test', '127.0.0.1', 'pg2', 'x', join(hub.dir, 'unused')])).status).toBe(3);
    const ok = await walRestore(['--test', '-z', '127.0.0.1', 'pg1', 'x', join(hub.dir, 'unused')]);
    expect(ok.status).toBe(0);
  });

  it('exit 1 for a missing segment with -z, not gzip\'s own complaint', async () => {
    const result = await walRestore(['-z', '127.0.0.1', 'pg1', '0000000100000000000000EE', join(hub.dir, 'missing-z')]);
    expect(result.status).toBe(1);
  });
});

describe('get-wal --peek', () => {
  it('lists the segment and those after it that exist, in every archive directory', async () => {
    const result = await sshExec(hub, standby, `get-wal --peek 10 pg1 ${segments[0]!.name}`);
    expect(result.status).toBe(0);
    expect(result.stdout.toString()).toBe(segments.map((s) => `${s.name}\n`).join(''));
  });

  it('stops at the count, and prints nothing for a missing name', async () => {
    expect((await sshExec(hub, standby, `get-wal -p 2 pg1 ${segments[1]!.name}`)).stdout.toString()).toBe(
      `${segments[1]!.name}\n${segments[2]!.name}\n`,
    );
    const missing = await sshExec(hub, standby, 'get-wal --peek 3 pg1 0000000100000000000000EE');
    expect(missing.status).toBe(0);
    expect(missing.stdout.toString()).toBe('');
  });

  it('lists a history file alone', async () => {
    await place(join(hub.archive, 'pg1'), fixture.history, { codec: 'gzip' });
    const result = await sshExec(hub, standby, `get-wal --peek 5 pg1 ${basename(fixture.history)}`);
    expect(result.stdout.toString()).toBe(`${basename(fixture.history)}\n`);
  });
});
