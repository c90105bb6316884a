import { describe, expect, it } from 'vitest';
import { findKeyLines, parseExpiry, setKeyOption } from '../../src/keys/key-lines.js';
import { parseTimeBound, parseAuditFilter, matchesFilter, toRemoteAddress } from '../../src/audit/audit-filter.js';
import { createAuditSummary } from '../../src/audit/audit-summary.js';
import { fitWidths, formatBytes, formatTable } from '../../src/cli/table.js';
import { toAuthFailureReason } from '../../src/metrics/metrics.js';

// A real ed25519 public key (made by ssh-keygen for these tests).
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZw5dcR+IsuaSOJMfAP5jCbxrVBzy8tw1uzOGIC0dcW';
const NOW = new Date(2026, 10, 30, 12, 0, 0).getTime(); // local time, as expiry-time is

describe('parseExpiry', () => {
  it.each([
    ['2027-12-31', '20271231'],
    ['20271231', '20271231'],
    ['202712311800', '202712311800'],
    ['20271231180059', '20271231180059'],
    ['90d', '202702281200'],
    ['2w', '202612141200'],
    ['36h', '202612020000'],
  ])('%s -> expiry-time="%s"', (text, expected) => {
    expect(parseExpiry(text, NOW)).toBe(expected);
  });

  it.each(['2027-02-30', '20271301', 'tomorrow', '90', '-1d', '2027-1-1'])('refuses %s', (text) => {
    expect(() => parseExpiry(text, NOW)).toThrow(/--expires/);
  });
});

describe('setKeyOption', () => {
  const line = (text: string) => findKeyLines(text)[0]!;

  it('replaces a value in place and keeps the other options and the comment', () => {
    const original = `no-pty,servers="pg1",from="10.0.0.0/8,!10.0.0.9" ${KEY} standby a`;
    expect(setKeyOption(line(original), 'servers', 'pg2,pg3')).toBe(`no-pty,servers="pg2,pg3",from="10.0.0.0/8,!10.0.0.9" ${KEY} standby a`);
  });

  it('removes an option and adds one at the end', () => {
    const original = `servers="pg1",from="10.0.0.0/8" ${KEY} a`;
    const removed = setKeyOption(line(original), 'from', undefined);
    expect(removed).toBe(`servers="pg1" ${KEY} a`);
    expect(setKeyOption(line(removed), 'expiry-time', '20270101')).toBe(`servers="pg1",expiry-time="20270101" ${KEY} a`);
  });

  it('refuses a value the server would refuse', () => {
    expect(() => setKeyOption(line(`servers="pg1" ${KEY} a`), 'servers', 'a/b')).toThrow('servers=: "a/b" is not a server ID');
  });
});

describe('audit filters', () => {
  const request = { event: 'request', time: '2026-11-30T10:00:00.000Z', remote: '10.1.2.3:50000', key: 'SHA256:abc', key_name: 'standby-a', server: 'pg1', wal: '000000010000000000000003', result: 'ok' };

  it('reads relative and ISO times', () => {
    const now = Date.parse('2026-12-01T00:00:00Z');
    expect(parseTimeBound('2h', now)).toBe('2026-11-30T22:00:00.000Z');
    expect(parseTimeBound('7d', now)).toBe('2026-11-24T00:00:00.000Z');
    expect(parseTimeBound('2026-11-30T10:00:00Z', now)).toBe('2026-11-30T10:00:00.000Z');
    expect(parseTimeBound('yesterday', now)).toBeUndefined();
  });

  it.each([
    [{ since: '2026-11-30T09:00:00Z', until: '2026-11-30T11:00:00Z' }, true],
    [{ since: '2026-11-30T10:00:01Z' }, false],
    [{ server: 'pg2,pg1' }, true],
    [{ server: 'pg2' }, false],
    [{ key: 'standby-a' }, true],
    [{ key: 'SHA256:abc' }, true],
    [{ key: 'standby-b' }, false],
    [{ remote: '10.1.0.0/16' }, true],
    [{ remote: '10.1.2.3' }, true],
    [{ remote: '10.1.0.0/16,!10.1.2.3' }, false],
    [{ result: 'not_found,denied' }, false],
    [{ wal: '000000010000000000000003', event: 'request' }, true],
    [{ event: 'auth' }, false],
  ])('%j matches: %s', (options, expected) => {
    const filter = parseAuditFilter(options, Date.now());
    if (filter instanceof Error) throw filter;
    expect(matchesFilter(request, filter)).toBe(expected);
  });

  it('names the option that is wrong', () => {
    expect((parseAuditFilter({ since: 'later' }, 0) as Error).message).toBe('--since "later": expected an ISO time (2026-11-30T10:00:00Z) or an age like 2h or 7d');
    expect((parseAuditFilter({ remote: '10.0.0.0/40' }, 0) as Error).message).toBe('--remote: bad CIDR block "10.0.0.0/40"');
  });

  it('takes the address out of ip:port and [ipv6]:port', () => {
    expect(toRemoteAddress('10.1.2.3:5')).toBe('10.1.2.3');
    expect(toRemoteAddress('[::1]:5')).toBe('::1');
  });
});

describe('the audit summary', () => {
  it('counts requests, bytes and failures per key and server, and refused logins per key and reason', () => {
    const summary = createAuditSummary();
    const base = { event: 'request', key_name: 'a', server: 'pg1', bytes: 100, result: 'ok' };
    summary.add({ ...base, time: 't1' });
    summary.add({ ...base, time: 't2', result: 'not_found', bytes: 0 });
    summary.add({ ...base, time: 't3', server: 'pg2' });
    summary.add({ event: 'auth', result: 'refused', key: 'SHA256:x', reason: 'key not authorized', time: 't4' });
    summary.add({ event: 'auth', result: 'ok', key_name: 'a', time: 't5' });
    expect(summary.requests()).toEqual([
      { key: 'a', server: 'pg1', requests: 2, bytes: 100, failures: { not_found: 1 }, first: 't1', last: 't2' },
      { key: 'a', server: 'pg2', requests: 1, bytes: 100, failures: {}, first: 't3', last: 't3' },
    ]);
    expect(summary.refusals()).toEqual([{ key: 'SHA256:x', reason: 'key not authorized', count: 1, first: 't4', last: 't4' }]);
  });
});

describe('tables', () => {
  it('cut the shrinkable columns, widest first, to fit the width', () => {
    const columns = [{ title: 'A' }, { title: 'B', shrinkTo: 3 }, { title: 'C', shrinkTo: 3 }];
    expect(fitWidths(columns, [['x', 'b'.repeat(10), 'c'.repeat(6)]], 12)).toEqual([1, 4, 5]);
    expect(formatTable(columns, [['x', 'b'.repeat(10), 'c'.repeat(6)]], 12)).toBe('A B    C\nx bbb… cccc…\n');
  });

  it.each([
    [0, '0'],
    [1023, '1023'],
    [1536, '1.5K'],
    [16 * 1024 * 1024, '16M'],
    [3 * 1024 ** 4, '3.0T'],
  ])('formats %d bytes as %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('metrics labels', () => {
  it.each([
    ['key not authorized', 'key_not_authorized'],
    ['address not allowed by from="10.0.0.0/8"', 'address_not_allowed'],
    ['method password not allowed', 'method_not_allowed'],
    ['anything a future version says', 'other'],
  ])('auth reason %j -> %s', (reason, label) => {
    expect(toAuthFailureReason(reason)).toBe(label);
  });
});
