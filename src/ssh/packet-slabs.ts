import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';

/**
 * Outgoing SSH packets carved from reusable slabs instead of one new Buffer
 * each, and their random padding taken from a pool filled in bulk.
 *
 * ssh2 1.17 allocates every outgoing packet with Buffer.allocUnsafe (32 KiB
 * for each channel data packet) and fills its padding with one
 * randomFillSync call. Sending a 16 MiB segment made 16 MiB of short-lived
 * memory outside V8's heap, and V8 answers external memory with full
 * collections: about a quarter of the event loop's time per segment in the
 * profiles the README's Benchmarks section quotes. A slab here is reused
 * once the kernel has taken every byte written from it, so a steady
 * transfer allocates nothing.
 *
 * This replaces `allocPacket` of ssh2's two AEAD ciphers on one connection's
 * Protocol, whose framing (length, padding length, payload, padding, then the
 * 16-byte tag the cipher writes in place) is the RFC's and these classes'
 * own. It relies on how ssh2 uses them (a packet is encrypted and written to
 * the socket before the next one is allocated), which its shape cannot show:
 * so only with the ssh2 versions it was checked against. Any other version or
 * cipher keeps ssh2's own allocation.
 */

/** ssh2 versions whose Protocol and cipher classes this was read against (lib/protocol/crypto.js, utils.js sendPacket). */
export const CHECKED_SSH2_VERSIONS: readonly string[] = ['1.17.0'];
const ssh2Version = (createRequire(import.meta.url)('ssh2/package.json') as { version: string }).version;

/** ssh2's cipher classes this replaces allocPacket of, with their block size (RFC 4253 6: padding to a multiple of it). */
const AEAD_BLOCK: Readonly<Record<string, number>> = { AESGCMCipherBinding: 16, ChaChaPolyCipherBinding: 8 };
const TAG_LENGTH = 16;
const SLAB_SIZE = 256 * 1024;
/**
 * Packets up to this size keep ssh2's allocation (Node's shared pool for
 * the smallest): a key exchange, a login and a command's replies pin no slab,
 * so a connection that never transfers a file holds none.
 */
const SMALL_PACKET = 4096;
/** Free slabs kept for any connection; more are left to the collector. Bounds what idle connections hold. */
const MAX_FREE_SLABS = 16;
const RANDOM_POOL_SIZE = 4096;

/** What the slabs read of the connection's socket (a net.Socket). */
export interface WrittenCounts {
  /** Bytes handed to write() so far, queued ones included. */
  readonly bytesWritten: number;
  /** Bytes handed to write() that the kernel has not yet taken. */
  readonly writableLength: number;
  readonly destroyed: boolean;
  readonly writable: boolean;
  /** An empty write's callback runs once every write before it is done. */
  write(chunk: Buffer, callback: () => void): unknown;
}

/** A connection's slabs, as the connection sees them. */
export interface PacketSlabs {
  /**
   * Nothing is being sent for now (the last transfer ended): the slabs this
   * connection holds go back once the kernel has taken their bytes, so an
   * idle connection (a ControlMaster between fetches) holds none.
   */
  idle(): void;
  /** Slabs held by this connection: the one being filled and those waiting on the kernel. */
  held(): number;
}

interface Ssh2Cipher {
  allocPacket(payloadLength: number): Buffer;
  encrypt(packet: Buffer): void;
}

const freeSlabs: Buffer[] = [];
const EMPTY = Buffer.alloc(0);
const stats = { slabsAllocated: 0, packetsCarved: 0 };

/** Slabs made and packets carved so far, for tests. */
export function packetSlabStats(): Readonly<typeof stats> {
  return stats;
}

/** Random bytes for padding, drawn in order and never reused; refilled from the CSPRNG when spent. */
class RandomPool {
  private readonly pool = Buffer.allocUnsafeSlow(RANDOM_POOL_SIZE);
  private used = RANDOM_POOL_SIZE;

  fill(target: Buffer, offset: number, length: number): void {
    if (this.used + length > RANDOM_POOL_SIZE) {
      randomFillSync(this.pool);
      this.used = 0;
    }
    this.pool.copy(target, offset, this.used, this.used + length);
    this.used += length;
  }
}

const padding = new RandomPool();

/**
 * One connection's packets. A packet carved at take() is written to the
 * socket before the next take() (ssh2 encrypts in place and writes at once),
 * so when a slab fills, every byte from it is already counted in
 * socket.bytesWritten: that count is the mark the kernel must have taken
 * (bytesWritten - writableLength) before the slab is used again.
 */
class ConnectionSlabs implements PacketSlabs {
  private slab: Buffer | undefined;
  private used = 0;
  private readonly retired: { slab: Buffer; mark: number }[] = [];
  private sweepQueued = false;

  constructor(private readonly socket: WrittenCounts) {}

  take(length: number): Buffer {
    if (length <= SMALL_PACKET || length > SLAB_SIZE) return Buffer.allocUnsafe(length);
    if (!this.slab || this.used + length > SLAB_SIZE) {
      this.retire();
      this.sweep();
      this.slab = freeSlabs.pop() ?? newSlab();
    }
    const packet = this.slab!.subarray(this.used, this.used + length);
    this.used += length;
    stats.packetsCarved++;
    return packet;
  }

  idle(): void {
    this.retire();
    this.sweep();
    if (this.retired.length === 0 || this.sweepQueued || this.socket.destroyed || !this.socket.writable) return;
    this.sweepQueued = true;
    this.socket.write(EMPTY, () => {
      this.sweepQueued = false;
      this.sweep();
    });
  }

  held(): number {
    return (this.slab ? 1 : 0) + this.retired.length;
  }

  private retire(): void {
    if (this.slab) this.retired.push({ slab: this.slab, mark: this.socket.bytesWritten });
    this.slab = undefined;
    this.used = 0;
  }

  /** Slabs the kernel is done with go back to the free list, or to the collector past MAX_FREE_SLABS. */
  private sweep(): void {
    // A destroyed socket's counts no longer say what its handle still holds.
    const taken = this.socket.destroyed ? -1 : this.socket.bytesWritten - this.socket.writableLength;
    while (this.retired.length > 0 && this.retired[0]!.mark <= taken) {
      const { slab } = this.retired.shift()!;
      if (freeSlabs.length < MAX_FREE_SLABS) freeSlabs.push(slab);
    }
  }
}

function newSlab(): Buffer {
  stats.slabsAllocated++;
  return Buffer.allocUnsafeSlow(SLAB_SIZE);
}

function carvingAllocPacket(slabs: ConnectionSlabs, block: number): (payloadLength: number) => Buffer {
  return (payloadLength) => {
    let packetLength = 4 + 1 + payloadLength;
    let paddingLength = block - ((packetLength - 4) & (block - 1));
    if (paddingLength < 4) paddingLength += block;
    packetLength += paddingLength;
    const packet = slabs.take(packetLength + TAG_LENGTH);
    packet.writeUInt32BE(packetLength - 4, 0);
    packet[4] = paddingLength;
    padding.fill(packet, 5 + payloadLength, paddingLength);
    return packet;
  };
}

/**
 * Makes the ciphers ssh2 installs on `protocol` (at each NEWKEYS) carve their
 * packets from slabs recycled through `socket`. Returns undefined, changing
 * nothing, with an ssh2 version not checked, or a `protocol` not of the shape
 * this was written against.
 */
export function recyclePackets(protocol: object, socket: WrittenCounts, version = ssh2Version): PacketSlabs | undefined {
  if (!CHECKED_SSH2_VERSIONS.includes(version)) return undefined;
  const descriptor = Object.getOwnPropertyDescriptor(protocol, '_cipher');
  if (!descriptor || !('value' in descriptor) || !descriptor.writable) return undefined;
  const slabs = new ConnectionSlabs(socket);
  let cipher = descriptor.value as Ssh2Cipher | undefined;
  Object.defineProperty(protocol, '_cipher', {
    configurable: true,
    enumerable: descriptor.enumerable ?? true,
    get: () => cipher,
    set: (next: Ssh2Cipher | undefined) => {
      const block = next ? AEAD_BLOCK[next.constructor.name] : undefined;
      if (next && block !== undefined && typeof next.allocPacket === 'function' && typeof next.encrypt === 'function') {
        next.allocPacket = carvingAllocPacket(slabs, block);
      }
      cipher = next;
    },
  });
  return slabs;
}
