import { BlockList, isIP } from 'node:net';

/**
 * OpenSSH's from="..." pattern list, matched against the client's address
 * (walhub does no reverse DNS, like sshd's default UseDNS no): comma-separated
 * `*`/`?` wildcards and CIDR blocks, `!` negates, a negated match refuses.
 *
 * Client addresses are matched in their plain form (an IPv4 client on a
 * dual-stack socket, ::ffff:10.1.2.3, is 10.1.2.3), so patterns are put in
 * the same form: a pattern that could never match is a negation that never
 * refuses.
 */
export interface FromPattern {
  readonly source: string;
  /**
   * Every entry is negated, so no address matches (as in sshd): "!10.0.0.0/8"
   * alone refuses everyone rather than everyone outside 10/8, which is
   * written "*,!10.0.0.0/8". The likely slip; other lists that match nothing
   * ("*,!*") are not looked for.
   */
  readonly onlyNegations: boolean;
  matches(address: string): boolean;
}

interface Entry {
  negated: boolean;
  test: (address: string, family: 4 | 6) => boolean;
}

const MAPPED_PREFIX = /^::ffff:/i;

export function parseFromPattern(source: string): FromPattern | Error {
  const entries: Entry[] = [];
  for (const raw of source.split(',')) {
    const item = raw.trim();
    const negated = item.startsWith('!');
    const pattern = negated ? item.slice(1) : item;
    if (pattern === '') return new Error(`empty pattern in from="${source}"`);
    const entry = pattern.includes('/') ? parseBlock(pattern) : parseWildcard(pattern);
    if (entry instanceof Error) return entry;
    entries.push({ negated, test: entry });
  }
  return {
    source,
    onlyNegations: entries.every((entry) => entry.negated),
    matches(remote: string): boolean {
      const address = toPlainAddress(remote);
      const family = isIP(address);
      if (family === 0) return false;
      let matched = false;
      for (const entry of entries) {
        if (!entry.test(address, family as 4 | 6)) continue;
        if (entry.negated) return false;
        matched = true;
      }
      return matched;
    },
  };
}

function parseBlock(pattern: string): Entry['test'] | Error {
  const bad = new Error(`bad CIDR block "${pattern}" in from=`);
  const [ip, bits, extra] = pattern.split('/') as [string, string, string | undefined];
  let family = isIP(ip);
  let prefix = Number(bits);
  if (extra !== undefined || family === 0 || ip.includes('%') || !/^\d{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128)) return bad;
  let value = toNumber(ip, family as 4 | 6);
  if (family === 6 && value >> 32n === 0xffffn) {
    if (prefix < 96) return new Error(`CIDR block "${pattern}" in from= mixes IPv4-mapped and IPv6 addresses; write the IPv4 block it means`);
    family = 4;
    prefix -= 96;
    value &= 0xffffffffn;
  }
  const width = family === 4 ? 32n : 128n;
  const hostBits = (1n << (width - BigInt(prefix))) - 1n;
  if ((value & hostBits) !== 0n) {
    const network = `${toText(value & ~hostBits, family as 4 | 6)}/${prefix}`;
    return new Error(`CIDR block "${pattern}" in from= has bits set past its /${prefix} prefix, which OpenSSH refuses (the key could not log in); write "${network}"`);
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const block = new BlockList();
  block.addSubnet(toText(value, family as 4 | 6), prefix, type);
  return (address, fam) => fam === family && block.check(address, type);
}

function parseWildcard(text: string): Entry['test'] | Error {
  if (!/^[0-9A-Za-z.:*?_-]+$/.test(text)) return new Error(`bad pattern "${text}" in from=`);
  let pattern = text;
  if (isIP(text) === 6) {
    // One spelling per address, the one clients are matched in: ::FFFF:a01:203 is 10.1.2.3, 2001:DB8:0::1 is 2001:db8::1.
    const value = toNumber(text, 6);
    pattern = value >> 32n === 0xffffn ? toText(value & 0xffffffffn, 4) : toText(value, 6);
  } else if (MAPPED_PREFIX.test(text) && /^[0-9.*?]+$/.test(text.slice(7))) {
    pattern = text.slice(7); // ::ffff:10.1.*
  }
  const regex = new RegExp(`^${pattern.replace(/[.]/g, '\\.').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
  return (address) => regex.test(address);
}

/** An address isIP() accepted (no zone), as a number. */
function toNumber(address: string, family: 4 | 6): bigint {
  if (family === 4) return address.split('.').reduce((n, octet) => (n << 8n) | BigInt(Number(octet)), 0n);
  let text = address;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = toNumber(dotted[1]!, 4);
    text = `${text.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.reduce((n, group) => (n << 16n) | BigInt(parseInt(group, 16)), 0n);
}

/** As Node prints addresses: dotted IPv4; IPv6 in lower case with the longest run of zero groups as `::` (RFC 5952). */
function toText(value: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { start: -1, length: 1 };
  for (let start = 0; start < 8; start++) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0) length++;
    if (length > best.length) best = { start, length };
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.start < 0) return hex.join(':');
  return `${hex.slice(0, best.start).join(':')}::${hex.slice(best.start + best.length).join(':')}`;
}

/** ::ffff:10.1.2.3 (an IPv4 client on a dual-stack socket) -> 10.1.2.3. */
export function toPlainAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address;
}
