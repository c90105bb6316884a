import { describe, expect, it } from 'vitest';
import type { FileIdentity } from '../../src/archive/file-identity.js';
import { WalCache, type CachedWal } from '../../src/archive/wal-cache.js';

const identity: FileIdentity = { relative: 'wals/x', dev: 1n, ino: 2n, size: 3n, mtimeNs: 4n, ctimeNs: 5n };

function wal(bytes: number): CachedWal {
  return { chunks: [Buffer.alloc(bytes)], segmentSize: bytes, bytes, identity, compression: 'none' };
}

/** Reserves `bytes` and stores a segment of that size under `key`. */
function put(cache: WalCache, key: string, bytes: number): boolean {
  const reservation = cache.reserve(bytes);
  reservation?.commit(key, wal(bytes));
  return reservation !== undefined;
}

describe('WalCache budget', () => {
  it('counts reserved and cached bytes together, and gives a released reservation back', () => {
    const cache = new WalCache(100);
    expect(put(cache, 'a', 40)).toBe(true);
    const reservation = cache.reserve(50)!;
    expect([cache.cachedBytes, cache.reservedBytes, cache.heldBytes]).toEqual([40, 50, 90]);
    reservation.release();
    reservation.release();
    expect(cache.heldBytes).toBe(40);
  });

  it('counts what was decoded, not what was reserved, once committed', () => {
    const cache = new WalCache(100);
    const reservation = cache.reserve(60)!;
    reservation.commit('a', wal(50));
    reservation.release();
    expect([cache.cachedBytes, cache.reservedBytes, cache.heldBytes]).toEqual([50, 0, 50]);
  });

  it('refuses a commit larger than its reservation', () => {
    const cache = new WalCache(100);
    expect(() => cache.reserve(10)!.commit('a', wal(11))).toThrow('11 bytes committed on a reservation of 10');
  });

  it('refuses a reservation larger than the whole budget, evicting nothing', () => {
    const cache = new WalCache(100);
    put(cache, 'a', 30);
    expect(cache.reserve(101)).toBeUndefined();
    expect(cache.has('a')).toBe(true);
  });

  it('refuses a reservation when the room is held by decodes and streams under way', () => {
    const cache = new WalCache(100);
    put(cache, 'a', 50);
    const streaming = cache.acquire('a')!;
    cache.reserve(40);
    expect(cache.reserve(20)).toBeUndefined();
    expect(cache.heldBytes).toBe(90);
    streaming.release();
    expect(cache.reserve(20)).toBeDefined();
    expect(cache.has('a')).toBe(false);
  });

  it('keeps counting an entry dropped while it is streamed, until the stream releases it', () => {
    const cache = new WalCache(100);
    put(cache, 'a', 60);
    const streaming = cache.acquire('a')!;
    cache.drop('a');
    expect(cache.has('a')).toBe(false);
    expect([cache.cachedBytes, cache.heldBytes]).toEqual([0, 60]);
    expect(cache.reserve(50)).toBeUndefined();
    streaming.release();
    expect(cache.heldBytes).toBe(0);
  });

  it('replaces an entry stored again under the same key, counting it once', () => {
    const cache = new WalCache(100);
    put(cache, 'a', 30);
    put(cache, 'a', 40);
    expect([cache.entries, cache.heldBytes]).toEqual([1, 40]);
  });
});

describe('WalCache LRU', () => {
  it('evicts the least recently used entries, just enough of them', () => {
    const cache = new WalCache(100);
    for (const key of ['a', 'b', 'c']) put(cache, key, 30);
    cache.acquire('a')!.release();
    expect(put(cache, 'd', 30)).toBe(true);
    expect(['a', 'b', 'c', 'd'].filter((k) => cache.has(k))).toEqual(['a', 'c', 'd']);
    expect(cache.heldBytes).toBe(90);
  });

  it('never evicts an entry being streamed', () => {
    const cache = new WalCache(100);
    put(cache, 'a', 50);
    put(cache, 'b', 40);
    const streaming = cache.acquire('a')!;
    // b is the least recently used now; a is older in time but pinned.
    cache.acquire('b')!.release();
    expect(put(cache, 'c', 40)).toBe(true);
    expect(['a', 'b', 'c'].filter((k) => cache.has(k))).toEqual(['a', 'c']);
    streaming.release();
  });

  it('clears every entry', () => {
    const cache = new WalCache(100);
    put(cache, 'a', 50);
    cache.clear();
    expect([cache.entries, cache.heldBytes]).toEqual([0, 0]);
  });
});
