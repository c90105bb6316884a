// Transport algorithms: ssh-audit finds nothing to fail or warn about, and
// the stock OpenSSH clients of the distributions standbys run still connect
// with their default algorithm lists, and use AES-GCM where the CPU has AES instructions. fips_algorithms brings back exactly
// the NIST curves a FIPS crypto policy needs, at ssh-audit's cost of 3 failures.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServerDir } from '../helpers/archive.js';
import { AES_INSTRUCTIONS, CIPHERS_OFFERED } from '../helpers/ciphers.js';
import { startHub, type Hub } from '../helpers/hub.js';
import { requireProgram } from '../helpers/programs.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';

const run = promisify(execFile);
const NOT_FOUND = 'walhub: WAL file not found in the archive (pg1 000000010000000000000001)\n';
let hub: Hub;
let fipsHub: Hub;
let standby: ClientKey;

beforeAll(async () => {
  [hub, fipsHub] = await Promise.all([startHub(), startHub({ extraToml: 'fips_algorithms = true\n' })]);
  standby = await createClientKey(hub.dir, 'standby-a');
  for (const h of [hub, fipsHub]) {
    await h.loadKeys([{ key: standby, options: 'servers="pg1"' }]);
    await createServerDir(h.archive, 'pg1');
  }
});

afterAll(async () => {
  await Promise.all([hub?.stop(), fipsHub?.stop()]);
});

interface Audit {
  /** ssh-audit's "[fail]" and "[warn]" lines, as "name -- [level] reason". */
  readonly findings: string[];
  readonly kex: string[];
  readonly enc: string[];
  readonly mac: string[];
  readonly key: string[];
}

async function audit(target: Hub): Promise<Audit> {
  const sshAudit = requireProgram('ssh-audit', 'ssh-audit');
  // ssh-audit exits non-zero whenever it has something to say; its output is what counts.
  const output = (args: string[]) =>
    run(sshAudit, [...args, '-p', String(target.port), '127.0.0.1']).then(
      (r) => r.stdout,
      (e: { stdout?: string }) => e.stdout ?? '',
    );
  const json = JSON.parse(await output(['-j'])) as { kex: { algorithm: string }[]; key: { algorithm: string }[]; enc: string[]; mac: string[] };
  const text = await output(['-n', '-l', 'warn']);
  const findings = text
    .split('\n')
    .filter((line) => /^\((kex|key|enc|mac)\) /.test(line) && /\[(fail|warn)\]/.test(line))
    .map((line) => line.replace(/^\(\w+\) /, '').replace(/\s+--\s+/, ' -- '));
  return { findings, kex: json.kex.map((k) => k.algorithm), key: json.key.map((k) => k.algorithm), enc: json.enc, mac: json.mac };
}

// ssh-audit 2.5 does not know strict KEX yet and says so; that is the only line allowed.
const KEX_STRICT_UNKNOWN = 'kex-strict-s-v00@openssh.com -- [warn] unknown algorithm';

describe('ssh-audit', () => {
  it('finds no failure and no warning with the default algorithms, and sees strict KEX offered', async () => {
    const result = await audit(hub);
    expect(result.findings).toEqual([KEX_STRICT_UNKNOWN]);
    expect(result.kex).toEqual(['curve25519-sha256', 'curve25519-sha256@libssh.org', 'kex-strict-s-v00@openssh.com']);
    expect(result.key).toEqual(['ssh-ed25519']);
    expect(result.enc).toEqual(CIPHERS_OFFERED);
    expect(result.mac).toEqual(['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com']);
  });

  it('reports exactly the three NIST curves as failures with fips_algorithms = true', async () => {
    const result = await audit(fipsHub);
    expect(result.findings).toEqual([
      'ecdh-sha2-nistp256 -- [fail] using weak elliptic curves',
      'ecdh-sha2-nistp384 -- [fail] using weak elliptic curves',
      'ecdh-sha2-nistp521 -- [fail] using weak elliptic curves',
      KEX_STRICT_UNKNOWN,
    ]);
  });
});

/**
 * Default client proposals. Upstream OpenSSH from myproposal.h (Debian ships
 * it unchanged); RHEL's from its crypto-policies back-end for the client
 * (/etc/crypto-policies/back-ends/openssh.config), which replaces upstream's.
 * Names the local client does not know (mlkem768x25519-sha256 of 10.0) are
 * dropped: they are extra preferences, and walhub does not offer them either.
 */
const UPSTREAM_MACS = 'umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1';
const CLIENTS: Record<string, { kex: string; hostKey: string; cipher: string; mac: string }> = {
  'Debian 11, OpenSSH 8.4': {
    kex: 'curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256',
    hostKey: 'ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,ssh-ed25519-cert-v01@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com,rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,ssh-rsa-cert-v01@openssh.com,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ecdsa-sha2-nistp256@openssh.com,ssh-ed25519,sk-ssh-ed25519@openssh.com,rsa-sha2-512,rsa-sha2-256,ssh-rsa',
    cipher: 'chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com',
    mac: UPSTREAM_MACS,
  },
  'Debian 13, OpenSSH 10.0': {
    kex: 'mlkem768x25519-sha256,sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521',
    hostKey: 'ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256',
    cipher: 'chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr',
    mac: UPSTREAM_MACS,
  },
  'RHEL 8, OpenSSH 8.0, DEFAULT crypto policy': {
    kex: 'curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group-exchange-sha1,diffie-hellman-group14-sha1',
    hostKey: 'rsa-sha2-256,rsa-sha2-256-cert-v01@openssh.com,ecdsa-sha2-nistp256,ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384,ecdsa-sha2-nistp384-cert-v01@openssh.com,rsa-sha2-512,rsa-sha2-512-cert-v01@openssh.com,ecdsa-sha2-nistp521,ecdsa-sha2-nistp521-cert-v01@openssh.com,ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,ssh-rsa,ssh-rsa-cert-v01@openssh.com',
    cipher: 'aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-ctr,aes256-cbc,aes128-gcm@openssh.com,aes128-ctr,aes128-cbc',
    mac: 'hmac-sha2-256-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha1,umac-128@openssh.com,hmac-sha2-512',
  },
  'RHEL 9, OpenSSH 8.7, DEFAULT crypto policy': {
    kex: 'curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512',
    hostKey: 'ecdsa-sha2-nistp256,ecdsa-sha2-nistp256-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384,ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521,ecdsa-sha2-nistp521-cert-v01@openssh.com,ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,sk-ssh-ed25519@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com,rsa-sha2-256,rsa-sha2-256-cert-v01@openssh.com,rsa-sha2-512,rsa-sha2-512-cert-v01@openssh.com',
    cipher: 'aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-ctr,aes128-gcm@openssh.com,aes128-ctr',
    mac: 'hmac-sha2-256-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha1,umac-128@openssh.com,hmac-sha2-512',
  },
};
// RHEL's FIPS policy: no curve25519, no chacha20. Its host keys would be ECDSA or RSA only; the test hub
// has its ed25519 key, so ssh-ed25519 stays in this list (README: FIPS sites add an RSA host key).
const FIPS_CLIENT = {
  kex: 'ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512',
  hostKey: 'ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-256,rsa-sha2-512',
  cipher: 'aes256-gcm@openssh.com,aes256-ctr,aes128-gcm@openssh.com,aes128-ctr',
  mac: 'hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha2-512',
};

let known: Record<string, Set<string>> | undefined;
async function knownToLocalSsh(option: string, list: string): Promise<string> {
  const ssh = requireProgram('ssh', 'openssh-client');
  known ??= {};
  known[option] ??= new Set((await run(ssh, ['-Q', option])).stdout.split('\n'));
  return list
    .split(',')
    .filter((name) => known![option]!.has(name))
    .join(',');
}

async function connectAs(target: Hub, client: typeof FIPS_CLIENT, cipherFilter: (name: string) => boolean = () => true, logLevel?: string) {
  const cipher = client.cipher.split(',').filter(cipherFilter).join(',');
  const extra = [
    '-o', `KexAlgorithms=${await knownToLocalSsh('KexAlgorithms', client.kex)}`,
    '-o', `HostKeyAlgorithms=${await knownToLocalSsh('HostKeyAlgorithms', client.hostKey)}`,
    '-o', `Ciphers=${cipher}`,
    '-o', `MACs=${await knownToLocalSsh('MACs', client.mac)}`,
  ];
  return sshExec(target, standby, 'get-wal pg1 000000010000000000000001', { extra, ...(logLevel ? { logLevel } : {}) });
}

describe('stock OpenSSH clients with their default algorithms', () => {
  it('connects with the local client as installed (Debian 12, OpenSSH 9.2), which then uses AES-GCM on a CPU with AES instructions', async () => {
    const result = await sshExec(hub, standby, 'get-wal pg1 000000010000000000000001', { logLevel: 'DEBUG' });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(NOT_FOUND.trim());
    const cipher = /kex: server->client cipher: (\S+)/.exec(result.stderr)?.[1];
    expect(cipher).toBe(AES_INSTRUCTIONS ? 'aes128-gcm@openssh.com' : 'chacha20-poly1305@openssh.com');
  });

  it.each(Object.entries(CLIENTS))('connects with the defaults of %s, and with CTR ciphers alone only on a CPU without AES instructions', async (_name, client) => {
    const aead = await connectAs(hub, client);
    expect([aead.status, aead.stderr]).toEqual([1, NOT_FOUND]);
    // AEAD ciphers need no MAC: only a CTR cipher shows that the MAC lists meet too, where CTR is offered.
    const ctr = await connectAs(hub, client, (name) => name.endsWith('-ctr'), 'INFO');
    if (AES_INSTRUCTIONS) {
      expect(ctr.status).toBe(255);
      expect(ctr.stderr).toMatch(/no matching cipher found/);
    } else {
      expect([ctr.status, ctr.stderr]).toEqual([1, NOT_FOUND]);
    }
  });

  it('refuses a FIPS-policy client by default, and lets it in with fips_algorithms = true', async () => {
    // ssh says why only at LogLevel INFO.
    const refused = await connectAs(hub, FIPS_CLIENT, undefined, 'INFO');
    expect(refused.status).toBe(255);
    expect(refused.stderr).toMatch(/no matching key exchange method found/);
    const fips = await connectAs(fipsHub, FIPS_CLIENT);
    expect([fips.status, fips.stderr]).toEqual([1, NOT_FOUND]);
  });
});
