import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';

/**
 * An SSH public key turned into a Node KeyObject, so that signatures are
 * checked by Node's crypto, not by hand.
 */
export interface PublicKey {
  /** The key type as it appears in authorized_keys and in the key blob. */
  readonly type: string;
  /** The SSH wire-format blob, the identity that is compared byte for byte. */
  readonly blob: Buffer;
  /** As `ssh-keygen -l` prints it: SHA256:<unpadded base64>. */
  readonly fingerprint: string;
  readonly keyObject: KeyObject;
  /** The hash for ECDSA signatures, fixed by the curve. */
  readonly ecdsaHash?: 'sha256' | 'sha384' | 'sha512';
}

const CURVES: Record<string, { crv: string; hash: 'sha256' | 'sha384' | 'sha512' }> = {
  nistp256: { crv: 'P-256', hash: 'sha256' },
  nistp384: { crv: 'P-384', hash: 'sha384' },
  nistp521: { crv: 'P-521', hash: 'sha512' },
};

export const SUPPORTED_KEY_TYPES = ['ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521'];

/** Reads SSH wire strings (uint32 length + bytes) from a blob, refusing to run past its end. */
class WireReader {
  private offset = 0;
  constructor(private readonly bytes: Buffer) {}
  next(): Buffer {
    if (this.offset + 4 > this.bytes.length) throw new Error('the key data is truncated');
    const length = this.bytes.readUInt32BE(this.offset);
    const start = this.offset + 4;
    if (start + length > this.bytes.length) throw new Error('the key data is truncated');
    this.offset = start + length;
    return this.bytes.subarray(start, this.offset);
  }
  atEnd(): boolean {
    return this.offset === this.bytes.length;
  }
}

const base64url = (bytes: Buffer) => bytes.toString('base64url');
/** SSH mpints carry a sign byte; JWK wants the bare magnitude. */
const unsigned = (mpint: Buffer) => (mpint.length > 1 && mpint[0] === 0 ? mpint.subarray(1) : mpint);

export function toFingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/**
 * What OpenSSH's own RSA checks refuse: with exponent 1, s^e mod n is s, so
 * the PKCS#1 padding of any data "verifies" as its own signature, and anyone
 * holding the public line could log in. An even exponent or modulus is no
 * RSA key at all.
 */
function findRsaProblem(e: Buffer, n: Buffer): string | undefined {
  // SSH mpints are two's complement: a set top bit is a negative number.
  if ((e[0] ?? 0) & 0x80 || (n[0] ?? 0) & 0x80) return 'the RSA key has a negative exponent or modulus';
  const exponent = e.length === 0 ? 0n : BigInt(`0x${e.toString('hex')}`);
  if (exponent < 3n) return `the RSA public exponent is ${exponent}, it must be odd and at least 3: with it anyone could forge this key's signatures`;
  if (exponent % 2n === 0n) return 'the RSA public exponent is even, it must be odd';
  if (n.length === 0 || n[n.length - 1]! % 2 === 0) return 'the RSA modulus must be odd';
  return undefined;
}

/** Pure: wire blob -> PublicKey, or an Error saying what is wrong with it. */
export function parsePublicKeyBlob(blob: Buffer): PublicKey | Error {
  try {
    const reader = new WireReader(blob);
    const type = reader.next().toString('latin1');
    let keyObject: KeyObject;
    let ecdsaHash: PublicKey['ecdsaHash'];
    if (type === 'ssh-ed25519') {
      const x = reader.next();
      if (x.length !== 32) throw new Error('an ed25519 key is 32 bytes');
      keyObject = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: base64url(x) }, format: 'jwk' });
    } else if (type === 'ssh-rsa') {
      const rawE = reader.next();
      const rawN = reader.next();
      const problem = findRsaProblem(rawE, rawN);
      const e = unsigned(rawE);
      const n = unsigned(rawN);
      if (problem) throw new Error(problem);
      keyObject = createPublicKey({ key: { kty: 'RSA', e: base64url(e), n: base64url(n) }, format: 'jwk' });
      if ((keyObject.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw new Error('RSA keys shorter than 2048 bits are refused');
    } else if (type.startsWith('ecdsa-sha2-')) {
      const curveName = reader.next().toString('latin1');
      const curve = CURVES[curveName];
      if (!curve || type !== `ecdsa-sha2-${curveName}`) throw new Error(`unsupported ECDSA curve ${curveName}`);
      const point = reader.next();
      const size = (point.length - 1) / 2;
      if (point[0] !== 0x04 || !Number.isInteger(size)) throw new Error('only uncompressed ECDSA points are supported');
      keyObject = createPublicKey({
        key: { kty: 'EC', crv: curve.crv, x: base64url(point.subarray(1, 1 + size)), y: base64url(point.subarray(1 + size)) },
        format: 'jwk',
      });
      ecdsaHash = curve.hash;
    } else if (type.startsWith('sk-')) {
      throw new Error(`${type} (FIDO) keys are not supported`);
    } else {
      throw new Error(`unsupported key type ${type}`);
    }
    if (!reader.atEnd()) throw new Error('the key data has trailing bytes');
    return { type, blob, fingerprint: toFingerprint(blob), keyObject, ...(ecdsaHash ? { ecdsaHash } : {}) };
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

/**
 * True only for a valid signature of `data` by `key`. `hashAlgo` is what the
 * client named for RSA (rsa-sha2-256/512); an RSA signature without one is
 * SHA-1, refused as OpenSSH 8.8 refuses it.
 */
export function isValidSignature(key: PublicKey, data: Buffer, signature: Buffer, hashAlgo: string | undefined): boolean {
  let algorithm: string | null;
  if (key.type === 'ssh-ed25519') algorithm = null;
  else if (key.type === 'ssh-rsa') {
    if (hashAlgo !== 'sha256' && hashAlgo !== 'sha512') return false;
    algorithm = hashAlgo;
  } else algorithm = key.ecdsaHash ?? 'sha256';
  try {
    return verify(algorithm, data, key.keyObject, signature) === true;
  } catch {
    return false;
  }
}
