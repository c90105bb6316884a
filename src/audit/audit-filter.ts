import { parseFromPattern, type FromPattern } from '../keys/from-pattern.js';

/** What `walhub audit` selects; every field that is set must match. */
export interface AuditFilter {
  /** ISO times, compared as strings with the records' own ISO `time`. */
  readonly since?: string;
  readonly until?: string;
  readonly servers?: ReadonlySet<string>;
  /** Key names or fingerprints. */
  readonly keys?: ReadonlySet<string>;
  readonly results?: ReadonlySet<string>;
  readonly remote?: FromPattern;
  readonly wals?: ReadonlySet<string>;
  readonly events?: ReadonlySet<string>;
}

export interface AuditFilterOptions {
  since?: string;
  until?: string;
  server?: string;
  key?: string;
  result?: string;
  remote?: string;
  wal?: string;
  event?: string;
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "2h", "7d" (that long before now) or an ISO time ("2026-11-30", "2026-11-30T10:00:00Z") -> ISO. */
export function parseTimeBound(text: string, now: number): string | undefined {
  const relative = /^(\d{1,9})([smhdw])$/.exec(text.trim());
  if (relative) return new Date(now - Number(relative[1]) * UNITS[relative[2]!]!).toISOString();
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined;
  const time = Date.parse(text);
  return Number.isNaN(time) ? undefined : new Date(time).toISOString();
}

const listOf = (text: string | undefined) => (text === undefined ? undefined : new Set(text.split(',').map((s) => s.trim())));

/** Options as typed -> a filter, or the one line saying which option is wrong. */
export function parseAuditFilter(options: AuditFilterOptions, now: number): AuditFilter | Error {
  const filter: { -readonly [K in keyof AuditFilter]: AuditFilter[K] } = {};
  for (const bound of ['since', 'until'] as const) {
    const text = options[bound];
    if (text === undefined) continue;
    const time = parseTimeBound(text, now);
    if (time === undefined) return new Error(`--${bound} "${text}": expected an ISO time (2026-11-30T10:00:00Z) or an age like 2h or 7d`);
    filter[bound] = time;
  }
  if (options.remote !== undefined) {
    const pattern = parseFromPattern(options.remote);
    if (pattern instanceof Error) return new Error(`--remote: ${pattern.message.replace(/ in from=.*$/, '')}`);
    if (pattern.onlyNegations) return new Error(`--remote "${options.remote}": only negations match no address, as in from="..."; for every address but those, put * first: "*,${options.remote}"`);
    filter.remote = pattern;
  }
  const servers = listOf(options.server);
  const keys = listOf(options.key);
  const results = listOf(options.result);
  const wals = listOf(options.wal);
  const events = listOf(options.event);
  if (servers) filter.servers = servers;
  if (keys) filter.keys = keys;
  if (results) filter.results = results;
  if (wals) filter.wals = wals;
  if (events) filter.events = events;
  return filter;
}

export function isFilterEmpty(filter: AuditFilter): boolean {
  return Object.keys(filter).length === 0;
}

/** "10.1.0.7:5432" or "[::1]:5432" -> the address. */
export function toRemoteAddress(remote: string): string {
  if (remote.startsWith('[')) return remote.slice(1, remote.indexOf(']'));
  const colon = remote.lastIndexOf(':');
  return colon > 0 && remote.indexOf(':') === colon ? remote.slice(0, colon) : remote;
}

export function matchesFilter(record: Record<string, unknown>, filter: AuditFilter): boolean {
  const time = typeof record.time === 'string' ? record.time : '';
  if (filter.since !== undefined && time < filter.since) return false;
  if (filter.until !== undefined && time > filter.until) return false;
  if (filter.events && !filter.events.has(String(record.event))) return false;
  if (filter.servers && !filter.servers.has(String(record.server))) return false;
  if (filter.results && !filter.results.has(String(record.result))) return false;
  if (filter.wals && !filter.wals.has(String(record.wal))) return false;
  if (filter.keys && !filter.keys.has(String(record.key_name)) && !filter.keys.has(String(record.key))) return false;
  if (filter.remote && !filter.remote.matches(toRemoteAddress(String(record.remote ?? '')))) return false;
  return true;
}
