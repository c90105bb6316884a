import { createHash } from 'node:crypto';

/** SSH wire string: uint32 length, then the bytes. */
function wireString(bytes: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** An ssh-rsa blob with `blob`'s modulus (or `n`) and exponent `e`: the parts of an RSA blob are type, e, n. */
export function rsaBlobWith(blob: Buffer, e: Buffer, n?: Buffer): Buffer {
  const typeEnd = 4 + blob.readUInt32BE(0);
  const eEnd = typeEnd + 4 + blob.readUInt32BE(typeEnd);
  const modulus = n ?? blob.subarray(eEnd + 4, eEnd + 4 + blob.readUInt32BE(eEnd));
  return Buffer.concat([wireString(Buffer.from('ssh-rsa')), wireString(e), wireString(modulus)]);
}

/** The modulus length in bytes of an ssh-rsa blob (its mpint without the sign byte). */
export function modulusBytes(blob: Buffer): number {
  const typeEnd = 4 + blob.readUInt32BE(0);
  const eEnd = typeEnd + 4 + blob.readUInt32BE(typeEnd);
  const n = blob.subarray(eEnd + 4, eEnd + 4 + blob.readUInt32BE(eEnd));
  return n[0] === 0 ? n.length - 1 : n.length;
}

const DIGEST_INFO: Record<'sha256' | 'sha512', string> = {
  sha256: '3031300d060960864801650304020105000420',
  sha512: '3051300d060960864801650304020305000440',
};

/**
 * The "signature" of `data` for a key whose public exponent is 1: s^1 mod n
 * is s, so the PKCS#1 v1.5 encoding of the data's digest verifies as its own
 * signature. No private key is involved: anyone with the public line can make it.
 */
export function forgeSignatureForExponentOne(data: Buffer, hash: 'sha256' | 'sha512', keyBytes: number): Buffer {
  const digestInfo = Buffer.concat([Buffer.from(DIGEST_INFO[hash], 'hex'), createHash(hash).update(data).digest()]);
  const padding = Buffer.alloc(keyBytes - digestInfo.length - 3, 0xff);
  return Buffer.concat([Buffer.from([0x00, 0x01]), padding, Buffer.from([0x00]), digestInfo]);
}
