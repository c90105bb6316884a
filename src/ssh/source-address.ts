import { isIPv6 } from 'node:net';

/**
 * The source a connection is counted and penalized under: an IPv4 address
 * itself, an IPv6 address by its first `ipv6Prefix` bits (sshd's
 * PerSourceNetBlockSize), since one IPv6 host usually owns a whole /64 and
 * would otherwise get a fresh allowance from every address in it.
 * `address` is already plain (::ffff:a.b.c.d mapped back to a.b.c.d).
 */
export function toSourceKey(address: string, ipv6Prefix: number): string {
  if (!isIPv6(address)) return address;
  const words = toIpv6Words(address);
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, ipv6Prefix - i * 16));
    const mask = keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff;
    groups.push((words[i]! & mask).toString(16));
  }
  return `${groups.join(':')}/${ipv6Prefix}`;
}

/** "2001:db8::1" -> eight 16-bit words; accepts a trailing dotted IPv4 part and a %zone. */
function toIpv6Words(address: string): number[] {
  let text = address.replace(/%.*$/, '');
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? (text.split('::') as [string, string]) : [text, undefined];
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((w) => parseInt(w, 16)));
  const left = parse(head);
  if (tail === undefined) return left;
  const right = parse(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}
