import { BlockList, isIP } from 'node:net';

/**
 * OpenSSH's from="..." pattern list, matched against the client's address
 * (walhub does no reverse DNS, like sshd's default UseDNS no): comma-separated
 * `*`/`?` wildcards and CIDR blocks, `!` negates, a negated match refuses.
 */
export interface FromPattern {
  readonly source: string;
  matches(address: string): boolean;
}

interface Entry {
  negated: boolean;
  test: (address: string, family: 4 | 6) => boolean;
}

export function parseFromPattern(source: string): FromPattern | Error {
  const entries: Entry[] = [];
  for (const raw of source.split(',')) {
    const item = raw.trim();
    const negated = item.startsWith('!');
    const pattern = negated ? item.slice(1) : item;
    if (pattern === '') return new Error(`empty pattern in from="${source}"`);
    if (pattern.includes('/')) {
      const [ip, bits, extra] = pattern.split('/') as [string, string, string | undefined];
      const family = isIP(ip);
      const prefix = Number(bits);
      if (extra !== undefined || family === 0 || !/^\d{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128)) {
        return new Error(`bad CIDR block "${pattern}" in from=`);
      }
      const block = new BlockList();
      block.addSubnet(ip, prefix, family === 4 ? 'ipv4' : 'ipv6');
      entries.push({ negated, test: (address, fam) => fam === family && block.check(address, fam === 4 ? 'ipv4' : 'ipv6') });
    } else {
      if (!/^[0-9A-Za-z.:*?_-]+$/.test(pattern)) return new Error(`bad pattern "${pattern}" in from=`);
      const regex = new RegExp(`^${pattern.replace(/[.]/g, '\\.').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
      entries.push({ negated, test: (address) => regex.test(address) });
    }
  }
  return {
    source,
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

/** ::ffff:10.1.2.3 (an IPv4 client on a dual-stack socket) -> 10.1.2.3. */
export function toPlainAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address;
}
