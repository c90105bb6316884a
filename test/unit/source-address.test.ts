import { describe, expect, it } from 'vitest';
import { toSourceKey } from '../../src/ssh/source-address.js';

describe('toSourceKey', () => {
  it('keeps an IPv4 address whole', () => {
    expect(toSourceKey('192.0.2.7', 64)).toBe('192.0.2.7');
  });

  it.each([
    ['2001:db8:1:2:3:4:5:6', 64, '2001:db8:1:2:0:0:0:0/64'],
    ['2001:db8:1:2::ffff', 64, '2001:db8:1:2:0:0:0:0/64'],
    ['2001:db8:1:2ff::1', 56, '2001:db8:1:200:0:0:0:0/56'],
    ['::1', 128, '0:0:0:0:0:0:0:1/128'],
    ['fe80::1%eth0', 64, 'fe80:0:0:0:0:0:0:0/64'],
    ['64:ff9b::192.0.2.7', 128, '64:ff9b:0:0:0:0:c000:207/128'],
  ])('groups %s by /%i', (address, prefix, key) => {
    expect(toSourceKey(address, prefix)).toBe(key);
  });

  it('puts two addresses of one /64 in one source, and of two /64s in two', () => {
    expect(toSourceKey('2001:db8:0:1::a', 64)).toBe(toSourceKey('2001:db8:0:1:ffff::b', 64));
    expect(toSourceKey('2001:db8:0:1::a', 64)).not.toBe(toSourceKey('2001:db8:0:2::a', 64));
  });
});
