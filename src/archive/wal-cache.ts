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
}

/** Room held for a decode under way; `commit` turns it into an entry, `release` gives it back. */
export interface Reservation {
  readonly bytes: number;
  commit(key: string, wal: CachedWal): void;
  release(): void;
}

/** An entry being streamed to a client: not evicted meanwhile, and still counted if dropped. */
export interface PinnedWal {
  readonly wal: CachedWal;
  release(): void;
}

interface Slot {
  readonly wal: CachedWal;
  pins: number;
  dropped: boolean;
}

/**
 * The one cache of decoded segments, shared by every connection. `heldBytes`
 * counts everything its chunks keep in memory: the entries, the room reserved
 * for decodes under way, and dropped entries still being streamed. It never
 * passes `capacity`: room is made by evicting the least recently used entry
 * nobody is streaming, and a reservation that cannot be made is refused.
 */
export class WalCache {
  /** Insertion order is recency: the first entry is the least recently used. */
  private readonly slots = new Map<string, Slot>();
  private held = 0;
  private reserved = 0;
  private cached = 0;

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

  get entries(): number {
    return this.slots.size;
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  reserve(bytes: number): Reservation | undefined {
    if (!this.makeRoom(bytes)) return undefined;
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
      commit: (key, wal) => {
        if (wal.bytes > bytes) throw new Error(`cache: ${wal.bytes} bytes committed on a reservation of ${bytes}`);
        if (!giveBack()) throw new Error('cache: reservation committed twice');
        this.drop(key);
        this.slots.set(key, { wal, pins: 0, dropped: false });
        this.held += wal.bytes;
        this.cached += wal.bytes;
      },
      release: () => void giveBack(),
    };
  }

  /** The entry, marked most recently used and pinned until released. */
  acquire(key: string): PinnedWal | undefined {
    const slot = this.slots.get(key);
    if (!slot) return undefined;
    this.slots.delete(key);
    this.slots.set(key, slot);
    slot.pins++;
    let open = true;
    return {
      wal: slot.wal,
      release: () => {
        if (!open) return;
        open = false;
        slot.pins--;
        if (slot.pins === 0 && slot.dropped) this.held -= slot.wal.bytes;
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
    if (slot.pins === 0) this.held -= slot.wal.bytes;
  }

  clear(): void {
    for (const key of [...this.slots.keys()]) this.drop(key);
  }

  private makeRoom(bytes: number): boolean {
    if (bytes > this.capacity) return false;
    for (const [key, slot] of this.slots) {
      if (this.held + bytes <= this.capacity) break;
      if (slot.pins === 0) this.drop(key);
    }
    return this.held + bytes <= this.capacity;
  }
}
