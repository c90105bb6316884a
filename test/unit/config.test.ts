import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_LIMITS, parseConfig, parseDuration, parseListenAddress, parseSize, type Config } from '../../src/config.js';

const FILE = '/etc/walhub/walhub.toml';

function problemsOf(text: string, file = FILE): readonly string[] {
  try {
    parseConfig(text, file);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error(`accepted:\n${text}`);
}

describe('parseConfig', () => {
  it('fills in every default from an empty file, paths beside the config directory', () => {
    const config = parseConfig('', FILE);
    expect(config).toEqual<Config>({
      file: FILE,
      listen: [{ host: '127.0.0.1', port: 2222 }],
      user: 'walhub',
      hostKeys: ['/etc/keys/ssh_host_ed25519_key'],
      authorizedKeys: '/etc/keys/authorized_keys',
      archive: '/etc/var/archive',
      auditLog: '/etc/var/log/audit.log',
      servers: {},
      limits: DEFAULT_LIMITS,
      fipsAlgorithms: false,
      proxy: { trusted: [], drainTime: 5_000 },
      cache: { memory: 256 * 1024 * 1024, readahead: 4, preallocate: false },
    });
  });

  it('has OpenSSH-like default limits', () => {
    expect(parseConfig('', FILE).limits).toEqual({
      loginGraceTime: 60_000,
      maxAuthTries: 6,
      maxSessions: 10,
      maxStartups: 512,
      startupsDropFrom: 128,
      startupsDropRate: 30,
      maxConnections: 100,
      maxTransfers: 64,
      idleTimeout: 300_000,
      perSourceMaxStartups: 10,
      perSourceMaxConnections: 20,
      perSourceIpv6Prefix: 64,
      penaltyAuthFailure: 5_000,
      penaltyLoginTimeout: 10_000,
      penaltyNoAuth: 1_000,
      penaltyMin: 15_000,
      penaltyMax: 600_000,
      penaltyExempt: [],
      maxDecodeWindow: 16 * 1024 * 1024,
      maxSegmentSize: 64 * 1024 * 1024,
      maxTransfersPerKey: 8,
      stallTimeout: 60_000,
      sessionStartTimeout: 10_000,
    });
  });

  it('reads a full configuration', () => {
    const config = parseConfig(
      `
listen = ["0.0.0.0:22", "[::]:22"]
user = "wal"
host_keys = ["/etc/walhub/ssh_host_ed25519_key", "keys/ssh_host_rsa_key"]
authorized_keys = "keys/authorized_keys"
archive = "/var/lib/barman"
audit_log = "../../var/log/walhub/audit.log"
fips_algorithms = true

[servers.pg1]
path = "/srv/barman/pg1"

[servers."pg-2.main"]
path = "elsewhere/pg2"

[limits]
login_grace_time = "30s"
max_auth_tries = 3
max_sessions = 4
max_startups = "20:50:80"
max_connections = 200
max_transfers = 8
idle_timeout = "10m"
per_source_max_startups = 3
per_source_max_connections = 6
per_source_ipv6_prefix = 56
penalty_auth_failure = "30s"
penalty_login_timeout = "1m"
penalty_no_auth = "3s"
penalty_min = "1m"
penalty_max = "1h"
penalty_exempt = ["203.0.113.7", "10.1.0.0/16", "2001:db8:7::/48"]
max_decode_window = "8MiB"
max_segment_size = "1GiB"
max_transfers_per_key = 4
stall_timeout = "2m"
session_start_timeout = "5s"

[proxy]
trusted = ["10.0.0.5", "10.0.9.0/24", "2001:db8::/48"]
drain_time = "3s"

[cache]
memory = "1GiB"
readahead = 8
preallocate = true
`,
      FILE,
    );
    expect(config).toEqual<Config>({
      file: FILE,
      listen: [
        { host: '0.0.0.0', port: 22 },
        { host: '::', port: 22 },
      ],
      user: 'wal',
      hostKeys: ['/etc/walhub/ssh_host_ed25519_key', '/etc/walhub/keys/ssh_host_rsa_key'],
      authorizedKeys: '/etc/walhub/keys/authorized_keys',
      archive: '/var/lib/barman',
      auditLog: '/var/log/walhub/audit.log',
      servers: { pg1: { path: '/srv/barman/pg1' }, 'pg-2.main': { path: '/etc/walhub/elsewhere/pg2' } },
      limits: {
        loginGraceTime: 30_000,
        maxAuthTries: 3,
        maxSessions: 4,
        maxStartups: 80,
        startupsDropFrom: 20,
        startupsDropRate: 50,
        maxConnections: 200,
        maxTransfers: 8,
        idleTimeout: 600_000,
        perSourceMaxStartups: 3,
        perSourceMaxConnections: 6,
        perSourceIpv6Prefix: 56,
        penaltyAuthFailure: 30_000,
        penaltyLoginTimeout: 60_000,
        penaltyNoAuth: 3_000,
        penaltyMin: 60_000,
        penaltyMax: 3_600_000,
        penaltyExempt: ['203.0.113.7', '10.1.0.0/16', '2001:db8:7::/48'],
        maxDecodeWindow: 8 * 1024 * 1024,
        maxSegmentSize: 1024 * 1024 * 1024,
        maxTransfersPerKey: 4,
        stallTimeout: 120_000,
        sessionStartTimeout: 5_000,
      },
      fipsAlgorithms: true,
      proxy: { trusted: ['10.0.0.5', '10.0.9.0/24', '2001:db8::/48'], drainTime: 3_000 },
      cache: { memory: 1024 * 1024 * 1024, readahead: 8, preallocate: true },
    });
  });

  it('reads max_startups as a bare number like sshd: a hard cap with no random drops', () => {
    const { limits } = parseConfig('[limits]\nmax_startups = 64\n', FILE);
    expect([limits.startupsDropFrom, limits.startupsDropRate, limits.maxStartups]).toEqual([64, 100, 64]);
  });

  it('takes "0s" as no penalty', () => {
    expect(parseConfig('[limits]\npenalty_auth_failure = "0s"\npenalty_login_timeout = 0\npenalty_no_auth = "0s"\n', FILE).limits).toMatchObject({ penaltyAuthFailure: 0, penaltyLoginTimeout: 0, penaltyNoAuth: 0 });
  });

  it('resolves relative paths against the directory of the config file, not the working directory', () => {
    const config = parseConfig('archive = "archive"\n[servers.pg1]\npath = "./pg1"\n', '/opt/walhub/etc/walhub.toml');
    expect(config.archive).toBe('/opt/walhub/etc/archive');
    expect(config.servers.pg1?.path).toBe('/opt/walhub/etc/pg1');
    expect(config.authorizedKeys).toBe('/opt/walhub/keys/authorized_keys');
  });

  it('takes "0s" as no drain phase', () => {
    expect(parseConfig('[proxy]\ntrusted = ["127.0.0.1"]\ndrain_time = "0s"', FILE).proxy).toEqual({ trusted: ['127.0.0.1'], drainTime: 0 });
  });

  it('takes 0 as the cache turned off, for memory and for readahead', () => {
    expect(parseConfig('[cache]\nmemory = 0\n', FILE).cache).toEqual({ memory: 0, readahead: 4, preallocate: false });
    expect(parseConfig('[cache]\nmemory = "0MiB"\nreadahead = 0\n', FILE).cache).toEqual({ memory: 0, readahead: 0, preallocate: false });
  });

  it('returns a frozen object', () => {
    const config = parseConfig('[servers.pg1]\npath = "/x"\n', FILE);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.limits)).toBe(true);
    expect(Object.isFrozen(config.servers)).toBe(true);
    expect(Object.isFrozen(config.servers.pg1)).toBe(true);
    expect(Object.isFrozen(config.proxy.trusted)).toBe(true);
  });

  it.each([
    ['an unknown top-level key', 'listne = ["127.0.0.1:2222"]', `${FILE}: listne: unknown key (expected one of listen, user, host_keys, authorized_keys, archive, audit_log, servers, limits, fips_algorithms, metrics, proxy, cache)`],
    [
      'an unknown limits key',
      '[limits]\nmax_auth_try = 3',
      `${FILE}: limits.max_auth_try: unknown key (expected one of login_grace_time, max_auth_tries, max_sessions, max_startups, max_connections, max_transfers, idle_timeout, per_source_max_startups, per_source_max_connections, per_source_ipv6_prefix, penalty_auth_failure, penalty_login_timeout, penalty_no_auth, penalty_min, penalty_max, max_decode_window, max_segment_size, max_transfers_per_key, stall_timeout, session_start_timeout, penalty_exempt)`,
    ],
    ['a duration in words', '[limits]\nlogin_grace_time = "30 seconds"', `${FILE}: limits.login_grace_time: expected a duration like "30s", "5m" or "1h", from 1s to 576h`],
    ['a duration in days', '[limits]\nidle_timeout = "1d"', `${FILE}: limits.idle_timeout: expected a duration like "30s", "5m" or "1h", from 1s to 576h`],
    ['a negative duration', '[limits]\nidle_timeout = -5', `${FILE}: limits.idle_timeout: expected a duration like "30s", "5m" or "1h", from 1s to 576h`],
    ['a fractional duration', '[limits]\nidle_timeout = 1.5', `${FILE}: limits.idle_timeout: expected a duration like "30s", "5m" or "1h", from 1s to 576h`],
    ['a stall timeout of 0', '[limits]\nstall_timeout = "0s"', `${FILE}: limits.stall_timeout: expected a duration like "30s", "5m" or "1h", from 1s to 576h`],
    ['a per-key cap of 0', '[limits]\nmax_transfers_per_key = 0', `${FILE}: limits.max_transfers_per_key: expected a whole number from 1 to 100000`],
    ['a count of 0', '[limits]\nmax_auth_tries = 0', `${FILE}: limits.max_auth_tries: expected a whole number from 1 to 100000`],
    ['a fractional count', '[limits]\nmax_sessions = 2.5', `${FILE}: limits.max_sessions: expected a whole number from 1 to 100000`],
    ['a count as a string', '[limits]\nmax_sessions = "10"', `${FILE}: limits.max_sessions: expected a whole number from 1 to 100000`],
    ['a count too large', '[limits]\nmax_connections = 100001', `${FILE}: limits.max_connections: expected a whole number from 1 to 100000`],
    ...['"10:30"', '"100:30:10"', '"10:101:100"', '"0:30:100"', '"10:30:100:5"', '0'].map((value) => [
      `max_startups = ${value}`,
      `[limits]\nmax_startups = ${value}`,
      `${FILE}: limits.max_startups: expected a whole number from 1 to 100000, or "start:rate:full" like "128:30:512" (start <= full, rate a percentage)`,
    ]),
    ['a penalty in words', '[limits]\npenalty_auth_failure = "a while"', `${FILE}: limits.penalty_auth_failure: expected a duration like "5s" or "1m", up to 576h, or "0s" for no penalty`],
    ['an IPv6 prefix of 129 bits', '[limits]\nper_source_ipv6_prefix = 129', `${FILE}: limits.per_source_ipv6_prefix: expected a prefix length from 1 to 128`],
    ['a penalty minimum above its maximum', '[limits]\npenalty_min = "2m"\npenalty_max = "1m"', `${FILE}: limits.penalty_min: must not be longer than limits.penalty_max`],
    ['fips_algorithms as a string', 'fips_algorithms = "yes"', `${FILE}: fips_algorithms: expected true or false`],
    ['a window that is not a power of two', '[limits]\nmax_decode_window = "12MiB"', `${FILE}: limits.max_decode_window: expected a power-of-two size like "8MiB" or "16MiB", from 1MiB to 1GiB`],
    ['a window in decimal megabytes', '[limits]\nmax_decode_window = "16MB"', `${FILE}: limits.max_decode_window: expected a power-of-two size like "8MiB" or "16MiB", from 1MiB to 1GiB`],
    ['a window above 1 GiB', '[limits]\nmax_decode_window = "2GiB"', `${FILE}: limits.max_decode_window: expected a power-of-two size like "8MiB" or "16MiB", from 1MiB to 1GiB`],
    ['a segment size below 1 MiB', '[limits]\nmax_segment_size = "512KiB"', `${FILE}: limits.max_segment_size: expected a power-of-two size like "16MiB" or "64MiB", from 1MiB to 1GiB`],
    ['a segment size above 1 GiB', '[limits]\nmax_segment_size = "2GiB"', `${FILE}: limits.max_segment_size: expected a power-of-two size like "16MiB" or "64MiB", from 1MiB to 1GiB`],
    ['a segment size as a negative number', '[limits]\nmax_segment_size = -1', `${FILE}: limits.max_segment_size: expected a power-of-two size like "16MiB" or "64MiB", from 1MiB to 1GiB`],
    ['a port alone', 'listen = ["2222"]', `${FILE}: listen: expected "host:port" or "[ipv6]:port", got "2222"`],
    ['an IPv6 address without brackets', 'listen = ["::1:2222"]', `${FILE}: listen: expected "host:port" or "[ipv6]:port", got "::1:2222"`],
    ['a port above 65535', 'listen = ["127.0.0.1:65536"]', `${FILE}: listen: expected "host:port" or "[ipv6]:port", got "127.0.0.1:65536"`],
    ['listen as a string', 'listen = "127.0.0.1:2222"', `${FILE}: listen: expected a list of strings`],
    ['an empty listen list', 'listen = []', `${FILE}: listen: expected at least one address`],
    ['an empty host key list', 'host_keys = []', `${FILE}: host_keys: expected at least one host key file`],
    ['a number for a path', 'archive = 5', `${FILE}: archive: expected a non-empty string`],
    ['an empty path', 'audit_log = ""', `${FILE}: audit_log: expected a non-empty string`],
    ['a user name with a shell character', 'user = "wal;hub"', `${FILE}: user: expected a login name like "walhub"`],
    ['limits that are not a table', 'limits = 5', `${FILE}: limits: expected a table`],
    ['servers that are not a table', 'servers = "pg1"', `${FILE}: servers: expected a table of [servers.<id>]`],
    [
      'a server ID with a path',
      '[servers."../x"]\npath = "/x"',
      `${FILE}: servers.../x: a server ID is letters, digits, ".", "_" and "-", starting with a letter or digit`,
    ],
    [
      'a hidden server ID',
      '[servers.".hidden"]\npath = "/x"',
      `${FILE}: servers..hidden: a server ID is letters, digits, ".", "_" and "-", starting with a letter or digit`,
    ],
    ['a server without a path', '[servers.pg1]\ndir = "/x"', `${FILE}: servers.pg1.path: expected a directory path`],
    ['a server with an empty path', '[servers.pg1]\npath = ""', `${FILE}: servers.pg1.path: expected a directory path`],
    ['proxy that is not a table', 'proxy = "10.0.0.5"', `${FILE}: proxy: expected a table`],
    ['an unknown proxy key', '[proxy]\ntrusted_hosts = ["10.0.0.5"]', `${FILE}: proxy.trusted_hosts: unknown key (expected one of trusted, drain_time)`],
    ['a host name as a penalty exemption', '[limits]\npenalty_exempt = ["standby1.example.net"]', `${FILE}: limits.penalty_exempt: expected an IP address or CIDR block like "10.0.9.0/24", got "standby1.example.net"`],
    ['a penalty exemption that is not a list', '[limits]\npenalty_exempt = "10.1.0.0/16"', `${FILE}: limits.penalty_exempt: expected a list of strings`],
    ['a host name as a trusted proxy', '[proxy]\ntrusted = ["lb1.example.net"]', `${FILE}: proxy.trusted: expected an IP address or CIDR block like "10.0.9.0/24", got "lb1.example.net"`],
    ['a CIDR block with a prefix too long', '[proxy]\ntrusted = ["10.0.9.0/33"]', `${FILE}: proxy.trusted: expected an IP address or CIDR block like "10.0.9.0/24", got "10.0.9.0/33"`],
    ['a CIDR block with two prefixes', '[proxy]\ntrusted = ["10.0.9.0/24/8"]', `${FILE}: proxy.trusted: expected an IP address or CIDR block like "10.0.9.0/24", got "10.0.9.0/24/8"`],
    ['trusted proxies as a string', '[proxy]\ntrusted = "10.0.0.5"', `${FILE}: proxy.trusted: expected a list of strings`],
    ['a drain time in words', '[proxy]\ndrain_time = "a few seconds"', `${FILE}: proxy.drain_time: expected a duration like "5s", up to 10m, or "0s" for none`],
    ['a drain time over ten minutes', '[proxy]\ndrain_time = "11m"', `${FILE}: proxy.drain_time: expected a duration like "5s", up to 10m, or "0s" for none`],
    ['cache that is not a table', 'cache = "256MiB"', `${FILE}: cache: expected a table`],
    ['an unknown cache key', '[cache]\nsize = "256MiB"', `${FILE}: cache.size: unknown key (expected one of memory, readahead, preallocate)`],
    ['a preallocate as a string', '[cache]\npreallocate = "yes"', `${FILE}: cache.preallocate: expected true or false`],
    ['a cache memory in words', '[cache]\nmemory = "lots"', `${FILE}: cache.memory: expected a size like "256MiB" or "1GiB", up to 64GiB, or 0 to turn the cache off`],
    ['a cache memory above 64GiB', '[cache]\nmemory = "65GiB"', `${FILE}: cache.memory: expected a size like "256MiB" or "1GiB", up to 64GiB, or 0 to turn the cache off`],
    ['a negative readahead', '[cache]\nreadahead = -1', `${FILE}: cache.readahead: expected a whole number of segments from 0 (off) to 64`],
    ['a readahead as a string', '[cache]\nreadahead = "4"', `${FILE}: cache.readahead: expected a whole number of segments from 0 (off) to 64`],
    ['a readahead above 64', '[cache]\nreadahead = 65', `${FILE}: cache.readahead: expected a whole number of segments from 0 (off) to 64`],
    ['a server key other than path', '[servers.pg1]\npath = "/x"\ncompression = "gzip"', `${FILE}: servers.pg1.compression: unknown key (expected path)`],
  ])('refuses %s with one line naming the file and the key', (_what, text, problem) => {
    expect(problemsOf(text)).toEqual([problem]);
  });

  it('reports every problem at once', () => {
    const problems = problemsOf(`
listen = ["nowhere"]
colour = "blue"
[servers."a/b"]
path = "/x"
[limits]
login_grace_time = "soon"
max_auth_tries = -1
`);
    expect(problems).toEqual([
      `${FILE}: colour: unknown key (expected one of listen, user, host_keys, authorized_keys, archive, audit_log, servers, limits, fips_algorithms, metrics, proxy, cache)`,
      `${FILE}: listen: expected "host:port" or "[ipv6]:port", got "nowhere"`,
      `${FILE}: servers.a/b: a server ID is letters, digits, ".", "_" and "-", starting with a letter or digit`,
      `${FILE}: limits.login_grace_time: expected a duration like "30s", "5m" or "1h", from 1s to 576h`,
      `${FILE}: limits.max_auth_tries: expected a whole number from 1 to 100000`,
    ]);
  });

  it('puts every problem in the error message too, one a line', () => {
    try {
      parseConfig('a = 1\nb = 2\n', FILE);
      throw new Error('accepted');
    } catch (error) {
      expect((error as Error).message).toBe(`${FILE}: a: unknown key (expected one of listen, user, host_keys, authorized_keys, archive, audit_log, servers, limits, fips_algorithms, metrics, proxy, cache)\n${FILE}: b: unknown key (expected one of listen, user, host_keys, authorized_keys, archive, audit_log, servers, limits, fips_algorithms, metrics, proxy, cache)`);
    }
  });

  it.each([
    ['an unquoted string on line 2', 'listen = ["127.0.0.1:2222"]\nuser = walhub\n', 2],
    ['an unclosed list, noticed at the end of input on line 4', '\n\nlisten = ["127.0.0.1:2222"\n', 4],
    ['a duplicate key on line 2', 'user = "a"\nuser = "b"\n', 2],
  ])('reports a TOML syntax error with its line: %s', (_what, text, line) => {
    const problems = problemsOf(text);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(new RegExp(`^${FILE.replace(/\./g, '\\.')}:${line}:\\d+: `));
  });

  it('refuses a duration too long for a timer (Node fires timers over 2^31-1 ms at once)', () => {
    expect(problemsOf('[limits]\nidle_timeout = "1000h"')).toEqual([
      `${FILE}: limits.idle_timeout: expected a duration like "30s", "5m" or "1h", from 1s to 576h`,
    ]);
  });

  it.each(['login_grace_time', 'idle_timeout'])(
    'refuses a zero %s (the listener would drop every connection at once)',
    (key) => {
      expect(problemsOf(`[limits]\n${key} = "0s"`)).toHaveLength(1);
    },
  );
});

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['250ms', 250],
    ['45', 45_000],
    [' 30s ', 30_000],
    [45, 45_000],
  ] as const)('reads %j as %i ms', (value, ms) => {
    expect(parseDuration(value)).toBe(ms);
  });

  it.each([['1d'], ['-5s'], ['1.5s'], ['30 s'], ['s'], [''], ['30S'], [1.5], [-1], [true], [null], [undefined], [['30s']]])(
    'refuses %j',
    (value) => {
      expect(parseDuration(value)).toBeUndefined();
    },
  );
});

describe('parseListenAddress', () => {
  it.each([
    ['127.0.0.1:2222', '127.0.0.1', 2222],
    ['0.0.0.0:22', '0.0.0.0', 22],
    ['[::1]:2222', '::1', 2222],
    ['[::]:22', '::', 22],
    ['[2001:db8::10]:2222', '2001:db8::10', 2222],
    ['[::ffff:10.1.2.3]:2222', '::ffff:10.1.2.3', 2222],
    ['localhost:2222', 'localhost', 2222],
    ['backup.example.com:22', 'backup.example.com', 22],
    ['127.0.0.1:65535', '127.0.0.1', 65535],
  ])('reads %s', (text, host, port) => {
    expect(parseListenAddress(text)).toEqual({ host, port });
  });

  it.each([
    ['2222'],
    ['127.0.0.1'],
    ['127.0.0.1:'],
    [':2222'],
    ['[::1]'],
    ['::1:2222'],
    ['[::1]2222'],
    ['127.0.0.1:65536'],
    ['127.0.0.1:123456'],
    ['127.0.0.1:-1'],
    ['127.0.0.1:22x'],
    ['[fe80::1%eth0]:22'],
    [''],
  ])('refuses %j', (text) => {
    expect(parseListenAddress(text)).toBeUndefined();
  });

  it.each([[' 127.0.0.1:2222'], ['127.0.0.1 :2222'], ['local host:2222']])(
    'refuses a host with blanks in it (%j would fail only later, at bind)',
    (text) => {
      expect(parseListenAddress(text)).toBeUndefined();
    },
  );
});

describe('parseSize', () => {
  it.each([
    ['16MiB', 16 * 1024 * 1024],
    ['512KiB', 512 * 1024],
    ['1GiB', 1024 * 1024 * 1024],
    ['1 GiB', 1024 * 1024 * 1024],
    ['4096', 4096],
    [4096, 4096],
  ])('reads %j', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each([['16MB'], ['16mib'], ['1.5MiB'], ['-1MiB'], [''], ['MiB'], [1.5], [-1], [true], ['99999999999999GiB']])('refuses %j', (text) => {
    expect(parseSize(text)).toBeUndefined();
  });
});

describe('[metrics]', () => {
  it('is off when absent', () => {
    expect(parseConfig('', FILE).metrics).toBeUndefined();
  });

  it('reads the listen address', () => {
    expect(parseConfig('[metrics]\nlisten = "127.0.0.1:9187"\n', FILE).metrics).toEqual({ listen: { host: '127.0.0.1', port: 9187 } });
    expect(parseConfig('[metrics]\nlisten = "[::1]:9187"\n', FILE).metrics).toEqual({ listen: { host: '::1', port: 9187 } });
  });

  it.each([
    ['a bad address', '[metrics]\nlisten = "9187"', `${FILE}: metrics.listen: expected "host:port" or "[ipv6]:port", like "127.0.0.1:9187"`],
    ['a missing address', '[metrics]\n', `${FILE}: metrics.listen: expected "host:port" or "[ipv6]:port", like "127.0.0.1:9187"`],
    ['an unknown key', '[metrics]\nlisten = "127.0.0.1:9187"\npath = "/m"', `${FILE}: metrics.path: unknown key (expected listen)`],
    ['a value that is not a table', 'metrics = "on"', `${FILE}: metrics: expected a table`],
  ])('refuses %s', (_what, text, problem) => {
    expect(problemsOf(text)).toEqual([problem]);
  });
});
