import { collectGarbageSoon } from './collect-garbage.js';
import type { CompressionName } from './compression.js';
import type { FileIdentity } from './file-identity.js';

/** One segment, decoded and checked, as the decoder handed it over: its chunks, never joined into one copy. */
export interface CachedWal {
  readonly chunks: readonly Buffer[];
  /** The decoded length: a whole segment. */
  readonly segmentSize: number;
  /** Memory the chunks keep alive (their allocations, at least segmentSize): what the budget counts. */
  readonly bytes: number;
  /** The file the chunks were decoded from, as it was then. */
  readonly identity: FileIdentity;
  readonly compression: CompressionName;
  /**
   * The one block of memory the chunks are views of, when they are (a zstd
   * segment decoded whole in a worker): once the entry is dropped and nobody
   * may still read it, the block is kept to decode the next segment into.
   */
  readonly memory?: SharedArrayBuffer;
}

/** Room held for a decode under way; `commit` turns it into an entry, `release` gives it back. */
export interface Reservation {
  readonly bytes: number;
  /** A block of `bytes` that a dropped entry left (reserveBlock): decode into it rather than into new memory. */
  readonly memory?: SharedArrayBuffer;
  commit(key: string, wal: CachedWal): void;
  release(): void;
}

/** An entry being streamed to a client: not evicted meanwhile, and still counted if dropped. */
export interface PinnedWal {
  readonly wal: CachedWal;
  /**
   * Done streaming. `reusable`: false when some of its chunks may still be
   * read by someone (a transfer that failed with a chunk inside ssh2): its
   * block is then never written again, and stays counted until collected.
   */
  release(reusable?: boolean): void;
}

interface Slot {
  readonly wal: CachedWal;
  /** Acquired at least once. */
  served: boolean;
  pins: number;
  dropped: boolean;
  /** Released once as not reusable. */
  tainted: boolean;
}

/**
 * The one cache of decoded segments, shared by every connection. `heldBytes`
 * counts everything its chunks keep in memory: the entries, the room reserved
 * for decodes under way, dropped entries still being streamed, spare
 * blocks, and blocks that may still be read (retainedBytes). It never
 * passes `capacity`: room is made by evicting the least recently used entry
 * nobody is streaming (served ones first, see evictOne) and the caller does
 * not keep, and a reservation that cannot be made is refused.
 */
export class WalCache {
  /** Insertion order is recency: the first entry is the least recently used. */
  private readonly slots = new Map<string, Slot>();
  private held = 0;
  private reserved = 0;
  private cached = 0;
  /**
   * Blocks of dropped entries nobody reads any more, and those preallocate
   * took at start, kept for the next decode (reserveBlock) and counted in
   * `held`: writing memory the process already
   * has costs nothing more, while each new segment of it costs the kernel's
   * work of handing out 4096 pages (on the bench machine about 50 ms a segment).
   */
  private readonly spares: SharedArrayBuffer[] = [];
  private spare = 0;
  /**
   * Blocks let go while a view of them may still be referenced: a transfer
   * that failed with a chunk inside ssh2, which keeps the rest of a write the
   * client's window did not take for as long as the channel lives (a client
   * that stops reading can keep it open). Each holds a whole segment, so each
   * stays counted in `held` until the collector has freed it: otherwise every
   * stuck channel would make the cache decode into 16 MiB more, past its budget.
   */
  private readonly retainedBlocks = new FinalizationRegistry<number>((bytes) => {
    this.retained -= bytes;
    this.held -= bytes;
  });
  private retained = 0;

  constructor(readonly capacity: number) {}

  get heldBytes(): number {
    return this.held;
  }

  /** Bytes of entries in the cache (streamed or not). */
  get cachedBytes(): number {
    return this.cached;
  }

  /** Bytes reserved for decodes under way. */
  get reservedBytes(): number {
    return this.reserved;
  }

  /** Bytes of blocks kept to decode into. */
  get spareBytes(): number {
    return this.spare;
  }

  /** Bytes of blocks let go with a view of them possibly still out, until they are collected. */
  get retainedBytes(): number {
    return this.retained;
  }

  get entries(): number {
    return this.slots.size;
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  /**
   * Room for `bytes`, made by evicting as needed, never the entries in
   * `keep` (a chain's segments read ahead and not yet asked for: dropping
   * the next one to read a later one would only make the standby wait).
   */
  reserve(bytes: number, keep?: ReadonlySet<string>): Reservation | undefined {
    if (!this.makeRoom(bytes, keep)) return undefined;
    return this.reservation(bytes);
  }

  /**
   * Room for one block of `bytes`, preferably one a dropped entry left: the
   * reservation then carries it. Evicts as reserve does, but takes the
   * block of an evicted entry as soon as there is one.
   */
  reserveBlock(bytes: number, keep?: ReadonlySet<string>): Reservation | undefined {
    if (bytes > this.capacity) return undefined;
    for (;;) {
      const index = this.spares.findIndex((block) => block.byteLength === bytes);
      if (index >= 0) {
        const [memory] = this.spares.splice(index, 1);
        this.spare -= bytes;
        this.held -= bytes;
        return this.reservation(bytes, memory);
      }
      if (this.held + bytes <= this.capacity) return this.reservation(bytes);
      // Spares left now are of another size: of no use here, they go before any entry does.
      if (!this.discardSpare() && !this.evictOne(keep)) return undefined;
    }
  }

  private reservation(bytes: number, memory?: SharedArrayBuffer): Reservation {
    this.held += bytes;
    this.reserved += bytes;
    let open = true;
    const giveBack = () => {
      if (!open) return false;
      open = false;
      this.held -= bytes;
      this.reserved -= bytes;
      return true;
    };
    return {
      bytes,
      ...(memory ? { memory } : {}),
      commit: (key, wal) => {
        if (wal.bytes > bytes) throw new Error(`cache: ${wal.bytes} bytes committed on a reservation of ${bytes}`);
        if (!giveBack()) throw new Error('cache: reservation committed twice');
        this.drop(key);
        this.slots.set(key, { wal, served: false, pins: 0, dropped: false, tainted: false });
        this.held += wal.bytes;
        this.cached += wal.bytes;
      },
      // A block that was not committed may still be written by a decode that was
      // stopped: it goes to the collector, never back to the spares.
      release: () => void giveBack(),
    };
  }

  /** The entry, marked most recently used and pinned until released. */
  acquire(key: string): PinnedWal | undefined {
    const slot = this.slots.get(key);
    if (!slot) return undefined;
    this.slots.delete(key);
    this.slots.set(key, slot);
    slot.served = true;
    slot.pins++;
    let open = true;
    return {
      wal: slot.wal,
      release: (reusable = true) => {
        if (!open) return;
        open = false;
        slot.pins--;
        if (!reusable) slot.tainted = true;
        if (slot.pins === 0 && slot.dropped) this.letGo(slot);
      },
    };
  }

  drop(key: string): void {
    const slot = this.slots.get(key);
    if (!slot) return;
    this.slots.delete(key);
    this.cached -= slot.wal.bytes;
    slot.dropped = true;
    // Chunks being streamed stay in memory until the stream is done: still held.
    if (slot.pins === 0) this.letGo(slot);
  }

  /**
   * One more spare block of `blockBytes`, written once now, if the budget has
   * room for it (preallocate.ts): the kernel hands out a page on its first
   * write, and on some virtual machines that costs about as much as sending
   * it (3.5 ms per MiB on the bench machine), so a hub that just started
   * would otherwise pay it on the request path for its first `capacity`
   * worth of zstd segments. Spares of another size give way as soon as a
   * decode needs room (reserveBlock, makeRoom), so a wrong guess costs
   * nothing once the hub is running. False when there is no room.
   */
  addSpare(blockBytes: number): boolean {
    if (blockBytes <= 0 || this.held + blockBytes > this.capacity) return false;
    const block = new SharedArrayBuffer(blockBytes);
    new Uint8Array(block).fill(0);
    this.spares.push(block);
    this.spare += blockBytes;
    this.held += blockBytes;
    return true;
  }

  /** Drops every entry and lets every block go. */
  clear(): void {
    for (const key of [...this.slots.keys()]) this.drop(key);
    while (this.discardSpare());
  }

  /**
   * A dropped entry nobody streams any more: its block is kept as a spare
   * when nobody can still read it, else counted until it is collected.
   */
  private letGo(slot: Slot): void {
    const { memory, bytes } = slot.wal;
    if (!memory || memory.byteLength !== bytes) {
      this.held -= bytes;
    } else if (slot.tainted) {
      this.retained += bytes;
      this.retainedBlocks.register(memory, bytes);
    } else {
      this.spares.push(memory);
      this.spare += bytes;
    }
  }

  private makeRoom(bytes: number, keep?: ReadonlySet<string>): boolean {
    if (bytes > this.capacity) return false;
    while (this.held + bytes > this.capacity) {
      if (!this.discardSpare() && !this.evictOne(keep)) return false;
    }
    return true;
  }

  /**
   * Drops the least recently used entry nobody is streaming, one already
   * served if there is one: a segment read ahead and not yet asked for is
   * what its standby asks for next, while one served is asked for again only
   * by a standby further behind. (Recency alone would evict first the next
   * segment of the very chain that is making room, as serving a segment makes
   * it the most recently used.) Never one in `keep`. False when nothing can
   * be dropped.
   */
  private evictOne(keep?: ReadonlySet<string>): boolean {
    let unserved: string | undefined;
    for (const [key, slot] of this.slots) {
      if (slot.pins > 0 || keep?.has(key)) continue;
      if (!slot.served) {
        unserved ??= key;
        continue;
      }
      this.drop(key);
      return true;
    }
    if (unserved === undefined) return false;
    this.drop(unserved);
    return true;
  }

  private discardSpare(): boolean {
    const block = this.spares.pop();
    if (!block) return false;
    this.spare -= block.byteLength;
    this.held -= block.byteLength;
    // No longer counted, but resident until collected: V8 alone may wait long
    // (a hub that preallocated 256 MiB and reads gzip ahead ran 64 MiB over).
    collectGarbageSoon();
    return true;
  }
}
