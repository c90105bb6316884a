// Property-based fuzzing of every parser that reads bytes a client or an
// authorized_keys line controls. Seeded, so a failure replays; a few
// thousand cases each. A property that failed names the bug it found.
import { fc, test } from '@fast-check/vitest';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { listCandidates } from '../../src/archive/lookup.js';
import { parseWalName, toSegmentName, toSegmentNumber } from '../../src/archive/wal-name.js';
import { parseCommand } from '../../src/command/grammar.js';
import { splitWords } from '../../src/command/split-words.js';
import { SERVER_ID } from '../../src/config.js';
import { WalhubError } from '../../src/errors.js';
import { parseAuthorizedKeys, parseKeyLine } from '../../src/keys/authorized-keys.js';
import { parseFromPattern } from '../../src/keys/from-pattern.js';

const SEED = 20261201;
const RUNS = { seed: SEED, numRuns: 3000 };

/** Runs `parse`; a throw other than a USAGE WalhubError fails the property. */
function usageOrValue<T>(parse: () => T): T | WalhubError {
  try {
    return parse();
  } catch (error) {
    if (error instanceof WalhubError && error.code === 'USAGE') return error;
    throw error;
  }
}

const hex = (length: number, digits = '0123456789ABCDEF') => fc.string({ unit: fc.constantFrom(...digits), minLength: length, maxLength: length });
const SUFFIXES = ['', '.partial', '.backup', '.history', '.00000028.backup', '/..', '.gz'];
/** Names near PostgreSQL's form: many are valid, the rest off by a character, a suffix or a case. */
const walLike = fc.oneof(
  fc.tuple(hex(24), fc.constantFrom(...SUFFIXES)).map(([h, s]) => h + s),
  fc.tuple(hex(24, '0123456789ABCDEFabcdef'), fc.constantFrom(...SUFFIXES)).map(([h, s]) => h + s),
  fc.tuple(hex(8), fc.constantFrom('.history', '.HISTORY', '.history/', '')).map(([h, s]) => h + s),
  fc.string({ unit: fc.constantFrom(...'0123456789ABCDEF./\\-_xX'), maxLength: 40 }),
);
const anyText = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ unit: 'grapheme', maxLength: 40 }));
/** Pieces of exec strings: verbs, options, servers, names, and everything a shell would act on. */
const commandPiece = fc.oneof(
  fc.constantFrom('get-wal', 'barman', '--config', '-c', '--config=/etc/barman.conf', '-q', '-P', '--partial', '-t', '-z', '-j', '-x', '-Pt',
    '--keep-compression', '-p', '--peek', '--peek=3', '--', '-', 'pg1', '..', '/etc/passwd', "'", '"', '\\', ' ', '\t', ';', '$', '`', '|',
    '\n', '\0', '"$(id)"', "'a b'", '\\ ', '0', '9999', '10000'),
  walLike,
  fc.string({ maxLength: 8 }),
);
const command = fc
  .tuple(fc.array(commandPiece, { maxLength: 10 }), fc.constantFrom(' ', '', '  '))
  .map(([pieces, separator]) => pieces.join(separator));
/** Commands as barman-wal-restore and people write them, so that acceptance is exercised too. */
const plausibleCommand = fc
  .tuple(
    fc.constantFrom('', 'barman ', 'barman --config /etc/barman.conf ', 'barman -c x -q '),
    fc.subarray(['-P', '--partial', '-t', '-z', '-j', '--keep-compression', '-p 3', '--peek=12'], { maxLength: 3 }),
    fc.constantFrom('pg1', "'pg1'", '"pg-2.main"', 'p\g1', '..', ''),
    walLike,
  )
  .map(([prefix, options, server, wal]) => `${prefix}get-wal ${options.join(' ')} ${server} ${wal}`);
const accepted = { commands: 0, walNames: 0, keyLines: 0, fromPatterns: 0 };

describe('exec string splitter and grammar', () => {
  test.prop([fc.oneof(command, plausibleCommand, anyText)], RUNS)('never throws anything but a USAGE error, and accepts only a server ID and a WAL name', (text) => {
    const words = usageOrValue(() => splitWords(text));
    if (words instanceof WalhubError) return;
    expect(words.every((w) => typeof w === 'string' && !w.includes('\0'))).toBe(true);
    const request = usageOrValue(() => parseCommand(words));
    if (request instanceof WalhubError) return;
    expect(request.server).toMatch(SERVER_ID);
    if (!request.test) expect(parseWalName(request.walText)).toEqual(request.wal);
    if (request.peek !== undefined) expect(request.peek >= 1 && request.peek <= 9999).toBe(true);
    accepted.commands++;
  });

  test.prop([fc.array(fc.oneof(commandPiece, anyText), { maxLength: 8 })], RUNS)('reads any list of words without throwing anything but USAGE', (words) => {
    usageOrValue(() => parseCommand(words));
  });

  test.prop([fc.array(fc.string({ maxLength: 12 }).filter((w) => !w.includes("'")), { minLength: 1, maxLength: 8 })], RUNS)(
    'gives back the words a client single-quoted, whatever they hold',
    (words) => {
      const text = words.map((w) => `'${w}'`).join(' ');
      const split = usageOrValue(() => splitWords(text));
      if (split instanceof WalhubError) {
        // Only what is refused anywhere: a NUL byte or an over-long command.
        expect(text.includes('\0') || Buffer.byteLength(text) > 4096).toBe(true);
        return;
      }
      expect(split).toEqual(words);
    },
  );
});

describe('WAL names', () => {
  test.prop([fc.oneof(walLike, anyText), fc.boolean()], RUNS)('lead only to candidate paths inside the server directory', (text, partial) => {
    const wal = parseWalName(text);
    if (!wal) return;
    accepted.walNames++;
    expect(wal.name).toBe(text);
    const serverDir = '/srv/archive/pg1';
    for (const candidate of listCandidates(wal, partial)) {
      expect(isAbsolute(candidate)).toBe(false);
      expect(normalize(candidate)).toBe(candidate);
      expect(candidate.split(sep)).not.toContain('..');
      expect(join(serverDir, candidate).startsWith(serverDir + sep)).toBe(true);
      expect(candidate.endsWith(text) || candidate.endsWith(`${text}.partial`)).toBe(true);
    }
  });

  test.prop([fc.integer({ min: 1, max: 0xffffffff }), fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }), fc.integer({ min: 20, max: 30 })], RUNS)(
    'name a segment and back again for every segment size',
    (timeline, rawSegno, log2) => {
      const segmentSize = 2 ** log2;
      const segno = rawSegno % ((0x1_0000_0000n * 0x1_0000_0000n) / BigInt(segmentSize));
      const wal = parseWalName(toSegmentName(timeline, segno, segmentSize));
      expect(wal?.kind).toBe('segment');
      expect(toSegmentNumber(wal!, segmentSize)).toBe(segno);
    },
  );
});

const OPTION_PIECES = fc.constantFrom(
  'servers="pg1"', 'servers="*"', 'servers=""', 'servers="pg1,../x"', 'from="10.1.0.0/16"', 'from="10.1.2.3/16"', 'from="!::ffff:10.1.2.3,*"',
  'expiry-time="20270101"', 'expiry-time="20270231"', 'command="sh"', 'restrict', 'no-pty', 'pty', 'servers', 'from', '"', '\\"', ',', ' ', '=',
);
const KEY_PIECES = fc.constantFrom(
  'ssh-ed25519', 'ssh-rsa', 'ssh-dss', 'ecdsa-sha2-nistp256', 'sk-ssh-ed25519@openssh.com',
  'AAAAC3NzaC1lZDI1NTE5AAAAIBvdJ0zTm9xrq7s5cM9pfHUK8mD0P0YvSGqlYpDWgU6r', 'AAAAB3NzaC1yc2EAAAABAQ==', 'AAAA', '====', 'standby-a',
);
const keyLine = fc.array(fc.oneof(OPTION_PIECES, KEY_PIECES, fc.string({ maxLength: 10 })), { maxLength: 8 }).map((pieces) => pieces.join(''));
const spacedKeyLine = fc.array(fc.oneof(OPTION_PIECES, KEY_PIECES), { maxLength: 6 }).map((pieces) => pieces.join(' '));
const plausibleKeyLine = fc
  .tuple(fc.subarray(['servers="pg1,pg2"', 'from="10.1.0.0/16,!10.1.2.3"', 'expiry-time="20991231"', 'restrict', 'no-pty'], { maxLength: 4 }), fc.constantFrom(',', ' ', ', '))
  .map(([options, separator]) => `${['servers="pg1"', ...options.filter((o) => !o.startsWith('servers'))].join(separator)} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvdJ0zTm9xrq7s5cM9pfHUK8mD0P0YvSGqlYpDWgU6r standby`);

describe('authorized_keys lines', () => {
  test.prop([fc.oneof(keyLine, spacedKeyLine, plausibleKeyLine, anyText)], RUNS)('are a key entry or an Error, never a throw', (line) => {
    const entry = parseKeyLine(line, 1);
    if (entry instanceof Error) {
      expect(entry.message).not.toBe('');
      expect(entry.message).not.toContain('\n');
      return;
    }
    expect(entry.servers === '*' || [...entry.servers].every((id) => SERVER_ID.test(id))).toBe(true);
    accepted.keyLines++;
  });

  test.prop([fc.array(fc.oneof(keyLine, spacedKeyLine, anyText), { maxLength: 6 })], { seed: SEED, numRuns: 1000 })(
    'a whole file never throws, and every problem names its line',
    (lines) => {
      const set = parseAuthorizedKeys(lines.join('\n'), 'authorized_keys');
      for (const problem of set.problems) expect(problem).toMatch(/^authorized_keys:\d+: \S/);
    },
  );
});

const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((parts) => parts.join('.'));
const ipv6 = fc.ipV6();
const fromPiece = fc.oneof(
  ipv4,
  ipv6,
  fc.tuple(ipv4, fc.integer({ min: 0, max: 40 })).map(([ip, bits]) => `${ip}/${bits}`),
  fc.tuple(ipv6, fc.integer({ min: 0, max: 130 })).map(([ip, bits]) => `${ip}/${bits}`),
  ipv4.map((ip) => `::ffff:${ip}`),
  fc.tuple(ipv4, fc.integer({ min: 90, max: 128 })).map(([ip, bits]) => `::ffff:${ip}/${bits}`),
  fc.constantFrom('*', '?', '10.1.*', '::1', '!', '', ' ', '%eth0', 'fe80::1%eth0/64', '/', '//', 'host.example'),
);
const fromList = fc.array(fc.tuple(fc.boolean(), fromPiece), { minLength: 1, maxLength: 4 }).map((items) => items.map(([not, p]) => (not ? `!${p}` : p)).join(','));

function ipv4Number(address: string): number {
  return address.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

describe('from= patterns', () => {
  test.prop([fc.oneof(fromList, anyText), fc.oneof(ipv4, ipv6, ipv4.map((ip) => `::ffff:${ip}`), anyText)], RUNS)(
    'are a pattern or an Error, never a throw, and matching never throws',
    (source, address) => {
      const pattern = parseFromPattern(source);
      if (pattern instanceof Error) return;
      accepted.fromPatterns++;
      expect(typeof pattern.matches(address)).toBe('boolean');
    },
  );

  test.prop([ipv4, fc.integer({ min: 0, max: 32 }), ipv4], RUNS)('match an IPv4 block exactly when the address is in it, or name the block to write', (ip, bits, address) => {
    const pattern = parseFromPattern(`${ip}/${bits}`);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const network = (ipv4Number(ip) & mask) >>> 0;
    if (network !== ipv4Number(ip)) {
      expect(pattern).toBeInstanceOf(Error);
      const written = /write "([^"]+)"/.exec((pattern as Error).message)?.[1];
      expect(written).toBeDefined();
      expect(parseFromPattern(written!)).not.toBeInstanceOf(Error);
      return;
    }
    expect(pattern).not.toBeInstanceOf(Error);
    const inside = ((ipv4Number(address) & mask) >>> 0) === network;
    expect((pattern as Exclude<typeof pattern, Error>).matches(address)).toBe(inside);
    expect((pattern as Exclude<typeof pattern, Error>).matches(`::ffff:${address}`)).toBe(inside);
    // The same block written in IPv4-mapped form means the same thing.
    const mapped = parseFromPattern(`::ffff:${ip}/${bits + 96}`);
    expect((mapped as Exclude<typeof mapped, Error>).matches(address)).toBe(inside);
  });
});

// A fuzzer that only ever reaches rejections proves little: each parser must have accepted inputs too.
afterAll(() => {
  expect(accepted.commands).toBeGreaterThan(100);
  expect(accepted.walNames).toBeGreaterThan(100);
  expect(accepted.keyLines).toBeGreaterThan(100);
  expect(accepted.fromPatterns).toBeGreaterThan(100);
  console.log(`accepted inputs: ${JSON.stringify(accepted)}`);
});
