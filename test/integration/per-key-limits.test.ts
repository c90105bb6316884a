// One key cannot take the transfer slots from the others (issue 7): a key
// whose fetches all stall holds at most max_transfers_per_key slots, and only
// until stall_timeout; another key's fetches meanwhile all succeed.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { heldOpen, sampleRss } from '../helpers/proc.js';
import { requireProgram } from '../helpers/programs.js';
import { sshArgs, sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

let hub: Hub;
let greedy: ClientKey;
let other: ClientKey;
let segments: Placed[];
const stalled: ChildProcess[] = [];

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  // Without a per-key cap, 20 stalled fetches would hold all 16 slots for good.
  // The greedy standby opens its 20 connections at once from one host: the
  // per-source caps (10 logging in, 20 in all) would turn some away at accept,
  // which is not what this file tests; they are raised here.
  ({ hub, keys: { greedy, other } } = await startHubWithStandbys({ greedy: 'servers="pg1"', other: 'servers="pg1"' }, {
    extraToml: '[limits]\nmax_transfers = 16\nmax_transfers_per_key = 8\nstall_timeout = "2s"\nper_source_max_startups = 40\nper_source_max_connections = 40\n',
  }));
  const dir = await createServerDir(hub.archive, 'pg1');
  const codecs = ['bzip2', 'zstd', 'none', 'gzip'] as const;
  segments = await Promise.all(fixture.segments.slice(0, 4).map((s, i) => place(dir, s, { codec: codecs[i]! })));
});

afterAll(async () => {
  for (const child of stalled) child.kill('SIGKILL');
  await hub?.stop();
});

/** The real ssh client with its stdout never read, as `ssh ... get-wal ... | sleep N` would. */
function startStalledFetch(wal: string): Promise<{ status: number | null; stderr: string }> {
  const child = spawn(requireProgram('ssh', 'openssh-client'), [...sshArgs(hub, greedy), `get-wal pg1 ${wal}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  stalled.push(child);
  child.stdout!.pause();
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stderr })));
}

it('one key with 20 stalled fetches cannot keep another key from its 20; the stalled ones end after stall_timeout', async () => {
  const rss = sampleRss(hub.process.pid!);
  const greedyFetches = Array.from({ length: 20 }, (_, i) => startStalledFetch(segments[i % segments.length]!.name));
  await hub.waitForLog((l) => l.msg === 'request' && l.result === 'unavailable');

  // The other key, 8 at a time like barman-wal-restore --parallel 8.
  const wanted = Array.from({ length: 20 }, (_, i) => segments[i % segments.length]!);
  const results: { sha256: string; status: number | null; expected: string }[] = [];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let next = wanted.shift(); next; next = wanted.shift()) {
        // The other standby is another host.
        const result = await sshExec(hub, other, `get-wal pg1 ${next.name}`, { extra: ['-o', 'BindAddress=127.0.0.2'] });
        results.push({ sha256: result.sha256, status: result.status, expected: next.sha256 });
      }
    }),
  );
  expect(results).toHaveLength(20);
  for (const result of results) expect(result).toEqual({ sha256: result.expected, status: 0, expected: result.expected });

  const greedyRecords = async () => (await hub.audit()).filter((r) => r.event === 'request' && r.key === greedy.fingerprint);
  await expect.poll(async () => (await greedyRecords()).length, { timeout: 20_000 }).toBe(20);
  const records = await greedyRecords();
  const busy = records.filter((r) => r.result === 'unavailable');
  const cut = records.filter((r) => r.result === 'aborted');
  expect(busy.length + cut.length).toBe(20);
  expect(busy.length).toBeGreaterThan(0);
  expect(cut.length).toBeGreaterThanOrEqual(8);
  for (const record of busy) expect(record.error).toBe('this key already has 8 transfers running, retry shortly');
  for (const record of cut) {
    expect(record).toMatchObject({ error: 'stalled: no data taken for 2 s', exit: 5 });
    expect(record.bytes as number).toBeLessThan(16 * 1024 * 1024);
  }
  // Refused beyond the key's cap, at once, with a line saying why. The stalled
  // ones lose their connection too (ssh exits 255): the client's window left
  // part of a write inside walhub, which only the connection's end lets go of.
  const clients = await Promise.all(greedyFetches);
  const refusedClients = clients.filter((c) => c.status === 5);
  expect(refusedClients).toHaveLength(busy.length);
  for (const c of refusedClients) expect(c.stderr).toMatch(/^walhub: this key already has 8 transfers running, retry shortly \(pg1 [0-9A-F]{24}\)\n$/);
  expect(clients.filter((c) => c.status === 255)).toHaveLength(cut.length);
  const cutConns = new Set(cut.map((r) => r.conn));
  const ended = (await hub.audit()).filter((r) => r.event === 'disconnect' && cutConns.has(r.conn));
  expect(ended.map((r) => r.reason)).toEqual([...cutConns].map(() => 'a stalled transfer left data in its channel'));

  // Nothing stays open: no archive file, no decoder process.
  await expect.poll(() => heldOpen(hub.process.pid!, hub.archive), { timeout: 5000 }).toEqual({ files: [], children: 0 });
  rss.stop();
  console.log(`per-key limits: hub peak RSS ${rss.peak().toFixed(0)} MiB`);
});

it('does not cut off a slow reader that keeps taking data, however long the file takes', async () => {
  const plain = segments[2]!;
  // The real ssh client reads the channel only as fast as its stdout is read.
  const child = spawn(requireProgram('ssh', 'openssh-client'), [...sshArgs(hub, other), `get-wal pg1 ${plain.name}`], { stdio: ['ignore', 'pipe', 'ignore'] });
  stalled.push(child);
  const hash = createHash('sha256');
  const started = Date.now();
  // At most 64 KiB every 20 ms, about 3 MiB/s: the 16 MiB file takes over 5 s, past the 2 s stall_timeout.
  for await (const chunk of child.stdout!) {
    hash.update(chunk as Buffer);
    await new Promise((r) => setTimeout(r, 20));
  }
  const status = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('close', resolve)));
  expect(Date.now() - started).toBeGreaterThan(3000);
  expect(status).toBe(0);
  expect(hash.digest('hex')).toBe(plain.sha256);
});
