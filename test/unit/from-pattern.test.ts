import { describe, expect, it } from 'vitest';
import { parseFromPattern, toPlainAddress, type FromPattern } from '../../src/keys/from-pattern.js';

function pattern(source: string): FromPattern {
  const parsed = parseFromPattern(source);
  if (parsed instanceof Error) throw parsed;
  return parsed;
}

describe('parseFromPattern', () => {
  it.each([
    ['10.1.0.0/16', '10.1.2.3', true],
    ['10.1.0.0/16', '10.1.255.255', true],
    ['10.1.0.0/16', '10.2.0.1', false],
    ['10.1.0.0/16', '::1', false],
    ['10.1.2.3/32', '10.1.2.3', true],
    ['10.1.2.3/32', '10.1.2.4', false],
    ['0.0.0.0/0', '192.0.2.1', true],
    ['!10.1.2.3,10.1.0.0/16', '10.1.2.3', false],
    ['!10.1.2.3,10.1.0.0/16', '10.1.2.4', true],
    ['10.1.0.0/16,!10.1.2.3', '10.1.2.3', false],
    ['10.1.0.0/16,!10.1.2.0/24', '10.1.2.77', false],
    ['10.1.0.0/16,!10.1.2.0/24', '10.1.3.77', true],
    ['127.0.0.*', '127.0.0.1', true],
    ['127.0.0.*', '127.0.1.1', false],
    ['10.1.2.?', '10.1.2.5', true],
    ['10.1.2.?', '10.1.2.50', false],
    ['10.1.2.3', '10.1.2.3', true],
    ['10.1.2.3', '10.1.2.30', false],
    ['10.1.2.3', '10a1b2c3', false],
    ['*', '198.51.100.7', true],
    ['::1', '::1', true],
    ['::1', '127.0.0.1', false],
    ['2001:db8::/32', '2001:db8:1::5', true],
    ['2001:db8::/32', '2001:db9::1', false],
    ['2001:db8::/32', '10.1.2.3', false],
    ['2001:DB8::*', '2001:db8::42', true],
    ['10.1.0.0/16', '::ffff:10.1.2.3', true],
    ['10.1.0.0/16', '::FFFF:10.1.2.3', true],
    ['10.1.2.3', '::ffff:10.1.2.3', true],
    ['!10.1.2.3,10.1.0.0/16', '::ffff:10.1.2.3', false],
    ['!10.1.2.3', '10.9.9.9', false],
    ['!10.1.2.3', '10.1.2.3', false],
    ['standby.example.com', '10.1.2.3', false],
    ['10.1.0.0/16, 10.2.0.0/16', '10.2.0.9', true],
    // Patterns in IPv4-mapped form mean the IPv4 address: clients are matched in plain form.
    ['::ffff:10.1.2.3', '10.1.2.3', true],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3', true],
    ['::FFFF:a01:203', '10.1.2.3', true],
    ['::ffff:10.1.*', '10.1.9.9', true],
    ['::ffff:10.1.0.0/112', '10.1.2.3', true],
    ['::ffff:10.1.0.0/112', '10.2.2.3', false],
    ['2001:DB8:0:0::1', '2001:db8::1', true],
  ])('from="%s" matches %s: %s', (source, address, expected) => {
    expect(pattern(source).matches(address)).toBe(expected);
  });

  it('never matches something that is not an IP address', () => {
    expect(pattern('*').matches('standby.example.com')).toBe(false);
    expect(pattern('*').matches('')).toBe(false);
  });

  it.each([
    ['!10.1.2.3', true],
    ['!10.1.0.0/16, !2001:db8::/32', true],
    ['*,!10.1.0.0/16', false],
    ['10.1.0.0/16', false],
    ['!10.1.2.3,10.1.0.0/16', false],
  ])('from="%s" matches no address at all: %s', (source, nothing) => {
    expect(pattern(source).onlyNegations).toBe(nothing);
    if (nothing) for (const address of ['10.1.2.3', '10.9.9.9', '2001:db8::1', '192.0.2.1']) expect(pattern(source).matches(address)).toBe(false);
  });

  it('keeps its source text for messages', () => {
    expect(pattern('!10.1.2.3,10.1.0.0/16').source).toBe('!10.1.2.3,10.1.0.0/16');
  });

  it.each([
    ['a prefix longer than 32 bits', '10.1.0.0/33', 'bad CIDR block "10.1.0.0/33" in from='],
    ['a prefix longer than 128 bits', '2001:db8::/129', 'bad CIDR block "2001:db8::/129" in from='],
    ['an empty prefix', '10.1.0.0/', 'bad CIDR block "10.1.0.0/" in from='],
    ['a prefix that is not a number', '10.1.0.0/1x', 'bad CIDR block "10.1.0.0/1x" in from='],
    ['a negative prefix', '10.1.0.0/-1', 'bad CIDR block "10.1.0.0/-1" in from='],
    ['a host name with a prefix', 'standby/16', 'bad CIDR block "standby/16" in from='],
    ['a truncated address', '10.1/16', 'bad CIDR block "10.1/16" in from='],
    ['a second prefix (10.1.0.0/16/24 silently read as /16)', '10.1.0.0/16/24', 'bad CIDR block "10.1.0.0/16/24" in from='],
    ['a negated bad block', '!10.1.0.0/40', 'bad CIDR block "10.1.0.0/40" in from='],
    ['an empty list', '', 'empty pattern in from=""'],
    ['an empty item', '10.1.0.0/16,,10.2.0.0/16', 'empty pattern in from="10.1.0.0/16,,10.2.0.0/16"'],
    ['a lone !', '!', 'empty pattern in from="!"'],
    ['a space inside a pattern', '10.1.2 .3', 'bad pattern "10.1.2 .3" in from='],
    ['regex characters', '10.1.2.(3|4)', 'bad pattern "10.1.2.(3|4)" in from='],
    [
      'a block with host bits set (OpenSSH refuses the key)',
      '10.1.2.3/16',
      'CIDR block "10.1.2.3/16" in from= has bits set past its /16 prefix, which OpenSSH refuses (the key could not log in); write "10.1.0.0/16"',
    ],
    [
      'an IPv6 block with host bits set',
      '2001:db8::1/32',
      'CIDR block "2001:db8::1/32" in from= has bits set past its /32 prefix, which OpenSSH refuses (the key could not log in); write "2001:db8::/32"',
    ],
    [
      'an IPv4-mapped block with host bits set',
      '::ffff:10.1.2.3/112',
      'CIDR block "::ffff:10.1.2.3/112" in from= has bits set past its /16 prefix, which OpenSSH refuses (the key could not log in); write "10.1.0.0/16"',
    ],
    [
      'an IPv4-mapped block wider than IPv4',
      '::ffff:0.0.0.0/80',
      'CIDR block "::ffff:0.0.0.0/80" in from= mixes IPv4-mapped and IPv6 addresses; write the IPv4 block it means',
    ],
    ['a zone in a block', 'fe80::%eth0/64', 'bad CIDR block "fe80::%eth0/64" in from='],
  ])('refuses %s', (_what, source, message) => {
    const result = parseFromPattern(source);
    expect(result).toBeInstanceOf(Error);
    expect((result as Error).message).toBe(message);
  });
});

describe('from= negations written in IPv4-mapped form', () => {
  it.each([['::ffff:10.1.2.3'], ['::FFFF:a01:203'], ['::ffff:10.1.2.0/120'], ['::ffff:10.1.2.*']])(
    'a negation written as %s refuses the IPv4 host it names (it used to let it in)',
    (negation) => {
      const from = pattern(`!${negation},10.1.0.0/16`);
      expect(from.matches('10.1.2.3')).toBe(false);
      expect(from.matches('::ffff:10.1.2.3')).toBe(false);
      expect(from.matches('10.1.3.3')).toBe(true);
    },
  );
});

describe('toPlainAddress', () => {
  it.each([
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['::FFFF:192.0.2.1', '192.0.2.1'],
    ['10.1.2.3', '10.1.2.3'],
    ['::1', '::1'],
    ['2001:db8::ffff:10.1.2.3', '2001:db8::ffff:10.1.2.3'],
  ])('%s -> %s', (address, plain) => {
    expect(toPlainAddress(address)).toBe(plain);
  });
});
