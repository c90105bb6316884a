import { describe, expect, it } from 'vitest';
import { cpuHasAes, offeredCiphers, toAlgorithms } from '../../src/ssh/algorithms.js';

// Shortened from real /proc/cpuinfo: an AMD EPYC guest, a Raspberry Pi 4
// (Cortex-A72 without the crypto extension) and an AWS Graviton2.
const EPYC = 'processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme sse2 ssse3 pclmulqdq sse4_2 aes avx avx2 sha_ni\n\nprocessor\t: 1\nflags\t\t: fpu vme sse2 ssse3 pclmulqdq sse4_2 aes avx avx2 sha_ni\n';
const PI4 = 'processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n';
const GRAVITON2 = 'processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid\n';
const OLD_X86 = 'processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 sse sse2\n';

describe('cpuHasAes', () => {
  it('finds AES instructions in x86 flags and arm64 Features', () => {
    expect(cpuHasAes(EPYC)).toBe(true);
    expect(cpuHasAes(GRAVITON2)).toBe(true);
  });

  it('finds none where the list lacks the word aes (not a prefix of another flag)', () => {
    expect(cpuHasAes(PI4)).toBe(false);
    expect(cpuHasAes(OLD_X86)).toBe(false);
    expect(cpuHasAes('flags\t\t: fpu aes_like vaes2\n')).toBe(false);
  });

  it('needs every CPU to have them, and says no where it cannot tell, so that the usual list is offered', () => {
    expect(cpuHasAes(`${EPYC}${OLD_X86}`)).toBe(false);
    // No cpuinfo to read (another OS) reads as empty.
    expect(cpuHasAes('')).toBe(false);
    // RISC-V names its extensions in "isa", s390x its facilities in a lowercase "features" without an "aes".
    expect(cpuHasAes('processor\t: 0\nhart\t\t: 0\nisa\t\t: rv64imafdc_zicsr_zifencei\n')).toBe(false);
    expect(cpuHasAes('vendor_id       : IBM/S390\nfeatures\t: esan3 zarch stfle msa ldisp eimm dfp edat etf3eh highgprs te vx\n')).toBe(false);
  });
});

describe('offeredCiphers', () => {
  it('offers AES-GCM alone with AES instructions, so that OpenSSH clients (chacha20 first, then aes-ctr) use it', () => {
    expect(offeredCiphers(true)).toEqual(['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com']);
  });

  it('keeps chacha20-poly1305 and the CTR ciphers without them', () => {
    expect(offeredCiphers(false)).toEqual(['chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr']);
  });

  it('is what toAlgorithms hands ssh2, FIPS or not', () => {
    expect(toAlgorithms(false, true).cipher).toEqual(offeredCiphers(true));
    expect(toAlgorithms(true, false).cipher).toEqual(offeredCiphers(false));
  });
});
