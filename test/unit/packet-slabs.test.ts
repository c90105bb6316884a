import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { CHECKED_SSH2_VERSIONS, packetSlabStats, recyclePackets, type PacketSlabs, type WrittenCounts } from '../../src/ssh/packet-slabs.js';

// ssh2's own cipher classes, as its Protocol installs them at NEWKEYS (internal, ssh2 1.17).
const require = createRequire(import.meta.url);
const { createCipher, CIPHER_INFO, MAC_INFO, bindingAvailable } = require('ssh2/lib/protocol/crypto.js') as {
  createCipher(config: unknown): Cipher;
  CIPHER_INFO: Record<string, { keyLen: number; ivLen: number }>;
  MAC_INFO: Record<string, { len: number }>;
  bindingAvailable: boolean;
};

interface Cipher {
  allocPacket(payloadLength: number): Buffer;
  encrypt(packet: Buffer): void;
}

const AEAD = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com'];

/** A socket that queues everything written until drain(), as one whose client stopped reading. */
class FakeSocket implements WrittenCounts {
  bytesWritten = 0;
  writableLength = 0;
  destroyed = false;
  writable = true;
  readonly written: Buffer[] = [];
  private readonly callbacks: (() => void)[] = [];
  write(packet: Buffer, callback?: () => void): void {
    if (packet.length > 0) this.written.push(packet);
    this.bytesWritten += packet.length;
    this.writableLength += packet.length;
    if (callback) this.callbacks.push(callback);
  }
  /** The kernel takes everything: writes complete, in order. */
  drain(): void {
    this.writableLength = 0;
    for (const callback of this.callbacks.splice(0)) callback();
  }
}

function cipherFor(name: string, key: Buffer, iv: Buffer, onWrite: (packet: Buffer) => void): Cipher {
  const cipherInfo = CIPHER_INFO[name]!;
  // Only a cipher without its own MAC (not AEAD) reads the MAC settings.
  const mac = { macInfo: MAC_INFO['hmac-sha2-256'], macKey: randomBytes(32) };
  return createCipher({ outbound: { onWrite, cipherInfo, cipherKey: key.subarray(0, cipherInfo.keyLen), cipherIV: iv.subarray(0, cipherInfo.ivLen), seqno: 0, ...mac } });
}

/** A protocol object as ssh2 has it, with recyclePackets installed, and the cipher it then gets at NEWKEYS. */
function carvingCipher(name: string, socket: FakeSocket, key: Buffer, iv: Buffer): Cipher & { slabs: PacketSlabs } {
  const protocol: { _cipher: Cipher | undefined } = { _cipher: undefined };
  const slabs = recyclePackets(protocol, socket);
  expect(slabs).toBeDefined();
  protocol._cipher = cipherFor(name, key, iv, (packet) => socket.write(packet));
  return Object.assign(protocol._cipher, { slabs: slabs! });
}

/** Sends `count` full channel data packets (32 KiB of payload), each filled with its index. */
function sendFull(cipher: Cipher, count: number): void {
  for (let i = 0; i < count; i++) {
    const packet = cipher.allocPacket(9 + 32768);
    packet.fill(i & 0xff, 5, 5 + 9 + 32768);
    cipher.encrypt(packet);
  }
}

describe('recyclePackets', () => {
  it('is built against an ssh2 it was checked with, with its native ciphers', () => {
    // A new ssh2 turns the slabs off: read its Protocol and ciphers again, then add its version.
    const { version } = require('ssh2/package.json') as { version: string };
    expect(CHECKED_SSH2_VERSIONS, `ssh2 ${version} installed: packet-slabs.ts not checked against it`).toContain(version);
    expect(bindingAvailable, 'ssh2 built without its crypto binding (npm ci with allowScripts for ssh2)').toBe(true);
  });

  it.each(AEAD)('frames %s packets exactly as ssh2 does: same ciphertext for the same payload and padding', (name) => {
    const key = randomBytes(64);
    const iv = randomBytes(12);
    const socket = new FakeSocket();
    const ours = carvingCipher(name, socket, key, iv);
    const theirs: Buffer[] = [];
    const reference = cipherFor(name, key, iv, (packet) => theirs.push(Buffer.from(packet)));
    // Small packets keep ssh2's allocation, larger ones are carved: both framed by this code.
    for (const length of [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 100, 1000, 4060, 4064, 4070, 4075, 4080, 4090, 4100, 5000, 9 + 16384, 9 + 32768]) {
      const payload = randomBytes(length);
      const packet = ours.allocPacket(length);
      packet.set(payload, 5);
      const expected = reference.allocPacket(length);
      expect(packet.length, `length for a ${length}-byte payload`).toBe(expected.length);
      expect(packet.subarray(0, 5)).toEqual(expected.subarray(0, 5));
      expected.set(payload, 5);
      // Padding is random in both: give ssh2's packet ours, then both must encrypt alike.
      packet.copy(expected, 5 + length, 5 + length, packet.length);
      ours.encrypt(packet);
      reference.encrypt(expected);
      expect(socket.written.at(-1)!.equals(theirs.at(-1)!), `ciphertext for a ${length}-byte payload`).toBe(true);
    }
  });

  it('draws padding from the CSPRNG, never the same bytes twice in a row', () => {
    const socket = new FakeSocket();
    const cipher = carvingCipher('aes128-gcm@openssh.com', socket, randomBytes(32), randomBytes(12));
    const paddings = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const packet = cipher.allocPacket(11); // 5 + 11 = 16: 16 bytes of padding
      paddings.add(packet.subarray(16, 32).toString('hex'));
    }
    expect(paddings.size).toBe(200);
  });

  it('never hands out memory the socket still holds, and reuses it once the kernel took it', () => {
    const socket = new FakeSocket();
    const cipher = carvingCipher('aes128-gcm@openssh.com', socket, randomBytes(32), randomBytes(12));
    // 4 MiB queued and not taken: 16 slabs' worth, every packet still as written.
    sendFull(cipher, 128);
    const copies = socket.written.map((p) => Buffer.from(p));
    sendFull(cipher, 128);
    socket.written.slice(0, 128).forEach((packet, i) => expect(packet.equals(copies[i]!), `queued packet ${i} overwritten`).toBe(true));

    // Once taken, the slabs come back: sending as much again makes (almost) none.
    socket.drain();
    sendFull(cipher, 8); // retires the current slab, and with it frees the ones before
    socket.drain();
    const before = packetSlabStats().slabsAllocated;
    for (let round = 0; round < 8; round++) {
      sendFull(cipher, 64);
      socket.drain();
    }
    expect(packetSlabStats().slabsAllocated - before).toBeLessThanOrEqual(1);
  });

  it('pins no slab for a connection that sends only small packets (key exchange, login, replies)', () => {
    const socket = new FakeSocket();
    const cipher = carvingCipher('chacha20-poly1305@openssh.com', socket, randomBytes(64), randomBytes(12));
    const carved = packetSlabStats().packetsCarved;
    for (let i = 0; i < 100; i++) cipher.encrypt(cipher.allocPacket(1000));
    expect(cipher.slabs.held()).toBe(0);
    expect(packetSlabStats().packetsCarved).toBe(carved);
  });

  it('gives an idle connection\'s slabs back once the kernel has taken their bytes', () => {
    const socket = new FakeSocket();
    const cipher = carvingCipher('aes128-gcm@openssh.com', socket, randomBytes(32), randomBytes(12));
    sendFull(cipher, 40); // 7 packets a slab: 6 slabs, all queued
    const copies = socket.written.map((p) => Buffer.from(p));
    expect(cipher.slabs.held()).toBe(6);
    cipher.slabs.idle();
    expect(cipher.slabs.held()).toBe(6); // nothing taken yet: nothing given back
    socket.drain(); // the kernel takes it all; the empty write's callback sweeps
    expect(cipher.slabs.held()).toBe(0);
    socket.written.forEach((packet, i) => expect(packet.equals(copies[i]!)).toBe(true));
  });

  it('stops recycling once the socket is destroyed', () => {
    const socket = new FakeSocket();
    const cipher = carvingCipher('aes128-gcm@openssh.com', socket, randomBytes(32), randomBytes(12));
    sendFull(cipher, 16);
    const held = socket.written.map((p) => Buffer.from(p));
    socket.destroyed = true;
    socket.drain(); // a destroyed socket's counts say nothing of what its handle held
    sendFull(cipher, 32);
    cipher.slabs.idle();
    sendFull(cipher, 32);
    socket.written.slice(0, 16).forEach((packet, i) => expect(packet.equals(held[i]!)).toBe(true));
  });

  it('leaves other ciphers and other shapes to ssh2', () => {
    const socket = new FakeSocket();
    const protocol: { _cipher: Cipher | undefined } = { _cipher: undefined };
    recyclePackets(protocol, socket);
    protocol._cipher = cipherFor('aes128-ctr', randomBytes(32), randomBytes(16), () => undefined);
    const own = Object.getPrototypeOf(protocol._cipher).allocPacket;
    expect(protocol._cipher.allocPacket).toBe(own);
    // Not a writable data property (a getter, as a future ssh2 might have): nothing changed.
    const frozen = Object.defineProperty({}, '_cipher', { get: () => undefined, configurable: true });
    expect(recyclePackets(frozen, socket)).toBeUndefined();
    // Another ssh2 version: left alone, whatever its shape.
    const other: { _cipher: Cipher | undefined } = { _cipher: undefined };
    expect(recyclePackets(other, socket, '1.18.0')).toBeUndefined();
    other._cipher = cipherFor('aes128-gcm@openssh.com', randomBytes(32), randomBytes(12), () => undefined);
    expect(other._cipher.allocPacket).toBe(Object.getPrototypeOf(other._cipher).allocPacket);
  });
});
