import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import ssh2 from 'ssh2';
import { WalhubError } from '../errors.js';
import { toFingerprint } from '../keys/public-key.js';

const { utils } = ssh2;

export interface HostKey {
  readonly path: string;
  readonly privateKey: Buffer;
  readonly type: string;
  /** `ssh-ed25519 AAAA...`, for known_hosts. */
  readonly publicLine: string;
  readonly fingerprint: string;
  readonly created: boolean;
}

/**
 * Loads each configured host key; an ed25519 key that does not exist yet is
 * created (mode 0600, never overwritten). Like sshd, a private key that group
 * or others may read is refused: it may already be someone else's.
 */
export function loadHostKeys(paths: readonly string[], options: { create: boolean }): HostKey[] {
  return paths.map((path) => loadHostKey(path, options.create));
}

function loadHostKey(path: string, create: boolean): HostKey {
  let created = false;
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw cannotRead(path, error);
    if (!create) throw new WalhubError('UNAVAILABLE', `${path}: host key missing (walhub serve creates it at first start)`);
    if (!/ed25519/.test(path)) {
      throw new WalhubError('UNAVAILABLE', `${path}: host key missing (walhub creates only ed25519 keys; make others with ssh-keygen)`);
    }
    createEd25519Key(path);
    created = true;
    mode = statSync(path).mode;
  }
  if ((mode & 0o077) !== 0) {
    throw new WalhubError(
      'UNAVAILABLE',
      `${path}: permissions 0${(mode & 0o777).toString(8)} are too open: a private host key must not be readable by group or others (chmod 600)`,
    );
  }
  let privateKey: Buffer;
  try {
    privateKey = readFileSync(path);
  } catch (error) {
    throw cannotRead(path, error);
  }
  const parsed = utils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error || !key.isPrivateKey()) {
    throw new WalhubError('UNAVAILABLE', `${path}: not an unencrypted SSH private key${key instanceof Error ? ` (${key.message})` : ''}`);
  }
  const blob = key.getPublicSSH();
  return {
    path,
    privateKey,
    type: key.type,
    publicLine: `${key.type} ${blob.toString('base64')}`,
    fingerprint: toFingerprint(blob),
    created,
  };
}

function createEd25519Key(path: string): void {
  const text = generateEd25519KeyText();
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // 'wx': never replace a key that appeared meanwhile; 0600 from birth, not chmod after.
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/**
 * A new ed25519 private key in OpenSSH's format. ssh2 1.17's
 * generateKeyPairSync('ed25519') makes, about once in 250 calls, a key that
 * its own parseKey rejects ("Malformed OpenSSH private key"): a first start
 * would then fail. Such a key is thrown away and another one made.
 */
export function generateEd25519KeyText(): string {
  for (let attempt = 0; attempt < 20; attempt++) {
    const pair = utils.generateKeyPairSync('ed25519', { comment: 'walhub host key' });
    if (!(utils.parseKey(pair.private) instanceof Error)) return pair.private;
  }
  throw new WalhubError('UNAVAILABLE', 'could not generate an ed25519 host key that ssh2 can read');
}

function cannotRead(path: string, error: unknown): WalhubError {
  return new WalhubError('UNAVAILABLE', `${path}: cannot read host key (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
}

/** A known_hosts line for the listen address, as ssh writes it ([host]:port for a non-22 port). */
export function toKnownHostsLine(key: HostKey, host: string, port: number): string {
  const name = port === 22 ? host : `[${host}]:${port}`;
  return `${name} ${key.publicLine}`;
}
