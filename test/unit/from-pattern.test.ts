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
  ])('from="%s" matches %s: %s', (source, address, expected) => {
    expect(pattern(source).matches(address)).toBe(expected);
  });

  it('never matches something that is not an IP address', () => {
    expect(pattern('*').matches('standby.example.com')).toBe(false);
    expect(pattern('*').matches('')).toBe(false);
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
  ])('refuses %s', (_what, source, message) => {
    const result = parseFromPattern(source);
    expect(result).toBeInstanceOf(Error);
    expect((result as Error).message).toBe(message);
  });
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
