import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  findLoginRefusal,
  mayRead,
  parseAuthorizedKeys,
  parseExpiryTime,
  parseKeyLine,
  type KeyEntry,
} from '../../src/keys/authorized-keys.js';
import { generateKey, makeKeyDir, type GeneratedKey } from './keygen.js';
import { rsaBlobWith } from '../helpers/forged-rsa.js';

const SOURCE = '/etc/walhub/authorized_keys';

let keyDir: ReturnType<typeof makeKeyDir>;
const keys = {} as Record<'ed25519' | 'rsa' | 'ecdsa256' | 'ecdsa384' | 'ecdsa521' | 'dsa', GeneratedKey>;

beforeAll(() => {
  keyDir = makeKeyDir();
  keys.ed25519 = generateKey(keyDir.dir, 'standby-a', 'ed25519');
  keys.rsa = generateKey(keyDir.dir, 'standby-rsa', 'rsa', 3072);
  keys.ecdsa256 = generateKey(keyDir.dir, 'standby-p256', 'ecdsa', 256);
  keys.ecdsa384 = generateKey(keyDir.dir, 'standby-p384', 'ecdsa', 384);
  keys.ecdsa521 = generateKey(keyDir.dir, 'standby-p521', 'ecdsa', 521);
  keys.dsa = generateKey(keyDir.dir, 'standby-dsa', 'dsa');
});

afterAll(() => keyDir?.remove());

function entry(line: string, lineNumber = 1): KeyEntry {
  const result = parseKeyLine(line, lineNumber);
  if (result instanceof Error) throw result;
  return result;
}

function refusal(line: string): string {
  const result = parseKeyLine(line, 1);
  if (!(result instanceof Error)) throw new Error(`accepted: ${line}`);
  return result.message;
}

/** The .pub line with other text for the comment. */
const withComment = (key: GeneratedKey, comment: string) => `${key.type} ${key.base64}${comment ? ` ${comment}` : ''}`;

describe('parseKeyLine', () => {
  it("reads DESIGN.md's example line", () => {
    const e = entry(`servers="pg1,pg2",from="10.1.0.0/16",expiry-time="20270101" ${keys.ed25519.publicLine}`, 7);
    expect(e.key.type).toBe('ssh-ed25519');
    expect(e.key.blob.equals(keys.ed25519.blob)).toBe(true);
    expect(e.name).toBe('standby-a');
    expect(e.servers).toEqual(new Set(['pg1', 'pg2']));
    expect(e.from?.source).toBe('10.1.0.0/16');
    expect(e.from?.matches('10.1.9.9')).toBe(true);
    expect(e.expiresAt).toBe(new Date(2027, 0, 1).getTime());
    expect(e.line).toBe(7);
  });

  it.each(['ed25519', 'rsa', 'ecdsa256', 'ecdsa384', 'ecdsa521'] as const)(
    'reads a %s key made by ssh-keygen, with the fingerprint ssh-keygen -l prints',
    (kind) => {
      const e = entry(`servers="*" ${keys[kind].publicLine}`);
      expect(e.key.type).toBe(keys[kind].type);
      expect(e.key.fingerprint).toBe(keys[kind].fingerprint);
      expect(e.servers).toBe('*');
    },
  );

  it.each([
    ['"pg1"', new Set(['pg1'])],
    ['"pg1,pg2"', new Set(['pg1', 'pg2'])],
    ['"pg1, pg2"', new Set(['pg1', 'pg2'])],
    ['"*"', '*'],
    ['"pg1,*"', '*'],
  ])('reads servers=%s', (value, servers) => {
    expect(entry(`servers=${value} ${keys.ed25519.publicLine}`).servers).toEqual(servers);
  });

  it.each([
    ['a one-word comment', 'standby-b', 'standby-b'],
    ['a comment of several words', 'standby b (dc2)', 'standby b (dc2)'],
  ])('names the key by %s', (_what, comment, name) => {
    expect(entry(`servers="pg1" ${withComment(keys.ed25519, comment)}`).name).toBe(name);
  });

  it('names a key without a comment by its fingerprint', () => {
    expect(entry(`servers="pg1" ${withComment(keys.ed25519, '')}`).name).toBe(keys.ed25519.fingerprint);
  });

  it.each([
    'restrict,servers="pg1"',
    'no-pty,servers="pg1"',
    'restrict,no-pty,no-port-forwarding,no-agent-forwarding,no-x11-forwarding,no-user-rc,servers="pg1"',
    'servers="pg1",No-Pty,RESTRICT',
    'Servers="pg1"',
  ])('accepts the restriction options %s', (options) => {
    expect(entry(`${options} ${keys.ed25519.publicLine}`).servers).toEqual(new Set(['pg1']));
  });

  it.each([
    ['no servers=', () => keys.ed25519.publicLine, 'servers="..." is required: which server IDs may this key read?'],
    ['only restrict', () => `restrict ${keys.ed25519.publicLine}`, 'servers="..." is required: which server IDs may this key read?'],
    ['an empty servers=', () => `servers="" ${keys.ed25519.publicLine}`, 'servers= needs a list of server IDs, or "*"'],
    ['servers without a value', () => `servers ${keys.ed25519.publicLine}`, 'servers= needs a list of server IDs, or "*"'],
    ['a path as a server ID', () => `servers="pg1,../x" ${keys.ed25519.publicLine}`, 'servers=: "../x" is not a server ID'],
    ['a hidden name as a server ID', () => `servers=".hidden" ${keys.ed25519.publicLine}`, 'servers=: ".hidden" is not a server ID'],
    ['an unquoted value', () => `servers=pg1 ${keys.ed25519.publicLine}`, 'servers= needs a double-quoted value'],
    ['an unclosed quote', () => `servers="pg1 ${keys.ed25519.publicLine}`, 'servers= has no closing quote'],
    ['text after a value', () => `servers="pg1"x ${keys.ed25519.publicLine}`, 'expected "," or a blank after servers'],
    ['an option given twice', () => `servers="pg1",servers="pg2" ${keys.ed25519.publicLine}`, 'servers is given twice'],
    ['command=', () => `command="/bin/sh",servers="pg1" ${keys.ed25519.publicLine}`, 'command= is refused: walhub runs only get-wal'],
    ['command= after servers=', () => `servers="pg1",command="get-wal" ${keys.ed25519.publicLine}`, 'command= is refused: walhub runs only get-wal'],
    ['permitopen=', () => `servers="pg1",permitopen="db:5432" ${keys.ed25519.publicLine}`, 'unsupported option permitopen'],
    ['environment=', () => `servers="pg1",environment="A=B" ${keys.ed25519.publicLine}`, 'unsupported option environment'],
    ['pty (undoes restrict)', () => `restrict,pty,servers="pg1" ${keys.ed25519.publicLine}`, 'unsupported option pty'],
    ['cert-authority', () => `cert-authority,servers="pg1" ${keys.ed25519.publicLine}`, 'unsupported option cert-authority'],
    ['from= without a value', () => `servers="pg1",from ${keys.ed25519.publicLine}`, 'from= needs a pattern list'],
    ['a bad from= block', () => `servers="pg1",from="10.1.0.0/33" ${keys.ed25519.publicLine}`, 'bad CIDR block "10.1.0.0/33" in from='],
    ['an invalid expiry date', () => `servers="pg1",expiry-time="20270231" ${keys.ed25519.publicLine}`, 'expiry-time= expects YYYYMMDD or YYYYMMDDHHMM[SS]'],
    ['an expiry with dashes', () => `servers="pg1",expiry-time="2027-01-01" ${keys.ed25519.publicLine}`, 'expiry-time= expects YYYYMMDD or YYYYMMDDHHMM[SS]'],
    ['expiry-time without a value', () => `servers="pg1",expiry-time ${keys.ed25519.publicLine}`, 'expiry-time= expects YYYYMMDD or YYYYMMDDHHMM[SS]'],
    ['bad base64', () => `servers="pg1" ssh-ed25519 AAAA$$$$ standby`, 'the key is not valid base64'],
    ['base64 with too much padding', () => `servers="pg1" ssh-ed25519 AAAA=== standby`, 'the key is not valid base64'],
    ['a truncated key', () => `servers="pg1" ssh-ed25519 ${keys.ed25519.base64.slice(0, 40)} standby`, 'the key data is truncated'],
    ['a key of another type than the line says', () => `servers="pg1" ssh-rsa ${keys.ed25519.base64} standby`, 'the key says ssh-ed25519, the line says ssh-rsa'],
    ['a type without a key', () => `servers="pg1" ssh-ed25519`, 'expected [options] key-type base64-key [comment]'],
    [
      'a space instead of a comma between options',
      () => `servers="pg1" expiry-time="20270101" ${keys.ed25519.publicLine}`,
      'options are separated by commas, not spaces: put a comma instead of the blank before expiry-time="20270101"',
    ],
    [
      'a space before a bare option',
      () => `servers="pg1" no-pty ${keys.ed25519.publicLine}`,
      'options are separated by commas, not spaces: put a comma instead of the blank before no-pty',
    ],
    [
      'a from= block with host bits set',
      () => `servers="pg1",from="10.1.2.3/16" ${keys.ed25519.publicLine}`,
      'CIDR block "10.1.2.3/16" in from= has bits set past its /16 prefix, which OpenSSH refuses (the key could not log in); write "10.1.0.0/16"',
    ],
    [
      'an RSA key with exponent 1',
      () => `servers="pg1" ssh-rsa ${rsaBlobWith(keys.rsa.blob, Buffer.from([1])).toString('base64')} forged`,
      "the RSA public exponent is 1, it must be odd and at least 3: with it anyone could forge this key's signatures",
    ],
    [
      'a DSA key with options',
      () => `servers="pg1" ${keys.dsa.publicLine}`,
      'unsupported key type ssh-dss (use ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521)',
    ],
  ])('refuses a line with %s', (_what, line, message) => {
    expect(refusal(line())).toBe(message);
  });

  it('says a DSA key line without options is an unsupported key type, not garbled data', () => {
    expect(refusal(keys.dsa.publicLine)).toMatch(/ssh-dss/);
    expect(refusal(withComment(keys.dsa, ''))).toMatch(/ssh-dss/);
  });
});

describe('parseExpiryTime', () => {
  it.each([
    ['20270101', new Date(2027, 0, 1).getTime()],
    ['202701011230', new Date(2027, 0, 1, 12, 30).getTime()],
    ['20270101123045', new Date(2027, 0, 1, 12, 30, 45).getTime()],
    ['20280229', new Date(2028, 1, 29).getTime()],
    ['20271231235959', new Date(2027, 11, 31, 23, 59, 59).getTime()],
    ['20270101Z', Date.UTC(2027, 0, 1)],
    ['202701011230Z', Date.UTC(2027, 0, 1, 12, 30)],
    ['20270101123045Z', Date.UTC(2027, 0, 1, 12, 30, 45)],
  ])('reads %s', (text, time) => {
    expect(parseExpiryTime(text)).toBe(time);
  });

  it('reads a time without Z as local time and with Z as UTC', () => {
    const saved = process.env.TZ;
    try {
      process.env.TZ = 'Asia/Tokyo';
      expect(parseExpiryTime('20270101')).toBe(Date.UTC(2026, 11, 31, 15));
      expect(parseExpiryTime('20270101Z')).toBe(Date.UTC(2027, 0, 1));
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });

  it.each([
    ['February 31st', '20270231'],
    ['February 29th of a common year', '20270229'],
    ['day 0', '20270100'],
    ['day 32', '20270132'],
    ['month 0', '20270001'],
    ['month 13', '20271301'],
    ['seven digits', '2027010'],
    ['nine digits', '202701011'],
    ['hours without minutes', '2027010112'],
    ['dashes', '2027-01-01'],
    ['a lower-case z', '20270101z'],
    ['blanks', ' 20270101'],
    ['nothing', ''],
  ])('refuses %s (%s)', (_what, text) => {
    expect(parseExpiryTime(text)).toBeUndefined();
  });

  it.each([
    ['hour 24', '202701012400'],
    ['hour 25', '202701012500'],
    ['minute 60', '202701011260'],
    ['second 99', '20270101120099'],
  ])('refuses an out-of-range time of day: %s (%s), which would roll over silently', (_what, text) => {
    expect(parseExpiryTime(text)).toBeUndefined();
  });
});

describe('parseAuthorizedKeys', () => {
  function file(): string {
    return [
      '# walhub authorized keys',
      '',
      `servers="pg1",from="10.1.0.0/16" ${keys.ed25519.publicLine}`,
      'servers="pg1" ssh-ed25519 AAAA$$$$ broken',
      keys.rsa.publicLine,
      `servers="*" ${keys.ecdsa256.publicLine}`,
      `servers="pg2" ${withComment(keys.ed25519, 'same key again')}`,
      '   # an indented comment',
      `  restrict,servers="pg3"   ${keys.ecdsa521.publicLine}  `,
      '',
    ].join('\n');
  }

  it('loads the good lines and reports each bad one as file:line: problem', () => {
    const set = parseAuthorizedKeys(file(), SOURCE);
    expect([...set.byBlob.values()].map((e) => [e.name, e.line])).toEqual([
      ['standby-a', 3],
      ['standby-p256', 6],
      ['standby-p521', 9],
    ]);
    expect(set.problems).toEqual([
      `${SOURCE}:4: the key is not valid base64`,
      `${SOURCE}:5: servers="..." is required: which server IDs may this key read?`,
      `${SOURCE}:7: duplicate of the key on line 3, which is used`,
    ]);
  });

  it('looks keys up by the base64 of their blob', () => {
    const set = parseAuthorizedKeys(file(), SOURCE);
    expect(set.byBlob.get(keys.ecdsa256.base64)?.servers).toBe('*');
    expect(set.byBlob.get(keys.rsa.base64)).toBeUndefined();
  });

  it('keeps the first of two lines for the same key, with its options', () => {
    const first = parseAuthorizedKeys(file(), SOURCE).byBlob.get(keys.ed25519.base64)!;
    expect(first.servers).toEqual(new Set(['pg1']));
    expect(mayRead(first, 'pg2')).toBe(false);
  });

  it('reads a file with CRLF line endings the same way', () => {
    const unix = parseAuthorizedKeys(file(), SOURCE);
    const dos = parseAuthorizedKeys(file().replace(/\n/g, '\r\n'), SOURCE);
    expect([...dos.byBlob.values()].map((e) => e.name)).toEqual([...unix.byBlob.values()].map((e) => e.name));
    expect(dos.problems).toEqual(unix.problems);
  });

  it.each([
    ['an empty file', ''],
    ['only comments and blank lines', '# nothing yet\n\n   \n# still nothing\n'],
  ])('loads nothing, with no problem, from %s', (_what, text) => {
    const set = parseAuthorizedKeys(text, SOURCE);
    expect(set.byBlob.size).toBe(0);
    expect(set.problems).toEqual([]);
  });
});

describe('findLoginRefusal and mayRead', () => {
  const now = Date.UTC(2026, 5, 1);

  it('lets a key without from= or expiry-time= in from anywhere', () => {
    const e = entry(`servers="pg1" ${keys.ed25519.publicLine}`);
    expect(findLoginRefusal(e, '203.0.113.9', now)).toBeUndefined();
  });

  it.each([
    ['a minute before it expires', Date.UTC(2027, 0, 1) - 60_000, undefined],
    ['the moment it expires', Date.UTC(2027, 0, 1), 'key expired'],
    ['a day after it expired', Date.UTC(2027, 0, 2), 'key expired'],
  ])('refuses an expiring key only from its expiry: %s', (_what, at, refusal) => {
    const e = entry(`servers="pg1",expiry-time="20270101Z" ${keys.ed25519.publicLine}`);
    expect(findLoginRefusal(e, '10.1.2.3', at)).toBe(refusal);
  });

  it.each([
    ['10.1.2.3', undefined],
    ['::ffff:10.1.2.3', undefined],
    ['10.2.0.1', 'address not allowed by from="10.1.0.0/16,!10.1.9.9"'],
    ['10.1.9.9', 'address not allowed by from="10.1.0.0/16,!10.1.9.9"'],
    ['::1', 'address not allowed by from="10.1.0.0/16,!10.1.9.9"'],
  ])('checks from= for a login from %s', (address, refusal) => {
    const e = entry(`servers="pg1",from="10.1.0.0/16,!10.1.9.9" ${keys.ed25519.publicLine}`);
    expect(findLoginRefusal(e, address, now)).toBe(refusal);
  });

  it('says the key expired before looking at the address', () => {
    const e = entry(`servers="pg1",from="10.1.0.0/16",expiry-time="20200101Z" ${keys.ed25519.publicLine}`);
    expect(findLoginRefusal(e, '192.0.2.1', now)).toBe('key expired');
  });

  it.each([
    ['"pg1,pg2"', 'pg1', true],
    ['"pg1,pg2"', 'pg2', true],
    ['"pg1,pg2"', 'pg3', false],
    ['"pg1,pg2"', 'PG1', false],
    ['"pg1,pg2"', '', false],
    ['"*"', 'pg1', true],
    ['"*"', 'anything', true],
  ])('servers=%s may read %s: %s', (servers, server, expected) => {
    expect(mayRead(entry(`servers=${servers} ${keys.ed25519.publicLine}`), server)).toBe(expected);
  });
});
