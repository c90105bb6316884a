// What walhub should offer on this machine, read here apart from walhub's own
// check (src/ssh/algorithms.ts): x86 "flags" / arm64 "Features" in
// /proc/cpuinfo name the AES instructions "aes".
import { readFileSync } from 'node:fs';

export const AES_INSTRUCTIONS = /^(flags|Features)\s*:.*\baes\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));

export const CIPHERS_OFFERED = AES_INSTRUCTIONS
  ? ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com']
  : ['chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr'];
