// [cache] preallocate = true takes the cache's whole budget before walhub
// listens, as blocks written once, so that the first segments read ahead after
// a start are decoded into memory the process already has (on the bench
// machine, new memory costs as much as sending it). An administrator checks
// three things: the start-up line saying how much was taken, the memory
// really resident, and readahead logging `memory: "reused"` from the first
// segment on, with every segment served byte for byte.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createServerDir, place, type Placed } from '../helpers/archive.js';
import { startHub, startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { rssMiB } from '../helpers/proc.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

const MIB = 1024 * 1024;
const BUDGET_MIB = 64;
const cacheToml = (preallocate: boolean) => `[cache]\nmemory = "${BUDGET_MIB}MiB"\nreadahead = 2\npreallocate = ${preallocate}\n`;
let preallocated: Hub;
let plain: Hub;
let standby: ClientKey;
let segments: Placed[];

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub: preallocated, keys: { standby } } = await startHubWithStandbys({ standby: 'servers="pg1"' }, { extraToml: cacheToml(true) }));
  plain = await startHub({ extraToml: cacheToml(false) });
  const dir = await createServerDir(preallocated.archive, 'pg1');
  segments = await Promise.all(fixture.segments.map((segment) => place(dir, segment, { codec: 'zstd' })));
});

afterAll(async () => {
  await preallocated?.stop();
  await plain?.stop();
});

it('says at start how much memory it took, and holds it resident before the first request', async () => {
  const line = preallocated.logLines.find((l) => l.msg === 'cache memory preallocated');
  expect(line).toMatchObject({ blocks: BUDGET_MIB / 16, bytes: BUDGET_MIB * MIB });
  // Taken before listening: the line comes before the address a standby connects to.
  expect(preallocated.logLines.indexOf(line!)).toBeLessThan(preallocated.logLines.findIndex((l) => l.msg === 'listening'));
  expect(plain.logLines.some((l) => l.msg === 'cache memory preallocated')).toBe(false);
  // Allocated but never written, the blocks would cost no resident memory at all.
  const [withBlocks, without] = [await rssMiB(preallocated.process.pid!), await rssMiB(plain.process.pid!)];
  expect(withBlocks - without, `RSS ${withBlocks.toFixed(1)} MiB preallocated, ${without.toFixed(1)} MiB not`).toBeGreaterThan(BUDGET_MIB * 0.9);
});

it('decodes the first segments read ahead into the preallocated blocks, and serves every segment byte for byte', async () => {
  expect(segments.length).toBeGreaterThanOrEqual(6);
  const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${join(preallocated.dir, 'mux')}`, '-o', 'ControlPersist=30'];
  const since = preallocated.logLines.length;
  try {
    for (const segment of segments) {
      const result = await sshExec(preallocated, standby, `get-wal pg1 ${segment.name}`, { extra: mux });
      expect(result.status, result.stderr).toBe(0);
      expect(result.sha256, segment.name).toBe(segment.sha256);
    }
  } finally {
    await sshExec(preallocated, standby, undefined, { extra: [...mux, '-O', 'exit'] });
  }
  const audit = await preallocated.audit();
  expect(audit.filter((r) => r.cache === 'hit').length).toBeGreaterThanOrEqual(1);
  const cached = preallocated.logLines.slice(since).filter((l) => l.msg === 'readahead' && l.outcome === 'cached');
  expect(cached.length).toBeGreaterThanOrEqual(2);
  expect(cached.map((l) => l.memory)).toEqual(cached.map(() => 'reused'));
});

it('stays up through a reload (SIGHUP) sent while it takes its memory, and reloads', async () => {
  // 512 MiB: about 1.3 s on the bench machine, so the signal lands while the blocks are written.
  let signalledAt: number | undefined;
  const hub = await startHub({
    extraToml: '[cache]\nmemory = "512MiB"\npreallocate = true\n',
    onLog: (line, child) => {
      if (line.msg === 'preallocating cache memory' && signalledAt === undefined && child.kill('SIGHUP')) signalledAt = Date.now();
    },
  });
  try {
    expect(signalledAt).toBeDefined();
    // Only part of it on a host with less than 1 GiB available; either way the line ends the preallocation.
    const done = hub.logLines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('cache memory preallocated'));
    expect(done).toMatchObject({ blocks: expect.any(Number) as number });
    // The signal was sent before the blocks were all written: what this test is about.
    expect(signalledAt!).toBeLessThan(Date.parse(done!.time as string));
    await hub.waitForLog((l) => l.msg === 'SIGHUP: re-reading authorized keys');
  } finally {
    expect(await hub.stop()).toBe(0);
  }
});

it('warns when preallocate cannot act: a cache turned off, or a budget below one block', async () => {
  for (const [toml, msg] of [
    ['memory = 0', '[cache] preallocate ignored: the cache is off (memory or readahead is 0)'],
    ['memory = "8MiB"', 'cache memory not preallocated: [cache] memory is less than one 16 MiB block'],
  ] as const) {
    const hub = await startHub({ extraToml: `[cache]\n${toml}\npreallocate = true\n` });
    try {
      expect(hub.logLines.find((l) => l.msg === msg), toml).toMatchObject({ level: 40 });
    } finally {
      await hub.stop();
    }
  }
});
