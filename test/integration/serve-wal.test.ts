// walhub serving real PostgreSQL WAL to the real OpenSSH client: every byte
// right, every exit code as DESIGN.md's table says, with its one stderr line.
import { copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadOrMakeWalFixture, type WalFixture } from '../helpers/wal-fixture.js';
import { archivedPath, createServerDir, encode, place, sha256, type Codec, type Placed } from '../helpers/archive.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';

let fixture: WalFixture;
let hub: Hub;
let standby: ClientKey;
let serverDir: string;
const placed = new Map<string, Placed>();
const nameOf = (path: string) => path.split('/').pop()!;

beforeAll(async () => {
  fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  hub = await startHub();
  standby = await createClientKey(hub.dir, 'standby-a');
  // pgdamaged and pglink hold files that are wrong on purpose, under their right names.
  await hub.loadKeys([{ key: standby, options: 'servers="pg1,pgdamaged,pglink,pgstream"' }]);
  serverDir = await createServerDir(hub.archive, 'pg1');
  const [s0, s1, s2, s3, s4, s5] = fixture.segments as [string, string, string, string, string, string];
  const layout: [string, string, Codec, 'wals' | 'incoming' | 'streaming'][] = [
    ['plain segment in wals/', s0, 'none', 'wals'],
    ['gzip segment in wals/', s1, 'gzip', 'wals'],
    ['zstd segment in wals/', s2, 'zstd', 'wals'],
    ['bzip2 segment in wals/', s3, 'bzip2', 'wals'],
    ['gzip segment in incoming/', s4, 'gzip', 'incoming'],
    ['plain segment in streaming/', s5, 'none', 'streaming'],
    ['xz segment of timeline 2 in wals/', fixture.timeline2Segments[0]!, 'xz', 'wals'],
    ['lz4 segment of timeline 2 in incoming/', fixture.timeline2Segments[1] ?? fixture.timeline2Segments[0]!, 'lz4', 'incoming'],
    ['gzip history file in wals/', fixture.history, 'gzip', 'wals'],
    ['zstd backup history file in wals/', fixture.backupHistory, 'zstd', 'wals'],
    ['archived .partial (zstd) in wals/', fixture.archivedPartial, 'zstd', 'wals'],
  ];
  for (const [label, source, codec, where] of layout) placed.set(label, await place(serverDir, source, { codec, where }));
  // pg_receivewal's .partial alone in streaming/ (its segment is archived in full in pg1).
  placed.set('streaming .partial', await place(await createServerDir(hub.archive, 'pgstream'), fixture.partial, { where: 'streaming' }));
});

afterAll(async () => {
  await hub?.stop();
});

describe('get-wal serves the decoded file, byte for byte', () => {
  it.each([
    'plain segment in wals/',
    'gzip segment in wals/',
    'zstd segment in wals/',
    'bzip2 segment in wals/',
    'gzip segment in incoming/',
    'plain segment in streaming/',
    'xz segment of timeline 2 in wals/',
    'lz4 segment of timeline 2 in incoming/',
    'gzip history file in wals/',
    'zstd backup history file in wals/',
    'archived .partial (zstd) in wals/',
  ])('%s', async (label) => {
    const file = placed.get(label)!;
    const result = await sshExec(hub, standby, `get-wal pg1 ${file.name}`);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.bytes).toBe(file.size);
    expect(result.sha256).toBe(file.sha256);
  });

  it('serves streaming/<name>.partial for a bare name with --partial, and only then', async () => {
    const file = placed.get('streaming .partial')!;
    const bare = file.name.replace(/\.partial$/, '');
    const without = await sshExec(hub, standby, `get-wal pgstream ${bare}`);
    expect(without.status).toBe(1);
    const withPartial = await sshExec(hub, standby, `get-wal --partial pgstream ${bare}`);
    expect(withPartial.status).toBe(0);
    expect(withPartial.bytes).toBe(file.size);
    expect(withPartial.sha256).toBe(file.sha256);
    const byName = await sshExec(hub, standby, `get-wal pgstream ${file.name}`);
    expect(byName.sha256).toBe(file.sha256);
  });

  it('answers barman-wal-restore in its own words', async () => {
    const file = placed.get('gzip segment in wals/')!;
    const test = await sshExec(hub, standby, `barman --config /etc/barman.conf get-wal --test 'pg1' 'dummy_wal_name'`);
    expect(test.status).toBe(0);
    expect(test.stdout.toString()).toBe('Ready to retrieve WAL files from the server pg1\n');
    const result = await sshExec(hub, standby, `barman --config /etc/barman.conf get-wal 'pg1' '${file.name}'`);
    expect(result.status).toBe(0);
    expect(result.sha256).toBe(file.sha256);
  });
});

describe('the audit log', () => {
  it('records a served request with who, from where, what, the result and the bytes', async () => {
    const file = placed.get('zstd segment in wals/')!;
    await sshExec(hub, standby, `get-wal pg1 ${file.name}`);
    const records = await hub.audit();
    const request = records.filter((r) => r.event === 'request' && r.wal === file.name).pop();
    expect(request).toMatchObject({
      event: 'request',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      conn: expect.stringMatching(/^[0-9a-f]{12}$/),
      remote: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      client: expect.stringMatching(/^SSH-2\.0-OpenSSH_/),
      user: 'walhub',
      key: standby.fingerprint,
      key_name: 'standby-a',
      command: `get-wal pg1 ${file.name}`,
      server: 'pg1',
      wal: file.name,
      result: 'ok',
      exit: 0,
      bytes: file.size,
      ms: expect.any(Number),
      compression: 'zstd',
    });
    const conn = request!.conn;
    expect(records.filter((r) => r.conn === conn).map((r) => r.event)).toEqual(['connect', 'auth', 'request', 'disconnect']);
  });
});

describe('exit codes and the one line a person reads', () => {
  it.each([
    ['a WAL file not in the archive', 'get-wal pg1 0000000100000000000000FE', 1, 'walhub: WAL file not found in the archive (pg1 0000000100000000000000FE)\n'],
    ['a history file not in the archive', 'get-wal pg1 00000009.history', 1, 'walhub: WAL file not found in the archive (pg1 00000009.history)\n'],
    ['an unknown verb', 'cat /etc/passwd', 2, 'walhub: unknown command "cat": walhub only runs "get-wal SERVER WAL_NAME"\n'],
    ['an invalid WAL name', 'get-wal pg1 000000010000000000000003.gz', 2, 'walhub: invalid WAL name "000000010000000000000003.gz": expected 24 upper-case hex digits, optionally followed by .partial or .XXXXXXXX.backup, or XXXXXXXX.history\n'],
    ['a lower-case WAL name', 'get-wal pg1 00000001000000000000000a', 2, 'walhub: invalid WAL name "00000001000000000000000a": expected 24 upper-case hex digits, optionally followed by .partial or .XXXXXXXX.backup, or XXXXXXXX.history\n'],
    ['an unknown option', 'get-wal --delete pg1 000000010000000000000003', 2, 'walhub: unknown option "--delete"\n'],
    ['a missing argument', 'get-wal pg1', 2, 'walhub: expected: get-wal [options] SERVER WAL_NAME\n'],
    ['an unknown server', 'get-wal pg9 000000010000000000000003', 3, 'walhub: unknown server, or not allowed for this key (pg9 000000010000000000000003)\n'],
  ])('%s', async (_what, command, status, stderr) => {
    const result = await sshExec(hub, standby, command);
    expect(result.status).toBe(status);
    expect(result.stderr).toBe(stderr);
    expect(result.bytes).toBe(0);
  });

  it('exit 4, nothing sent: the bytes of one segment stored under the next name', async () => {
    const [first, second] = fixture.segments as [string, string];
    const damaged = await createServerDir(hub.archive, 'pgdamaged');
    await place(damaged, first, { codec: 'zstd', name: nameOf(second) });
    const result = await sshExec(hub, standby, `get-wal pgdamaged ${nameOf(second)}`);
    expect(result.status).toBe(4);
    expect(result.bytes).toBe(0);
    expect(result.stderr).toMatch(
      new RegExp(`^walhub: archived file is damaged: the first page is at 0/[0-9A-F]{8}, the name says 0/[0-9A-F]{8} \\(pgdamaged ${nameOf(second)}\\)\n$`),
    );
  });

  it('exit 4, never 0: a truncated zstd file', async () => {
    const source = fixture.segments[2]!;
    const whole = await encode(await readFile(source), 'zstd');
    const damaged = await createServerDir(hub.archive, 'pgdamaged');
    const path = archivedPath(damaged, nameOf(source));
    await mkdir(dirname(path), { recursive: true });
    // Under its own name, so page 0 is right and only the end is missing.
    await writeFile(path, whole.subarray(0, Math.floor(whole.length / 2)));
    const result = await sshExec(hub, standby, `get-wal pgdamaged ${nameOf(source)}`);
    expect(result.status).toBe(4);
    expect(result.bytes).toBeLessThan(fixture.segmentSize);
  });

  it('exit 4, never 0: a plain segment cut short', async () => {
    const source = fixture.segments[3]!;
    const damaged = await createServerDir(hub.archive, 'pgdamaged');
    const path = archivedPath(damaged, nameOf(source));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, (await readFile(source)).subarray(0, 8 * 1024 * 1024));
    const result = await sshExec(hub, standby, `get-wal pgdamaged ${nameOf(source)}`);
    expect(result.status).toBe(4);
    expect(result.bytes).toBeLessThan(fixture.segmentSize);
  });

  it('exit 4 with a reason: a snappy file whose chunks are not snappy', async () => {
    const name = bumpSegment(nameOf(fixture.segments[0]!), 0x42);
    const path = archivedPath(serverDir, name);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, Buffer.concat([Buffer.from('ff060000734e61507059', 'hex'), Buffer.alloc(100)]));
    const result = await sshExec(hub, standby, `get-wal pg1 ${name}`);
    expect(result.status).toBe(4);
    expect(result.stderr).toBe(`walhub: archived file is damaged: it does not decode (snappy chunk is shorter than its checksum) (pg1 ${name})\n`);
    expect(result.bytes).toBe(0);
  });

  it('never exits above 125 for anything the server decides', async () => {
    const statuses = new Set<number | null>();
    for (const command of ['get-wal', 'get-wal pg1 x', 'get-wal pg9 000000010000000000000003', 'frobnicate']) {
      statuses.add((await sshExec(hub, standby, command)).status);
    }
    for (const status of statuses) expect(status).toBeLessThanOrEqual(125);
  });
});

describe('symlinks and paths that lead out of the archive', () => {
  it('refuses loudly (exit 5, not "not found") a symlink in the archive that points outside the server directory', async () => {
    const outside = join(hub.dir, 'secret');
    await writeFile(outside, 'not WAL');
    const name = bumpSegment(nameOf(fixture.segments[0]!), 0x43);
    const link = archivedPath(serverDir, name);
    await mkdir(join(link, '..'), { recursive: true });
    await symlink(outside, link);
    const result = await sshExec(hub, standby, `get-wal pg1 ${name}`);
    expect(result.status).toBe(5);
    expect(result.stderr).toBe(
      `walhub: archive path wals/${name.slice(0, 16)}/${name} leads outside the server directory; refusing it (pg1 ${name})\n`,
    );
    expect(result.bytes).toBe(0);
  });

  it('follows a symlink that stays inside the server directory', async () => {
    const source = fixture.segments[0]!;
    const linked = await createServerDir(hub.archive, 'pglink');
    await copyFile(source, join(linked, 'errors', 'kept-here'));
    const link = archivedPath(linked, nameOf(source));
    await mkdir(dirname(link), { recursive: true });
    await symlink('../../errors/kept-here', link);
    const result = await sshExec(hub, standby, `get-wal pglink ${nameOf(source)}`);
    expect(result.status).toBe(0);
    expect(result.sha256).toBe(sha256(await readFile(source)));
  });
});

/** The segment `delta` after `name` on the same timeline (16 MiB segments). */
function bumpSegment(name: string, delta: number): string {
  const timeline = name.slice(0, 8);
  const segno = parseInt(name.slice(8, 16), 16) * 256 + parseInt(name.slice(16, 24), 16) + delta;
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
  return timeline + hex(Math.floor(segno / 256)) + hex(segno % 256);
}

