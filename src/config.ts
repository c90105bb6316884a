import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import toml from 'toml';

/** Caps and timeouts, all in one place (DESIGN.md: the listener owns them). */
export interface Limits {
  /** ms an unauthenticated connection may take to log in (sshd LoginGraceTime). */
  readonly loginGraceTime: number;
  /** authentication attempts per connection (sshd MaxAuthTries). */
  readonly maxAuthTries: number;
  /** sessions (channels) open at once per connection (sshd MaxSessions). */
  readonly maxSessions: number;
  /** unauthenticated connections at once (sshd MaxStartups). */
  readonly maxStartups: number;
  /** connections at once, authenticated or not. */
  readonly maxConnections: number;
  /** get-wal transfers at once over all connections. */
  readonly maxTransfers: number;
  /** ms without any traffic after which an authenticated connection is dropped. */
  readonly idleTimeout: number;
}

export interface ServerEntry {
  readonly path: string;
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
  /** The Prometheus endpoint; absent when [metrics] is not configured. */
  readonly metrics?: { readonly listen: { host: string; port: number } };
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  loginGraceTime: 60_000,
  maxAuthTries: 6,
  maxSessions: 10,
  // Above sshd's 10: standbys reconnect together after a hub restart, and a
  // dropped login is ssh's exit 255, fatal to a standby whose command does not map it.
  maxStartups: 64,
  maxConnections: 100,
  maxTransfers: 64,
  idleTimeout: 300_000,
});

/** Server IDs are directory names: no separators, no dot-only names. */
export const SERVER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

type Table = Record<string, unknown>;

const TOP_KEYS = ['listen', 'user', 'host_keys', 'authorized_keys', 'archive', 'audit_log', 'servers', 'limits', 'metrics'];
const LIMIT_KEYS: Record<string, { field: keyof Limits; kind: 'duration' | 'count' }> = {
  login_grace_time: { field: 'loginGraceTime', kind: 'duration' },
  max_auth_tries: { field: 'maxAuthTries', kind: 'count' },
  max_sessions: { field: 'maxSessions', kind: 'count' },
  max_startups: { field: 'maxStartups', kind: 'count' },
  max_connections: { field: 'maxConnections', kind: 'count' },
  max_transfers: { field: 'maxTransfers', kind: 'count' },
  idle_timeout: { field: 'idleTimeout', kind: 'duration' },
};

export function loadConfig(file: string): Config {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError([`${path}: cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`]);
  }
  return parseConfig(text, path);
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

  const limits: Record<string, number> = { ...DEFAULT_LIMITS };
  const rawLimits = raw.limits ?? {};
  if (!isTable(rawLimits)) fail('limits', 'expected a table');
  else {
    for (const [key, value] of Object.entries(rawLimits)) {
      const spec = LIMIT_KEYS[key];
      if (!spec) {
        fail(`limits.${key}`, `unknown key (expected one of ${Object.keys(LIMIT_KEYS).join(', ')})`);
        continue;
      }
      const parsed = spec.kind === 'duration' ? parseTimeout(value) : parseCount(value);
      if (parsed === undefined) {
        fail(
          `limits.${key}`,
          spec.kind === 'duration' ? 'expected a duration like "30s", "5m" or "1h", from 1s to 576h' : 'expected a whole number from 1 to 100000',
        );
      } else limits[spec.field] = parsed;
    }
  }

  let metrics: Config['metrics'];
  const rawMetrics = raw.metrics;
  if (rawMetrics !== undefined && !isTable(rawMetrics)) fail('metrics', 'expected a table');
  else if (rawMetrics !== undefined) {
    for (const key of Object.keys(rawMetrics)) if (key !== 'listen') fail(`metrics.${key}`, 'unknown key (expected listen)');
    const address = typeof rawMetrics.listen === 'string' ? parseListenAddress(rawMetrics.listen) : undefined;
    if (!address) fail('metrics.listen', 'expected "host:port" or "[ipv6]:port", like "127.0.0.1:9187"');
    else metrics = Object.freeze({ listen: address });
  }

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
    ...(metrics ? { metrics } : {}),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

export function parseListenAddress(text: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return { host: match[1] ?? match[2] ?? '', port };
}

/** "30s", "5m", "1h", "250ms", or a bare number of seconds. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value * 1000;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d{1,10})(ms|s|m|h)?$/.exec(value.trim());
  if (!match) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? 's'] ?? 1000;
  return Number(match[1]) * unit;
}

/** Node timers overflow past 2^31-1 ms (24.8 days) and fire at once; zero would drop every connection. */
const MAX_TIMEOUT = 576 * 3_600_000;

function parseTimeout(value: unknown): number | undefined {
  const ms = parseDuration(value);
  return ms !== undefined && ms >= 1000 && ms <= MAX_TIMEOUT ? ms : undefined;
}

function parseCount(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 100_000 ? value : undefined;
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
