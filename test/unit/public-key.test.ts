import { randomBytes, sign, type KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isValidSignature, parsePublicKeyBlob, toFingerprint, type PublicKey } from '../../src/keys/public-key.js';
import { generateKey, makeKeyDir, toPrivateKeyObject, type GeneratedKey } from './keygen.js';
import { rsaBlobWith } from '../helpers/forged-rsa.js';

/** SSH wire format: each part as uint32 length + bytes. */
function wire(...parts: (string | Buffer)[]): Buffer {
  return Buffer.concat(
    parts.flatMap((part) => {
      const bytes = typeof part === 'string' ? Buffer.from(part, 'latin1') : part;
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      return [length, bytes];
    }),
  );
}

function parsed(blob: Buffer): PublicKey {
  const key = parsePublicKeyBlob(blob);
  if (key instanceof Error) throw key;
  return key;
}

const KINDS = [
  ['ed25519', 'ed25519', undefined, 'ssh-ed25519'],
  ['rsa3072', 'rsa', 3072, 'ssh-rsa'],
  ['rsa2048', 'rsa', 2048, 'ssh-rsa'],
  ['ecdsa256', 'ecdsa', 256, 'ecdsa-sha2-nistp256'],
  ['ecdsa384', 'ecdsa', 384, 'ecdsa-sha2-nistp384'],
  ['ecdsa521', 'ecdsa', 521, 'ecdsa-sha2-nistp521'],
] as const;
type KindName = (typeof KINDS)[number][0];

let keyDir: ReturnType<typeof makeKeyDir>;
const keys = {} as Record<KindName | 'rsa1024' | 'dsa' | 'otherEd25519' | 'otherRsa', GeneratedKey>;
const privateKeys = {} as Record<KindName | 'otherEd25519' | 'otherRsa', KeyObject>;

beforeAll(() => {
  keyDir = makeKeyDir();
  for (const [name, type, bits] of KINDS) {
    keys[name] = generateKey(keyDir.dir, name, type, bits);
    privateKeys[name] = toPrivateKeyObject(keys[name]);
  }
  keys.otherEd25519 = generateKey(keyDir.dir, 'other-ed25519', 'ed25519');
  privateKeys.otherEd25519 = toPrivateKeyObject(keys.otherEd25519);
  keys.otherRsa = generateKey(keyDir.dir, 'other-rsa', 'rsa', 3072);
  privateKeys.otherRsa = toPrivateKeyObject(keys.otherRsa);
  keys.rsa1024 = generateKey(keyDir.dir, 'rsa1024', 'rsa', 1024);
  keys.dsa = generateKey(keyDir.dir, 'dsa', 'dsa');
});

afterAll(() => keyDir?.remove());

describe('parsePublicKeyBlob', () => {
  it.each(KINDS)('reads a %s key made by ssh-keygen', (name, _type, _bits, sshType) => {
    const key = parsed(keys[name].blob);
    expect(key.type).toBe(sshType);
    expect(key.blob.equals(keys[name].blob)).toBe(true);
    expect(key.fingerprint).toBe(keys[name].fingerprint);
  });

  it.each([
    ['ed25519', 'ed25519', {}],
    ['rsa3072', 'rsa', { modulusLength: 3072 }],
    ['rsa2048', 'rsa', { modulusLength: 2048 }],
    ['ecdsa256', 'ec', { namedCurve: 'prime256v1' }],
    ['ecdsa384', 'ec', { namedCurve: 'secp384r1' }],
    ['ecdsa521', 'ec', { namedCurve: 'secp521r1' }],
  ] as const)('turns the %s key into a Node %s key', (name, nodeType, details) => {
    const key = parsed(keys[name].blob);
    expect(key.keyObject.type).toBe('public');
    expect(key.keyObject.asymmetricKeyType).toBe(nodeType);
    expect(key.keyObject.asymmetricKeyDetails).toMatchObject(details);
  });

  it.each([
    ['ecdsa256', 'sha256'],
    ['ecdsa384', 'sha384'],
    ['ecdsa521', 'sha512'],
  ] as const)('fixes the hash of a %s key to %s', (name, hash) => {
    expect(parsed(keys[name].blob).ecdsaHash).toBe(hash);
  });

  it('refuses an RSA key shorter than 2048 bits', () => {
    const result = parsePublicKeyBlob(keys.rsa1024.blob);
    expect(result).toBeInstanceOf(Error);
    expect((result as Error).message).toBe('RSA keys shorter than 2048 bits are refused');
  });

  const rsaWith = (e: Buffer, n?: Buffer) => rsaBlobWith(keys.rsa2048.blob, e, n);

  it.each([
    ['exponent 1 (PKCS#1 padding alone would verify as a signature)', () => rsaWith(Buffer.from([1])), "the RSA public exponent is 1, it must be odd and at least 3: with it anyone could forge this key's signatures"],
    ['exponent 0', () => rsaWith(Buffer.alloc(0)), "the RSA public exponent is 0, it must be odd and at least 3: with it anyone could forge this key's signatures"],
    ['an even exponent', () => rsaWith(Buffer.from([1, 0, 0])), 'the RSA public exponent is even, it must be odd'],
    ['a negative exponent', () => rsaWith(Buffer.from([0x81])), 'the RSA key has a negative exponent or modulus'],
    ['an even modulus', () => rsaWith(Buffer.from([1, 0, 1]), Buffer.concat([Buffer.from([0]), Buffer.alloc(256, 0xfe)])), 'the RSA modulus must be odd'],
  ])('refuses an RSA key with %s', (_what, blob, message) => {
    const result = parsePublicKeyBlob(blob());
    expect(result).toBeInstanceOf(Error);
    expect((result as Error).message).toBe(message);
  });

  it('accepts the same modulus with exponent 3 and 65537', () => {
    expect(parsePublicKeyBlob(rsaWith(Buffer.from([3])))).not.toBeInstanceOf(Error);
    expect(parsePublicKeyBlob(rsaWith(Buffer.from([1, 0, 1])))).not.toBeInstanceOf(Error);
  });

  it('refuses a DSA key, naming its type', () => {
    expect((parsePublicKeyBlob(keys.dsa.blob) as Error).message).toBe('unsupported key type ssh-dss');
  });

  it.each([
    ['an empty blob', () => Buffer.alloc(0), 'the key data is truncated'],
    ['a blob cut by one byte', () => keys.ed25519.blob.subarray(0, -1), 'the key data is truncated'],
    ['a length running past the end', () => Buffer.from([0, 0, 0, 11, 0x73]), 'the key data is truncated'],
    ['a trailing byte', () => Buffer.concat([keys.ed25519.blob, Buffer.from([0])]), 'the key data has trailing bytes'],
    ['trailing bytes after an RSA key', () => Buffer.concat([keys.rsa3072.blob, wire('x')]), 'the key data has trailing bytes'],
    ['a 31-byte ed25519 key', () => wire('ssh-ed25519', randomBytes(31)), 'an ed25519 key is 32 bytes'],
    [
      'a FIDO key',
      () => wire('sk-ssh-ed25519@openssh.com', randomBytes(32), 'ssh:'),
      'sk-ssh-ed25519@openssh.com (FIDO) keys are not supported',
    ],
    ['an unknown key type', () => wire('ssh-foo', randomBytes(32)), 'unsupported key type ssh-foo'],
    ['a certificate', () => wire('ssh-ed25519-cert-v01@openssh.com', randomBytes(32)), 'unsupported key type ssh-ed25519-cert-v01@openssh.com'],
  ])('refuses %s', (_what, blob, message) => {
    const result = parsePublicKeyBlob(blob());
    expect(result).toBeInstanceOf(Error);
    expect((result as Error).message).toBe(message);
  });

  it('refuses an ECDSA key whose type and curve disagree', () => {
    const point = Buffer.concat([Buffer.from([4]), randomBytes(96)]);
    expect((parsePublicKeyBlob(wire('ecdsa-sha2-nistp256', 'nistp384', point)) as Error).message).toBe('unsupported ECDSA curve nistp384');
  });

  it('refuses an unknown ECDSA curve', () => {
    const point = Buffer.concat([Buffer.from([4]), randomBytes(64)]);
    expect((parsePublicKeyBlob(wire('ecdsa-sha2-secp256k1', 'secp256k1', point)) as Error).message).toBe('unsupported ECDSA curve secp256k1');
  });

  it('refuses a compressed ECDSA point', () => {
    const point = Buffer.concat([Buffer.from([2]), randomBytes(32)]);
    expect((parsePublicKeyBlob(wire('ecdsa-sha2-nistp256', 'nistp256', point)) as Error).message).toBe(
      'only uncompressed ECDSA points are supported',
    );
  });

  it('returns, never throws, an Error for an ECDSA point that is not on the curve', () => {
    const point = Buffer.concat([Buffer.from([4]), Buffer.alloc(32, 1), Buffer.alloc(32, 2)]);
    expect(parsePublicKeyBlob(wire('ecdsa-sha2-nistp256', 'nistp256', point))).toBeInstanceOf(Error);
  });

  it('computes the same fingerprint as ssh-keygen -l (toFingerprint)', () => {
    for (const [name] of KINDS) expect(toFingerprint(keys[name].blob)).toBe(keys[name].fingerprint);
  });
});

describe('isValidSignature', () => {
  const data = Buffer.from('session id + userauth request, as ssh2 hands it over');

  it.each([
    ['ed25519', null, undefined],
    ['rsa3072', 'sha256', 'sha256'],
    ['rsa3072', 'sha512', 'sha512'],
    ['rsa2048', 'sha256', 'sha256'],
    ['ecdsa256', 'sha256', undefined],
    ['ecdsa384', 'sha384', undefined],
    ['ecdsa521', 'sha512', undefined],
  ] as const)('accepts a %s signature made with %s', (name, hash, hashAlgo) => {
    const signature = sign(hash, data, privateKeys[name]);
    expect(isValidSignature(parsed(keys[name].blob), data, signature, hashAlgo)).toBe(true);
  });

  it.each([
    ['ed25519', 'otherEd25519', null, undefined],
    ['rsa3072', 'otherRsa', 'sha256', 'sha256'],
  ] as const)('refuses a signature by another key than %s', (name, other, hash, hashAlgo) => {
    const signature = sign(hash, data, privateKeys[other]);
    expect(isValidSignature(parsed(keys[name].blob), data, signature, hashAlgo)).toBe(false);
  });

  it.each(['ed25519', 'rsa3072', 'ecdsa256', 'ecdsa384', 'ecdsa521'] as const)(
    'refuses a %s signature over other data',
    (name) => {
      const hash = name === 'ed25519' ? null : name === 'ecdsa384' ? 'sha384' : name === 'ecdsa521' ? 'sha512' : 'sha256';
      const signature = sign(hash, data, privateKeys[name]);
      const hashAlgo = name === 'rsa3072' ? 'sha256' : undefined;
      expect(isValidSignature(parsed(keys[name].blob), Buffer.from('other data'), signature, hashAlgo)).toBe(false);
    },
  );

  it('refuses an RSA SHA-1 signature (ssh-rsa, no hashAlgo), valid as it is', () => {
    const signature = sign('sha1', data, privateKeys.rsa3072);
    expect(isValidSignature(parsed(keys.rsa3072.blob), data, signature, undefined)).toBe(false);
    expect(isValidSignature(parsed(keys.rsa3072.blob), data, signature, 'sha1')).toBe(false);
  });

  it('refuses an RSA signature checked with another hash than it was made with', () => {
    const signature = sign('sha256', data, privateKeys.rsa3072);
    expect(isValidSignature(parsed(keys.rsa3072.blob), data, signature, 'sha512')).toBe(false);
  });

  it('refuses an ECDSA signature made with another hash than the curve fixes', () => {
    const signature = sign('sha256', data, privateKeys.ecdsa384);
    expect(isValidSignature(parsed(keys.ecdsa384.blob), data, signature, undefined)).toBe(false);
  });

  it.each(['ed25519', 'rsa3072', 'ecdsa256', 'ecdsa521'] as const)('returns false, never throws, for garbage as a %s signature', (name) => {
    const key = parsed(keys[name].blob);
    const hashAlgo = name === 'rsa3072' ? 'sha256' : undefined;
    for (const garbage of [Buffer.alloc(0), Buffer.from([0x30, 0x02]), randomBytes(64), randomBytes(512)]) {
      expect(isValidSignature(key, data, garbage, hashAlgo)).toBe(false);
    }
  });
});
