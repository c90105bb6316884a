import { describe, expect, it } from 'vitest';
import { toLoggable } from '../../src/ssh/loggable.js';

describe('toLoggable', () => {
  it.each([
    ['plain text, unchanged', 'OpenSSH_9.2p1 Debian-2', 255, 'OpenSSH_9.2p1 Debian-2'],
    ['C0 controls, as \\xNN', 'a\u001b[2Jb\r\n', 64, 'a\\x1b[2Jb\\x0d\\x0a'],
    ['C1 controls (CSI, NEL), which JSON leaves raw', 'a\u009b31m\u0085', 64, 'a\\x9b31m\\x85'],
    ['DEL', 'a\u007f', 64, 'a\\x7f'],
    ['text past the limit, cut with the length it had', 'u'.repeat(100), 10, 'uuuuuuuuuu...[cut, 100 characters]'],
    ['a lone surrogate', 'a\ud800b', 64, 'a\\xd800b'],
  ])('writes %s', (_what, text, max, expected) => {
    expect(toLoggable(text, max)).toBe(expected);
  });

  it('never cuts a character in half', () => {
    const text = '\u{1F600}'.repeat(10);
    expect(toLoggable(text, 3)).toBe(`${'\u{1F600}'.repeat(3)}...[cut, 20 characters]`);
  });
});
