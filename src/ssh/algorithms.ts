import { readFileSync } from 'node:fs';
import type ssh2 from 'ssh2';

/**
 * Only what ssh-audit finds neither failing nor warning, as long as every
 * standby's stock OpenSSH client keeps one choice in each list. Defaults
 * checked (OpenSSH's myproposal.h, and the crypto-policies DEFAULT back-end
 * on RHEL, which replaces the built-in lists there):
 *   Debian 11 (8.4), 12 (9.2), 13 (10.0), RHEL 8 (8.0), RHEL 9 (8.7).
 * - kex: curve25519-sha256 is in every one of them (OpenSSH 7.4+; the
 *   @libssh.org name since 6.5). 10.0 prefers mlkem768x25519-sha256, which
 *   ssh2 lacks, and falls back to curve25519. The NIST curves (ssh-audit:
 *   fail) come back only with `fips_algorithms`, for clients under a FIPS
 *   policy, which allows no curve25519. Finite-field DH (group14-18, GEX) is
 *   left out although clean: the server's modular exponentiation runs on the
 *   event loop, and an attacker without a key would choose the 8192-bit group
 *   to stall every other connection.
 * - host key: ssh-ed25519 (every client; RHEL's DEFAULT policy too) and
 *   rsa-sha2-256/512 for an RSA host key; never SHA-1 ssh-rsa.
 * - cipher: see offeredCiphers().
 * - mac: only the encrypt-then-MAC hmac-sha2 (in every default list, FIPS
 *   included), for the CTR ciphers of a CPU without AES instructions; AEAD
 *   ciphers need none. Plain hmac-sha2-256/512 are encrypt-and-MAC (ssh-audit: warn).
 * Strict KEX (Terrapin) is ssh2's own: it always adds kex-strict-s-v00.
 * No compression: WAL is already decoded, zlib would only cost CPU.
 */
const KEX = ['curve25519-sha256', 'curve25519-sha256@libssh.org'];
const FIPS_KEX = ['ecdh-sha2-nistp256', 'ecdh-sha2-nistp384', 'ecdh-sha2-nistp521'];
const HOST_KEY_ALGORITHMS = ['ssh-ed25519', 'rsa-sha2-512', 'rsa-sha2-256'];
const FIPS_HOST_KEY_ALGORITHMS = ['ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521'];
const AES_GCM = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com'];
const WITHOUT_AES_INSTRUCTIONS = ['chacha20-poly1305@openssh.com', ...AES_GCM, 'aes128-ctr', 'aes192-ctr', 'aes256-ctr'];
const MACS = ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com'];

/**
 * The client picks the cipher (its first choice the server offers), and the
 * stock OpenSSH client lists chacha20-poly1305 first, then aes-ctr, then
 * aes-gcm. On a CPU with AES instructions walhub offers AES-GCM alone, so that
 * OpenSSH clients use it: every OpenSSH since 6.2 and every FIPS policy has
 * it, and receiving 16 consecutive 16 MiB segments through a ControlMaster
 * cost the standby's ssh 430-455 ms of CPU with it against 530-615 ms with
 * chacha20-poly1305 (and 470 ms with aes128-ctr, whose separate MAC costs
 * the hub more), on the 2-core development machine. On a CPU without them,
 * chacha20-poly1305 is the fast one and the list is the usual one.
 */
export function offeredCiphers(aesInstructions: boolean): string[] {
  return aesInstructions ? [...AES_GCM] : [...WITHOUT_AES_INSTRUCTIONS];
}

/**
 * Whether the CPU has AES instructions, from the Linux kernel's cpuinfo:
 * x86's "flags" or arm64's "Features" name them "aes". Where that cannot be
 * told (no cpuinfo, or an architecture that lists its extensions otherwise:
 * POWER, RISC-V, s390x), no: the usual list then also serves clients without
 * AES-GCM, and costs only speed on a CPU that had them after all.
 */
export function cpuHasAes(cpuinfo: string = readCpuinfo()): boolean {
  const lists = cpuinfo.split('\n').filter((line) => /^(flags|features)\s*:/i.test(line));
  if (lists.length === 0) return false;
  return lists.every((line) => line.split(':')[1]!.trim().split(/\s+/).includes('aes'));
}

/** The kernel's cpuinfo, or nothing where there is none to read. */
function readCpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

export function toAlgorithms(fips: boolean, aesInstructions = cpuHasAes()): ssh2.Algorithms {
  return {
    kex: fips ? [...KEX, ...FIPS_KEX] : KEX,
    serverHostKey: fips ? [...HOST_KEY_ALGORITHMS, ...FIPS_HOST_KEY_ALGORITHMS] : HOST_KEY_ALGORITHMS,
    cipher: offeredCiphers(aesInstructions),
    hmac: MACS,
    compress: ['none'],
  } as ssh2.Algorithms;
}
