// Real keys for the key tests, made by ssh-keygen in a temp dir (no socket).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { requireProgram } from '../helpers/programs.js';

export interface GeneratedKey {
  /** The private key file ssh-keygen wrote (OpenSSH format). */
  readonly path: string;
  /** key.pub's line: type base64 comment. */
  readonly publicLine: string;
  readonly type: string;
  readonly base64: string;
  readonly blob: Buffer;
  readonly comment: string;
  /** As `ssh-keygen -l -E sha256 -f key.pub` prints it. */
  readonly fingerprint: string;
}

export function makeKeyDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'walhub-keys-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function generateKey(dir: string, name: string, type: string, bits?: number): GeneratedKey {
  const sshKeygen = requireProgram('ssh-keygen', 'openssh-client');
  const path = join(dir, name);
  const args = ['-q', '-t', type, ...(bits ? ['-b', String(bits)] : []), '-N', '', '-f', path, '-C', name];
  execFileSync(sshKeygen, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const publicLine = readFileSync(`${path}.pub`, 'utf8').trim();
  const [keyType, base64] = publicLine.split(' ') as [string, string];
  // "256 SHA256:abc... name (ED25519)"
  const listing = execFileSync(sshKeygen, ['-l', '-E', 'sha256', '-f', `${path}.pub`], { encoding: 'utf8' });
  return {
    path,
    publicLine,
    type: keyType,
    base64,
    blob: Buffer.from(base64, 'base64'),
    comment: name,
    fingerprint: listing.split(' ')[1]!,
  };
}

/**
 * The private key as a Node KeyObject. RSA and ECDSA: ssh-keygen rewrites a
 * copy as PKCS#8. Ed25519: ssh-keygen keeps its own format whatever -m says,
 * so the seed is read from the (unencrypted) openssh-key-v1 container.
 */
export function toPrivateKeyObject(key: GeneratedKey): KeyObject {
  if (key.type !== 'ssh-ed25519') {
    const copy = `${key.path}.pkcs8`;
    copyFileSync(key.path, copy);
    execFileSync(requireProgram('ssh-keygen', 'openssh-client'), ['-q', '-p', '-P', '', '-N', '', '-m', 'PKCS8', '-f', copy], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return createPrivateKey(readFileSync(copy));
  }
  const pem = readFileSync(key.path, 'utf8');
  const body = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const magic = 'openssh-key-v1\0';
  if (body.subarray(0, magic.length).toString('latin1') !== magic) throw new Error(`${key.path}: not an OpenSSH private key`);
  let offset = magic.length;
  const next = (from: Buffer = body) => {
    const length = from.readUInt32BE(offset);
    const value = from.subarray(offset + 4, offset + 4 + length);
    offset += 4 + length;
    return value;
  };
  const cipher = next().toString();
  next(); // kdf name
  next(); // kdf options
  offset += 4; // number of keys (1)
  next(); // public key blob
  const secret = next();
  if (cipher !== 'none') throw new Error(`${key.path}: encrypted`);
  offset = 8; // two check integers
  next(secret); // key type
  const publicKey = next(secret);
  const privateKey = next(secret); // seed (32) || public (32)
  return createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: privateKey.subarray(0, 32).toString('base64url'), x: publicKey.toString('base64url') },
    format: 'jwk',
  });
}
