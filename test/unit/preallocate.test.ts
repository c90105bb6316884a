// [cache] preallocate's start-up step: it takes the budget, but never more
// than half of the memory available, so that a budget set above what the host
// has cannot make the kernel's OOM killer pick PostgreSQL or Barman at start.
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { availableMemory, PREALLOCATED_BLOCK_BYTES, preallocateCache, preallocationLimit } from '../../src/archive/preallocate.js';
import { WalCache } from '../../src/archive/wal-cache.js';

const MIB = 1024 * 1024;

function capturedLog(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  return { log: pino(sink), lines };
}

it('takes the whole budget when at most half of the available memory', () => {
  expect(preallocationLimit(256 * MIB, 8192 * MIB)).toBe(256 * MIB);
  expect(preallocationLimit(256 * MIB, 512 * MIB)).toBe(256 * MIB);
  expect(preallocationLimit(256 * MIB, 300 * MIB)).toBe(150 * MIB);
});

it('fills the budget with 16 MiB blocks and says so', () => {
  const cache = new WalCache(40 * MIB);
  const { log, lines } = capturedLog();
  preallocateCache(cache, log, 1024 * MIB);
  expect([cache.spareBytes, cache.heldBytes]).toEqual([32 * MIB, 32 * MIB]);
  expect(lines).toMatchObject([
    { level: 30, msg: 'preallocating cache memory', bytes: 32 * MIB },
    { level: 30, msg: 'cache memory preallocated', blocks: 2, bytes: 2 * PREALLOCATED_BLOCK_BYTES },
  ]);
});

it('takes only half of the memory available, and warns that the rest comes as the cache fills', () => {
  const cache = new WalCache(256 * MIB);
  const { log, lines } = capturedLog();
  preallocateCache(cache, log, 100 * MIB);
  expect(cache.spareBytes).toBe(48 * MIB);
  expect(lines).toHaveLength(2);
  expect(lines[1]).toMatchObject({ level: 40, blocks: 3, memory: 256 * MIB, available: 100 * MIB });
  expect(lines[1]!.msg).toMatch(/^cache memory preallocated only in part: \[cache\] memory is more than half the memory available/);
  // The rest of the budget is still the cache's, for decodes into new memory.
  expect(cache.reserveBlock(16 * MIB)?.memory).toBeDefined();
  expect(cache.reserve(200 * MIB)).toBeDefined();
});

it('keeps what it could take when memory runs out, and warns instead of failing the start', () => {
  const cache = new WalCache(64 * MIB);
  const real = cache.addSpare.bind(cache);
  let calls = 0;
  cache.addSpare = (bytes) => {
    if (++calls === 3) throw new RangeError('Array buffer allocation failed');
    return real(bytes);
  };
  const { log, lines } = capturedLog();
  preallocateCache(cache, log, 1024 * MIB);
  expect(cache.spareBytes).toBe(32 * MIB);
  expect(lines.at(-1)).toMatchObject({ level: 40, blocks: 2, err: 'Array buffer allocation failed' });
  expect(lines.at(-1)!.msg).toMatch(/^cache memory preallocated only in part: no more memory could be had/);
});

describe('availableMemory', () => {
  const probe = { free: () => 20_000 * MIB, rss: () => 80 * MIB };

  it('takes what Node reports available (a cgroup limit less its usage) when less than the free memory', () => {
    expect(availableMemory({ ...probe, available: () => 220 * MIB })).toBe(220 * MIB);
    expect(availableMemory({ free: () => 100 * MIB, rss: probe.rss, available: () => 220 * MIB })).toBe(100 * MIB);
  });

  it('on a Node without availableMemory, takes the cgroup limit less its own RSS (systemd MemoryMax=300M)', () => {
    expect(availableMemory({ ...probe, constrained: () => 300 * MIB })).toBe(220 * MIB);
    expect(availableMemory({ ...probe, constrained: () => 50 * MIB })).toBe(0);
  });

  it('reads no limit as none: 0, undefined, or 2^64 - 1', () => {
    for (const limit of [0, undefined, 2 ** 64 - 1]) expect(availableMemory({ ...probe, constrained: () => limit })).toBe(20_000 * MIB);
    expect(availableMemory(probe)).toBe(20_000 * MIB);
  });
});
