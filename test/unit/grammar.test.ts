import { describe, expect, it } from 'vitest';
import { WalhubError } from '../../src/errors.js';
import { parseCommand, quote, type GetWalRequest } from '../../src/command/grammar.js';

const SEGMENT = '000000010000000000000003';

/** Words as a person types them; no quoting needed in these cases. */
function parse(line: string): GetWalRequest {
  return parseCommand(line.split(' ').filter((w) => w !== ''));
}

function refusal(words: readonly string[]): WalhubError {
  try {
    parseCommand(words);
  } catch (error) {
    expect(error).toBeInstanceOf(WalhubError);
    expect((error as WalhubError).code).toBe('USAGE');
    return error as WalhubError;
  }
  throw new Error(`${JSON.stringify(words)} was accepted`);
}

describe('parseCommand', () => {
  it('reads get-wal SERVER WAL', () => {
    const request = parse(`get-wal pg1 ${SEGMENT}`);
    expect(request).toEqual({
      verb: 'get-wal',
      server: 'pg1',
      wal: { name: SEGMENT, kind: 'segment', timeline: 1, log: 0, seg: 3, segmentName: SEGMENT },
      walText: SEGMENT,
      partial: false,
      test: false,
      gzip: false,
      bzip2: false,
      keepCompression: false,
      fatalErrors: false,
    });
    expect(request).not.toHaveProperty('peek');
  });

  it.each([
    [`get-wal pg1 00000002.history`, 'history'],
    [`get-wal pg1 ${SEGMENT}.partial`, 'partial'],
    [`get-wal pg1 ${SEGMENT}.00000028.backup`, 'backup'],
  ])('reads %s', (line, kind) => {
    expect(parse(line).wal?.kind).toBe(kind);
  });

  it.each([
    ['-P', { partial: true }],
    ['--partial', { partial: true }],
    ['-z', { gzip: true }],
    ['-x', { gzip: true }],
    ['--gzip', { gzip: true }],
    ['-j', { bzip2: true }],
    ['--bzip2', { bzip2: true }],
    ['--keep-compression', { keepCompression: true }],
    ['-P --keep-compression', { partial: true, keepCompression: true }],
    ['-Pz', { partial: true, gzip: true }],
    ['--fatal-errors', { fatalErrors: true }],
    ['--fatal-errors -P', { fatalErrors: true, partial: true }],
  ])('reads the option %s', (options, expected) => {
    expect(parse(`get-wal ${options} pg1 ${SEGMENT}`)).toMatchObject(expected);
  });

  it('takes options after the arguments, as argparse does', () => {
    expect(parse(`get-wal pg1 ${SEGMENT} -P`)).toMatchObject({ partial: true, server: 'pg1' });
  });

  it('takes arguments after --', () => {
    expect(parse(`get-wal -P -- pg1 ${SEGMENT}`)).toMatchObject({ partial: true, server: 'pg1', walText: SEGMENT });
  });

  it.each(['-t', '--test'])('reads %s with barman-wal-restore dummy name', (option) => {
    const request = parse(`get-wal ${option} pg1 dummy_wal_name`);
    expect(request).toMatchObject({ test: true, server: 'pg1', walText: 'dummy_wal_name' });
    expect(request.wal).toBeUndefined();
  });

  it('reads --test with a real WAL name too', () => {
    expect(parse(`get-wal --test pg1 ${SEGMENT}`).wal?.name).toBe(SEGMENT);
  });

  it.each(['-Pt', '-tP'])('reads bundled short options %s', (option) => {
    expect(parse(`get-wal ${option} pg1 dummy_wal_name`)).toMatchObject({ partial: true, test: true });
  });

  it.each([
    ['--peek 4', 4],
    ['-p 4', 4],
    ['--peek=4', 4],
    ['--peek 1', 1],
    ['--peek 9999', 9999],
  ])('reads %s', (option, peek) => {
    expect(parse(`get-wal ${option} pg1 ${SEGMENT}`).peek).toBe(peek);
  });

  it.each([
    ['--peek 0', '--peek expects a whole number from 1 to 9999'],
    ['--peek -1', '--peek expects a whole number from 1 to 9999'],
    ['--peek four', '--peek expects a whole number from 1 to 9999'],
    ['--peek 04', '--peek expects a whole number from 1 to 9999'],
    ['--peek 10000', '--peek expects a whole number from 1 to 9999'],
    ['--peek=', '--peek expects a whole number from 1 to 9999'],
    ['-p 1.5', '-p expects a whole number from 1 to 9999'],
  ])('refuses %s', (option, message) => {
    expect(refusal(['get-wal', ...option.split(' '), 'pg1', SEGMENT]).message).toBe(message);
  });

  it('refuses --peek without a value at the end', () => {
    expect(refusal(['get-wal', 'pg1', SEGMENT, '--peek']).message).toBe('--peek expects a whole number from 1 to 9999');
  });

  it.each([
    ['-z --keep-compression', '--keep-compression cannot be combined with --gzip or --bzip2'],
    ['--gzip --keep-compression', '--keep-compression cannot be combined with --gzip or --bzip2'],
    ['-j --keep-compression', '--keep-compression cannot be combined with --gzip or --bzip2'],
    ['--keep-compression --bzip2', '--keep-compression cannot be combined with --gzip or --bzip2'],
    ['-z -j', '--gzip and --bzip2 cannot be combined'],
    ['-zj', '--gzip and --bzip2 cannot be combined'],
  ])('refuses %s', (options, message) => {
    expect(refusal(['get-wal', ...options.split(' '), 'pg1', SEGMENT]).message).toBe(message);
  });

  it('reads --fatal-errors in the barman form too', () => {
    expect(parseCommand(['barman', 'get-wal', '--fatal-errors', 'pg1', SEGMENT])).toMatchObject({ fatalErrors: true, server: 'pg1' });
  });

  const OUTPUT_REFUSED =
    '--output-directory (-o) is refused: it would write files on the hub; walhub only sends WAL to stdout (redirect it on the standby: get-wal SERVER WAL_NAME > FILE)';

  it.each([
    [['get-wal', '-o', '/tmp', 'pg1', SEGMENT]],
    [['get-wal', '--output-directory', '/tmp', 'pg1', SEGMENT]],
    [['get-wal', '--output-directory=/tmp', 'pg1', SEGMENT]],
    [['get-wal', 'pg1', SEGMENT, '-o', '/tmp']],
    [['get-wal', '-Po', '/tmp', 'pg1', SEGMENT]],
    [['barman', 'get-wal', '-o', '/var/lib/barman', 'pg1', SEGMENT]],
  ])('refuses %j, saying it would write on the hub', (words) => {
    expect(refusal(words).message).toBe(OUTPUT_REFUSED);
  });

  describe('the barman alias (barman-wal-restore)', () => {
    it.each([
      ['barman get-wal'],
      ['barman --config /etc/barman.conf get-wal'],
      ['barman -c /etc/barman.conf get-wal'],
      ['barman --config=/etc/barman.conf get-wal'],
      ['barman -q get-wal'],
    ])('reads %s pg1 WAL', (prefix) => {
      expect(parse(`${prefix} pg1 ${SEGMENT}`)).toMatchObject({ verb: 'get-wal', server: 'pg1', walText: SEGMENT });
    });

    it.each([['list-servers'], ['switch-wal', 'pg1'], ['cron']])(
      'calls barman %s an unknown command, not an unsupported option',
      (...barmanWords) => {
        expect(refusal(['barman', ...barmanWords]).message).toBe(
          `unknown command ${JSON.stringify(barmanWords[0])}: walhub only runs "get-wal SERVER WAL_NAME"`,
        );
      },
    );

    it("reads barman-wal-restore's parallel form", () => {
      const request = parseCommand(['barman', '--config', '/etc/barman.conf', 'get-wal', '--peek', '4', '--partial', 'pg1', SEGMENT]);
      expect(request).toMatchObject({ server: 'pg1', walText: SEGMENT, peek: 4, partial: true });
    });

    it.each([
      [['barman', '--config'], 'barman --config needs a value'],
      [['barman', '-c'], 'barman -c needs a value'],
      [['barman', '--debug', 'get-wal', 'pg1', SEGMENT], 'unsupported barman option "--debug"'],
      [['barman'], 'no command given: walhub only runs "get-wal SERVER WAL_NAME"'],
    ])('refuses %j', (words, message) => {
      expect(refusal(words).message).toBe(message);
    });
  });

  it.each([
    [[], 'no command given: walhub only runs "get-wal SERVER WAL_NAME"'],
    [['cat', '/etc/passwd'], 'unknown command "cat": walhub only runs "get-wal SERVER WAL_NAME"'],
    [['GET-WAL', 'pg1', SEGMENT], 'unknown command "GET-WAL": walhub only runs "get-wal SERVER WAL_NAME"'],
    [['scp', '-f', 'x'], 'unknown command "scp": walhub only runs "get-wal SERVER WAL_NAME"'],
    [['get-wal', '-Pq', 'pg1', SEGMENT], 'unknown option "-q"'],
    [['get-wal', '--partial=yes', 'pg1', SEGMENT], 'unknown option "--partial=yes"'],
    [['get-wal'], 'expected: get-wal [options] SERVER WAL_NAME'],
    [['get-wal', 'pg1'], 'expected: get-wal [options] SERVER WAL_NAME'],
    [['get-wal', '-P', 'pg1'], 'expected: get-wal [options] SERVER WAL_NAME'],
    [['get-wal', 'pg1', SEGMENT, SEGMENT], 'expected: get-wal [options] SERVER WAL_NAME'],
    [['get-wal', '../x', SEGMENT], 'invalid server ID "../x"'],
    [['get-wal', 'a/b', SEGMENT], 'invalid server ID "a/b"'],
    [['get-wal', '.hidden', SEGMENT], 'invalid server ID ".hidden"'],
    [['get-wal', '..', SEGMENT], 'invalid server ID ".."'],
    [['get-wal', '', SEGMENT], 'invalid server ID ""'],
    [['get-wal', '-', SEGMENT], 'invalid server ID "-"'],
    [['get-wal', '--test', '../x', 'dummy_wal_name'], 'invalid server ID "../x"'],
    [['get-wal', 'pg1', '../../etc/passwd'], 'invalid WAL name "../../etc/passwd": expected 24 upper-case hex digits, optionally followed by .partial or .XXXXXXXX.backup, or XXXXXXXX.history'],
    [['get-wal', 'pg1', '00000001000000000000000a'], 'invalid WAL name "00000001000000000000000a": expected 24 upper-case hex digits, optionally followed by .partial or .XXXXXXXX.backup, or XXXXXXXX.history'],
    [['get-wal', 'pg1', 'dummy_wal_name'], 'invalid WAL name "dummy_wal_name": expected 24 upper-case hex digits, optionally followed by .partial or .XXXXXXXX.backup, or XXXXXXXX.history'],
  ])('refuses %j', (words, message) => {
    expect(refusal(words).message).toBe(message);
  });

  it('shows client text on one line, however it was typed', () => {
    const message = refusal(['get-wal', 'pg1', 'a\nb\u001b[31m']).message;
    expect(message).toBe('invalid WAL name "a\\nb\\u001b[31m": expected 24 upper-case hex digits, optionally followed by .partial or .XXXXXXXX.backup, or XXXXXXXX.history');
    expect(message).not.toMatch(/[\n\u001b]/);
  });

  it('cuts long client text short in messages', () => {
    const message = refusal(['get-wal', 'pg1', 'A'.repeat(5000)]).message;
    expect(message).toBe(`invalid WAL name "${'A'.repeat(64)}...": expected 24 upper-case hex digits, optionally followed by .partial or .XXXXXXXX.backup, or XXXXXXXX.history`);
  });

  it('accepts the longest server ID and refuses one character more', () => {
    expect(parse(`get-wal ${'s'.repeat(64)} ${SEGMENT}`).server).toHaveLength(64);
    expect(refusal(['get-wal', 's'.repeat(65), SEGMENT]).message).toBe(`invalid server ID "${'s'.repeat(64)}..."`);
  });
});

describe('quote', () => {
  it.each([
    ['pg1', '"pg1"'],
    ['say "hi"', '"say \\"hi\\""'],
    ['tab\there', '"tab\\there"'],
  ])('quotes %j as %s', (text, quoted) => {
    expect(quote(text)).toBe(quoted);
  });
});
