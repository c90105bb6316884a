import { describe, expect, it } from 'vitest';
import type { FileIdentity } from '../../src/archive/file-identity.js';
import { fullCollection } from '../../src/archive/collect-garbage.js';
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
  it('evicts the least recently used entries, just enough of them, served ones before those read ahead and not yet asked for', () => {
    const cache = new WalCache(100);
    for (const key of ['a', 'b', 'c']) put(cache, key, 30);
    cache.acquire('b')!.release();
    cache.acquire('a')!.release();
    expect(put(cache, 'd', 30)).toBe(true);
    expect(['a', 'b', 'c', 'd'].filter((k) => cache.has(k))).toEqual(['a', 'c', 'd']);
    expect(cache.heldBytes).toBe(90);
    expect(put(cache, 'e', 30)).toBe(true);
    expect(['a', 'c', 'd', 'e'].filter((k) => cache.has(k))).toEqual(['c', 'd', 'e']);
    // Nothing served is left: the oldest of those read ahead goes.
    expect(put(cache, 'f', 30)).toBe(true);
    expect(['c', 'd', 'e', 'f'].filter((k) => cache.has(k))).toEqual(['d', 'e', 'f']);
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

  it("never evicts an entry it is told to keep (the chain's next segments), for a reservation or a block", () => {
    const cache = new WalCache(100);
    put(cache, 'next', 40);
    put(cache, 'after', 40);
    const keep = new Set(['next', 'after']);
    expect(cache.reserve(40, keep)).toBeUndefined();
    expect(cache.reserveBlock(40, keep)).toBeUndefined();
    expect([cache.has('next'), cache.has('after')]).toEqual([true, true]);
    // Another chain may still make room with them.
    expect(put(cache, 'other', 40)).toBe(true);
    expect(cache.has('next')).toBe(false);
  });

  it('clears every entry', () => {
    const cache = new WalCache(100);
    put(cache, 'a', 50);
    cache.clear();
    expect([cache.entries, cache.heldBytes]).toEqual([0, 0]);
  });
});

describe('WalCache blocks (whole segments decoded into one block of memory)', () => {
  /** Reserves a block of `bytes` and stores it under `key`; returns the block decoded into, and whether it was a spare. */
  function putBlock(cache: WalCache, key: string, bytes: number): { memory: SharedArrayBuffer; reused: boolean } | undefined {
    const reservation = cache.reserveBlock(bytes);
    if (!reservation) return undefined;
    const memory = reservation.memory ?? new SharedArrayBuffer(bytes);
    reservation.commit(key, { ...wal(bytes), chunks: [Buffer.from(memory)], memory });
    return { memory, reused: reservation.memory !== undefined };
  }

  it('decodes into the block of the entry it evicts, not into new memory', () => {
    const cache = new WalCache(100);
    const a = putBlock(cache, 'a', 40)!;
    const b = putBlock(cache, 'b', 40)!;
    expect([a.reused, b.reused]).toEqual([false, false]);
    const c = putBlock(cache, 'c', 40)!;
    expect(c).toEqual({ memory: a.memory, reused: true });
    expect(['a', 'b', 'c'].filter((k) => cache.has(k))).toEqual(['b', 'c']);
    expect([cache.cachedBytes, cache.spareBytes, cache.heldBytes]).toEqual([80, 0, 80]);
  });

  it('keeps the block of a dropped entry as a spare, counted, and hands it to the next reservation of its size', () => {
    const cache = new WalCache(100);
    const a = putBlock(cache, 'a', 40)!;
    cache.drop('a');
    expect([cache.cachedBytes, cache.spareBytes, cache.heldBytes]).toEqual([0, 40, 40]);
    expect(putBlock(cache, 'b', 40)).toEqual({ memory: a.memory, reused: true });
    expect([cache.spareBytes, cache.heldBytes]).toEqual([0, 40]);
  });

  it('gives a block back only once its last stream is done, and never one a stream may still read', () => {
    const cache = new WalCache(100);
    const a = putBlock(cache, 'a', 40)!;
    const first = cache.acquire('a')!;
    const second = cache.acquire('a')!;
    cache.drop('a');
    first.release();
    expect(cache.spareBytes).toBe(0);
    // The second transfer failed with a chunk of it still inside ssh2.
    second.release(false);
    // Not a spare: counted as retained until collected (a is still referenced here).
    expect([cache.spareBytes, cache.retainedBytes, cache.heldBytes]).toEqual([0, 40, 40]);
    const b = putBlock(cache, 'b', 40)!;
    expect(b.reused).toBe(false);
    expect(b.memory).not.toBe(a.memory);
  });

  it('counts a block let go with a view of it still out (a channel stuck in ssh2) until the collector frees it', async () => {
    const cache = new WalCache(100);
    // What a stuck channel keeps: the rest of a write, a view of the block.
    let stuck: Buffer | undefined = (() => {
      putBlock(cache, 'a', 50);
      const transfer = cache.acquire('a')!;
      const view = transfer.wal.chunks[0]!.subarray(10, 20);
      transfer.release(false);
      return view;
    })();
    cache.drop('a');
    expect([cache.retainedBytes, cache.spareBytes, cache.heldBytes]).toEqual([50, 0, 50]);
    // Room for one more block, not two: the stuck one is still in memory.
    expect(putBlock(cache, 'b', 50)!.reused).toBe(false);
    const streaming = cache.acquire('b')!;
    expect(cache.reserveBlock(50)).toBeUndefined();
    streaming.release();
    expect(stuck.length).toBe(10);
    stuck = undefined;
    const collect = fullCollection();
    for (let i = 0; i < 50 && cache.retainedBytes > 0; i++) {
      collect();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect([cache.retainedBytes, cache.heldBytes]).toEqual([0, 50]);
    expect(putBlock(cache, 'c', 50)).toBeDefined();
  });

  it('lets a reservation that was not committed go: a stopped decode may still be writing its block', () => {
    const cache = new WalCache(100);
    putBlock(cache, 'a', 40);
    cache.drop('a');
    const reservation = cache.reserveBlock(40)!;
    expect(reservation.memory).toBeDefined();
    reservation.release();
    expect([cache.spareBytes, cache.heldBytes]).toEqual([0, 0]);
    expect(putBlock(cache, 'b', 40)!.reused).toBe(false);
  });

  it('lets spares go before any entry when room is needed, and spares of another size before entries for a block', () => {
    const cache = new WalCache(100);
    putBlock(cache, 'a', 30);
    putBlock(cache, 'b', 30);
    putBlock(cache, 'c', 30);
    cache.drop('a');
    expect(put(cache, 'd', 30)).toBe(true);
    expect([cache.spareBytes, cache.heldBytes]).toEqual([0, 90]);
    expect(['b', 'c', 'd'].every((k) => cache.has(k))).toBe(true);
    cache.drop('b');
    const e = putBlock(cache, 'e', 40)!;
    expect(e.reused).toBe(false);
    expect(['c', 'd', 'e'].every((k) => cache.has(k))).toBe(true);
    expect([cache.spareBytes, cache.heldBytes]).toEqual([0, 100]);
  });

  /** Spare blocks of `bytes` added until the budget has no room: how many. */
  function fillWithSpares(cache: WalCache, bytes: number): number {
    let added = 0;
    while (cache.addSpare(bytes)) added++;
    return added;
  }

  it('preallocates as many spare blocks as the budget holds, and decodes into them before taking new memory', () => {
    const cache = new WalCache(100);
    expect(fillWithSpares(cache, 30)).toBe(3);
    expect([cache.entries, cache.spareBytes, cache.heldBytes]).toEqual([0, 90, 90]);
    const blocks = ['a', 'b', 'c', 'd'].map((key) => putBlock(cache, key, 30)!);
    expect(blocks.map((b) => b.reused)).toEqual([true, true, true, true]);
    // The fourth found no room for new memory: it took the block of the least recently used entry.
    expect(blocks[3]!.memory).toBe(blocks[0]!.memory);
    expect(new Set(blocks.map((b) => b.memory)).size).toBe(3);
    expect([cache.spareBytes, cache.heldBytes]).toEqual([0, 90]);
    expect(fillWithSpares(cache, 30)).toBe(0);
  });

  it('gives preallocated blocks of another size back as soon as room is needed', () => {
    const cache = new WalCache(100);
    fillWithSpares(cache, 30);
    expect(putBlock(cache, 'a', 50)!.reused).toBe(false);
    expect(put(cache, 'b', 40)).toBe(true);
    expect([cache.spareBytes, cache.heldBytes]).toEqual([0, 90]);
    expect(fillWithSpares(new WalCache(20), 30)).toBe(0);
  });

  it('refuses a block when every entry is streamed, and clear() lets every block go', () => {
    const cache = new WalCache(100);
    putBlock(cache, 'a', 50);
    putBlock(cache, 'b', 50);
    const streams = [cache.acquire('a')!, cache.acquire('b')!];
    expect(cache.reserveBlock(50)).toBeUndefined();
    streams.forEach((s) => s.release());
    cache.drop('a');
    cache.clear();
    expect([cache.entries, cache.spareBytes, cache.heldBytes]).toEqual([0, 0, 0]);
  });
});
