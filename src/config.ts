import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import toml from 'toml';
import {
  isAddressOrBlock,
  parseCount,
  parseDuration,
  parseIpv6Prefix,
  parseListenAddress,
  parseSize,
  parsePenalty,
  parsePowerOfTwoSize,
  parseStartups,
  parseTimeout,
} from './config-values.js';

export { parseDuration, parseListenAddress, parseSize } from './config-values.js';

/** Caps and timeouts, all in one place (DESIGN.md: the listener owns them). */
export interface Limits {
  /** ms an unauthenticated connection may take to log in (sshd LoginGraceTime). */
  readonly loginGraceTime: number;
  /** authentication attempts per connection (sshd MaxAuthTries). */
  readonly maxAuthTries: number;
  /** sessions (channels) open at once per connection (sshd MaxSessions). */
  readonly maxSessions: number;
  /** unauthenticated connections at once (sshd MaxStartups "full"). */
  readonly maxStartups: number;
  /** from this many unauthenticated connections on, new ones are dropped at random (MaxStartups "start"). */
  readonly startupsDropFrom: number;
  /** percent of new connections dropped at startupsDropFrom, rising to 100 at maxStartups (MaxStartups "rate"). */
  readonly startupsDropRate: number;
  /** authenticated connections at once; a new connection is refused at accept while they are all taken. */
  readonly maxConnections: number;
  /** unauthenticated connections at once from one source (sshd PerSourceMaxStartups). */
  readonly perSourceMaxStartups: number;
  /** connections at once from one source, authenticated or not. */
  readonly perSourceMaxConnections: number;
  /** IPv6 sources sharing this many leading bits are one source (sshd PerSourceNetBlockSize); IPv4 is always /32. */
  readonly perSourceIpv6Prefix: number;
  /** ms of penalty for a connection that closed unauthenticated after trying to authenticate (PerSourcePenalties authfail). */
  readonly penaltyAuthFailure: number;
  /** ms of penalty for a connection cut off by login_grace_time or the ident timeout (PerSourcePenalties grace-exceeded). */
  readonly penaltyLoginTimeout: number;
  /** ms of penalty for a connection that closed before login without trying to authenticate (PerSourcePenalties noauth). */
  readonly penaltyNoAuth: number;
  /** a source is refused at accept only once its penalty reaches this many ms (PerSourcePenalties min). */
  readonly penaltyMin: number;
  /** the longest a source is refused at accept (PerSourcePenalties max). */
  readonly penaltyMax: number;
  /** addresses and CIDR blocks never refused for a penalty, only slowed, as a source a standby logged in from is (PerSourcePenaltyExemptList). */
  readonly penaltyExempt: readonly string[];
  /** get-wal transfers at once over all connections. */
  readonly maxTransfers: number;
  /** ms without any traffic after which an authenticated connection is dropped. */
  readonly idleTimeout: number;
  /** bytes: the largest zstd window (and xz dictionary) an archived file may ask a decoder for. */
  readonly maxDecodeWindow: number;
  /** bytes: the largest WAL segment size a page header may claim (initdb --wal-segsize). */
  readonly maxSegmentSize: number;
  /** get-wal transfers at once for one key, over all its connections. */
  readonly maxTransfersPerKey: number;
  /** ms a transfer may go without its client taking any data before it is ended. */
  readonly stallTimeout: number;
  /** ms a session channel may stay open without starting its command. */
  readonly sessionStartTimeout: number;
}

export interface ServerEntry {
  readonly path: string;
}

/** TCP load balancers in front of walhub (README: Running several nodes). */
export interface ProxySettings {
  /** Addresses and CIDR blocks whose connections must begin with a PROXY protocol header. */
  readonly trusted: readonly string[];
  /** ms between SIGTERM and closing the listener, in which the balancer's health checks fail. */
  readonly drainTime: number;
}

/** The readahead cache (src/archive/readahead.ts); off when either is 0. */
export interface CacheSettings {
  /** bytes the cache may hold, decoded WAL cached and being read ahead together. */
  readonly memory: number;
  /** segments decoded ahead of the one a standby was just sent. */
  readonly readahead: number;
  /** take `memory` at start, as 16 MiB blocks to decode zstd segments into, at most half the memory available (src/archive/preallocate.ts). */
  readonly preallocate: boolean;
}

export interface Config {
  readonly file: string;
  readonly listen: readonly { host: string; port: number }[];
  readonly user: string;
  readonly hostKeys: readonly string[];
  readonly authorizedKeys: string;
  readonly archive: string;
  readonly auditLog: string;
  readonly servers: Readonly<Record<string, ServerEntry>>;
  readonly limits: Limits;
  /** Offer the NIST ECDH curves too, for clients under a FIPS crypto policy (ssh-audit fails them). */
  readonly fipsAlgorithms: boolean;
  /** The Prometheus endpoint; absent when [metrics] is not configured. */
  readonly metrics?: { readonly listen: { host: string; port: number } };
  readonly proxy: ProxySettings;
  readonly cache: CacheSettings;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

const MIB = 1024 * 1024;

export const DEFAULT_LIMITS: Limits = Object.freeze({
  loginGraceTime: 60_000,
  maxAuthTries: 6,
  maxSessions: 10,
  // Far above sshd's 10:30:100: an unauthenticated connection costs one Node
  // process little, standbys reconnect together after a hub restart, and a
  // dropped login is ssh's exit 255. Random drops start above max_connections,
  // so a whole fleet of logged-in standbys reconnecting at once never meets them;
  // the per-source caps, not these, keep a single flooding host out.
  maxStartups: 512,
  startupsDropFrom: 128,
  startupsDropRate: 30,
  maxConnections: 100,
  perSourceMaxStartups: 10,
  perSourceMaxConnections: 20,
  perSourceIpv6Prefix: 64,
  // OpenSSH 9.8's PerSourcePenalties defaults (authfail:5s grace-exceeded:10s
  // min:15s max:600s): three failed logins or two timeouts in a row shut a source out.
  penaltyAuthFailure: 5_000,
  penaltyLoginTimeout: 10_000,
  // Each such connection still cost a key exchange (about 2 ms of the event
  // loop): 4 keyless loops of connect, key exchange, close made 290 a second
  // and took 69% of a core. 15 in a row shut the source out; ssh-keyscan (one
  // connection per key type) and a monitoring check a minute never add up.
  penaltyNoAuth: 1_000,
  penaltyMin: 15_000,
  penaltyMax: 600_000,
  penaltyExempt: Object.freeze([]),
  maxTransfers: 64,
  idleTimeout: 300_000,
  // zstd -19 (and --ultra -22) on a 16 MiB segment uses a window of 8-16 MiB;
  // only --long asks for more. Each transfer may hold one such window.
  maxDecodeWindow: 16 * MIB,
  maxSegmentSize: 64 * MIB,
  // barman-wal-restore --parallel 8 fetches 8 files at once with one key.
  maxTransfersPerKey: 8,
  stallTimeout: 60_000,
  sessionStartTimeout: 10_000,
});

export const DEFAULT_PROXY: ProxySettings = Object.freeze({ trusted: Object.freeze([]), drainTime: 5_000 });

export const DEFAULT_CACHE: CacheSettings = Object.freeze({ memory: 256 * MIB, readahead: 4, preallocate: false });
/** Far beyond any useful readahead; the budget, not this, bounds memory. */
const MAX_READAHEAD = 64;
/** Above what a 64-bit host would sensibly give a WAL cache; a typo like "256GiB" is refused, not allocated on demand. */
const MAX_CACHE_MEMORY = 64 * 1024 * MIB;

/** Server IDs are directory names: no separators, no dot-only names. */
export const SERVER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

type Table = Record<string, unknown>;

const TOP_KEYS = ['listen', 'user', 'host_keys', 'authorized_keys', 'archive', 'audit_log', 'servers', 'limits', 'fips_algorithms', 'metrics', 'proxy', 'cache'];
const PROXY_KEYS = ['trusted', 'drain_time'];
const CACHE_KEYS = ['memory', 'readahead', 'preallocate'];
type LimitKind = 'duration' | 'count' | 'startups' | 'ipv6-prefix' | 'penalty' | 'window' | 'segment';
const LIMIT_KEYS: Record<string, { field: keyof Limits; kind: LimitKind }> = {
  login_grace_time: { field: 'loginGraceTime', kind: 'duration' },
  max_auth_tries: { field: 'maxAuthTries', kind: 'count' },
  max_sessions: { field: 'maxSessions', kind: 'count' },
  max_startups: { field: 'maxStartups', kind: 'startups' },
  max_connections: { field: 'maxConnections', kind: 'count' },
  max_transfers: { field: 'maxTransfers', kind: 'count' },
  idle_timeout: { field: 'idleTimeout', kind: 'duration' },
  per_source_max_startups: { field: 'perSourceMaxStartups', kind: 'count' },
  per_source_max_connections: { field: 'perSourceMaxConnections', kind: 'count' },
  per_source_ipv6_prefix: { field: 'perSourceIpv6Prefix', kind: 'ipv6-prefix' },
  penalty_auth_failure: { field: 'penaltyAuthFailure', kind: 'penalty' },
  penalty_login_timeout: { field: 'penaltyLoginTimeout', kind: 'penalty' },
  penalty_no_auth: { field: 'penaltyNoAuth', kind: 'penalty' },
  penalty_min: { field: 'penaltyMin', kind: 'duration' },
  penalty_max: { field: 'penaltyMax', kind: 'duration' },
  max_decode_window: { field: 'maxDecodeWindow', kind: 'window' },
  max_segment_size: { field: 'maxSegmentSize', kind: 'segment' },
  max_transfers_per_key: { field: 'maxTransfersPerKey', kind: 'count' },
  stall_timeout: { field: 'stallTimeout', kind: 'duration' },
  session_start_timeout: { field: 'sessionStartTimeout', kind: 'duration' },
};

/** The one list among the limits: addresses, not a number (see Limits.penaltyExempt). */
const PENALTY_EXEMPT_KEY = 'penalty_exempt';

/** How each kind of limit is read, and what to say when it cannot be; max_startups may set three fields at once. */
const LIMIT_PARSERS: Record<LimitKind, { parse: (value: unknown) => number | Partial<Limits> | undefined; expected: string }> = {
  duration: { parse: (value) => parseTimeout(value), expected: 'expected a duration like "30s", "5m" or "1h", from 1s to 576h' },
  count: { parse: (value) => parseCount(value), expected: 'expected a whole number from 1 to 100000' },
  startups: {
    parse: (value) => parseStartups(value),
    expected: 'expected a whole number from 1 to 100000, or "start:rate:full" like "128:30:512" (start <= full, rate a percentage)',
  },
  'ipv6-prefix': { parse: (value) => parseIpv6Prefix(value), expected: 'expected a prefix length from 1 to 128' },
  penalty: { parse: (value) => parsePenalty(value), expected: 'expected a duration like "5s" or "1m", up to 576h, or "0s" for no penalty' },
  window: { parse: (value) => parsePowerOfTwoSize(value, MIB, 1024 * MIB), expected: 'expected a power-of-two size like "8MiB" or "16MiB", from 1MiB to 1GiB' },
  segment: { parse: (value) => parsePowerOfTwoSize(value, MIB, 1024 * MIB), expected: 'expected a power-of-two size like "16MiB" or "64MiB", from 1MiB to 1GiB' },
};

export function loadConfig(file: string): Config {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError([`${path}: cannot read: ${toReadFailure(error)}`]);
  }
  return parseConfig(text, path);
}

const READ_FAILURES: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'it is a directory, not a file',
  ENOTDIR: 'a part of the path is not a directory',
};

function toReadFailure(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  return (code && READ_FAILURES[code]) ?? code ?? String(error);
}

/** Pure: TOML text -> Config, every problem reported at once with its key path. */
export function parseConfig(text: string, file: string): Config {
  let raw: Table;
  try {
    raw = toml.parse(text) as Table;
  } catch (error) {
    // The toml package reports most positions in `location`, duplicate keys in `line`.
    const e = error as { line?: number; column?: number; location?: { start: { line: number; column: number } }; message: string };
    const line = e.location?.start.line ?? e.line ?? '?';
    const column = e.location?.start.column ?? e.column ?? '?';
    throw new ConfigError([`${file}:${line}:${column}: ${e.message}`]);
  }
  const problems: string[] = [];
  const fail = (key: string, expected: string) => problems.push(`${file}: ${key}: ${expected}`);
  const base = dirname(file);

  for (const key of Object.keys(raw)) {
    if (!TOP_KEYS.includes(key)) fail(key, `unknown key (expected one of ${TOP_KEYS.join(', ')})`);
  }

  const listen = stringList(raw, 'listen', fail, ['127.0.0.1:2222'])
    .map((text) => {
      const address = parseListenAddress(text);
      if (!address) fail('listen', `expected "host:port" or "[ipv6]:port", got ${JSON.stringify(text)}`);
      return address;
    })
    .filter((a): a is { host: string; port: number } => a !== undefined);
  if (listen.length === 0 && !problems.some((p) => p.includes(': listen:'))) fail('listen', 'expected at least one address');

  const user = stringValue(raw, 'user', fail, 'walhub');
  if (!/^[a-z_][a-z0-9_.-]{0,31}$/i.test(user)) fail('user', 'expected a login name like "walhub"');

  const hostKeys = stringList(raw, 'host_keys', fail, ['../keys/ssh_host_ed25519_key']).map((p) => resolve(base, p));
  if (hostKeys.length === 0) fail('host_keys', 'expected at least one host key file');

  const servers: Record<string, ServerEntry> = {};
  const rawServers = raw.servers ?? {};
  if (!isTable(rawServers)) fail('servers', 'expected a table of [servers.<id>]');
  else {
    for (const [id, entry] of Object.entries(rawServers)) {
      if (!SERVER_ID.test(id)) fail(`servers.${id}`, 'a server ID is letters, digits, ".", "_" and "-", starting with a letter or digit');
      if (!isTable(entry) || typeof entry.path !== 'string' || entry.path === '') {
        fail(`servers.${id}.path`, 'expected a directory path');
        continue;
      }
      for (const key of Object.keys(entry)) if (key !== 'path') fail(`servers.${id}.${key}`, 'unknown key (expected path)');
      servers[id] = Object.freeze({ path: resolve(base, entry.path) });
    }
  }

  const limits: Record<string, number | readonly string[]> = { ...DEFAULT_LIMITS };
  const rawLimits = raw.limits ?? {};
  if (!isTable(rawLimits)) fail('limits', 'expected a table');
  else {
    for (const [key, value] of Object.entries(rawLimits)) {
      if (key === PENALTY_EXEMPT_KEY) {
        const entries = stringList(rawLimits, key, (_key, expected) => fail(`limits.${key}`, expected), []);
        for (const entry of entries) if (!isAddressOrBlock(entry)) fail(`limits.${key}`, `expected an IP address or CIDR block like "10.0.9.0/24", got ${JSON.stringify(entry)}`);
        limits.penaltyExempt = Object.freeze([...entries]);
        continue;
      }
      const spec = LIMIT_KEYS[key];
      if (!spec) {
        fail(`limits.${key}`, `unknown key (expected one of ${[...Object.keys(LIMIT_KEYS), PENALTY_EXEMPT_KEY].join(', ')})`);
        continue;
      }
      const parser = LIMIT_PARSERS[spec.kind];
      const parsed = parser.parse(value);
      if (parsed === undefined) fail(`limits.${key}`, parser.expected);
      else if (typeof parsed === 'object') Object.assign(limits, parsed);
      else limits[spec.field] = parsed;
    }
    if ((limits.penaltyMin as number) > (limits.penaltyMax as number)) fail('limits.penalty_min', 'must not be longer than limits.penalty_max');
  }

  const fipsAlgorithms = raw.fips_algorithms ?? false;
  if (typeof fipsAlgorithms !== 'boolean') fail('fips_algorithms', 'expected true or false');

  let metrics: Config['metrics'];
  const rawMetrics = raw.metrics;
  if (rawMetrics !== undefined && !isTable(rawMetrics)) fail('metrics', 'expected a table');
  else if (rawMetrics !== undefined) {
    for (const key of Object.keys(rawMetrics)) if (key !== 'listen') fail(`metrics.${key}`, 'unknown key (expected listen)');
    const address = typeof rawMetrics.listen === 'string' ? parseListenAddress(rawMetrics.listen) : undefined;
    if (!address) fail('metrics.listen', 'expected "host:port" or "[ipv6]:port", like "127.0.0.1:9187"');
    else metrics = Object.freeze({ listen: address });
  }
  const proxy = parseProxy(raw.proxy, fail);
  const cache = parseCache(raw.cache, fail);

  const config: Config = {
    file,
    listen,
    user,
    hostKeys,
    authorizedKeys: resolve(base, stringValue(raw, 'authorized_keys', fail, '../keys/authorized_keys')),
    archive: resolve(base, stringValue(raw, 'archive', fail, '../var/archive')),
    auditLog: resolve(base, stringValue(raw, 'audit_log', fail, '../var/log/audit.log')),
    servers: Object.freeze(servers),
    limits: Object.freeze(limits as unknown as Limits),
    fipsAlgorithms: fipsAlgorithms === true,
    ...(metrics ? { metrics } : {}),
    proxy,
    cache,
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

function parseProxy(value: unknown, fail: Fail): ProxySettings {
  if (value === undefined) return DEFAULT_PROXY;
  if (!isTable(value)) {
    fail('proxy', 'expected a table');
    return DEFAULT_PROXY;
  }
  for (const key of Object.keys(value)) if (!PROXY_KEYS.includes(key)) fail(`proxy.${key}`, `unknown key (expected one of ${PROXY_KEYS.join(', ')})`);
  const trusted = stringList(value, 'trusted', (_key, expected) => fail('proxy.trusted', expected), []);
  for (const entry of trusted) if (!isAddressOrBlock(entry)) fail('proxy.trusted', `expected an IP address or CIDR block like "10.0.9.0/24", got ${JSON.stringify(entry)}`);
  let drainTime = DEFAULT_PROXY.drainTime;
  if (value.drain_time !== undefined) {
    const parsed = parseDuration(value.drain_time);
    if (parsed === undefined || parsed > 600_000) fail('proxy.drain_time', 'expected a duration like "5s", up to 10m, or "0s" for none');
    else drainTime = parsed;
  }
  return Object.freeze({ trusted: Object.freeze([...trusted]), drainTime });
}

function parseCache(value: unknown, fail: Fail): CacheSettings {
  if (value === undefined) return DEFAULT_CACHE;
  if (!isTable(value)) {
    fail('cache', 'expected a table');
    return DEFAULT_CACHE;
  }
  for (const key of Object.keys(value)) if (!CACHE_KEYS.includes(key)) fail(`cache.${key}`, `unknown key (expected one of ${CACHE_KEYS.join(', ')})`);
  let { memory, readahead, preallocate } = DEFAULT_CACHE;
  if (value.memory !== undefined) {
    const parsed = parseSize(value.memory);
    if (parsed === undefined || parsed > MAX_CACHE_MEMORY) fail('cache.memory', 'expected a size like "256MiB" or "1GiB", up to 64GiB, or 0 to turn the cache off');
    else memory = parsed;
  }
  if (value.readahead !== undefined) {
    const parsed = value.readahead;
    if (typeof parsed !== 'number' || !Number.isInteger(parsed) || parsed < 0 || parsed > MAX_READAHEAD) {
      fail('cache.readahead', `expected a whole number of segments from 0 (off) to ${MAX_READAHEAD}`);
    } else readahead = parsed;
  }
  if (value.preallocate !== undefined) {
    if (typeof value.preallocate !== 'boolean') fail('cache.preallocate', 'expected true or false');
    else preallocate = value.preallocate;
  }
  return Object.freeze({ memory, readahead, preallocate });
}

function isTable(value: unknown): value is Table {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

type Fail = (key: string, expected: string) => void;

function stringValue(raw: Table, key: string, fail: Fail, fallback: string): string {
  const value = raw[key];
  if (value === undefined) return fallback;
  if (typeof value === 'string' && value !== '') return value;
  fail(key, 'expected a non-empty string');
  return fallback;
}

function stringList(raw: Table, key: string, fail: Fail, fallback: string[]): string[] {
  const value = raw[key];
  if (value === undefined) return fallback;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' && v !== '')) return value as string[];
  fail(key, 'expected a list of strings');
  return [];
}
