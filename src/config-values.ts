import { isIP } from 'node:net';
import type { Limits } from './config.js';

/**
 * The values a walhub.toml holds, read one at a time: pure functions from a
 * TOML value to a number (or a few), undefined when it is not one. config.ts
 * says which key takes which and what to tell the person when it does not fit.
 */

const MIB = 1024 * 1024;

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

/** "16MiB", "512KiB", "1GiB", or a bare number of bytes. */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d{1,13})\s*(B|KiB|MiB|GiB)?$/.exec(value.trim());
  if (!match) return undefined;
  const unit = { B: 1, KiB: 1024, MiB: MIB, GiB: 1024 * MIB }[match[2] ?? 'B'] ?? 1;
  const bytes = Number(match[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

export function parsePowerOfTwoSize(value: unknown, min: number, max: number): number | undefined {
  const bytes = parseSize(value);
  if (bytes === undefined || bytes < min || bytes > max) return undefined;
  return (bytes & (bytes - 1)) === 0 ? bytes : undefined;
}

/** Node timers overflow past 2^31-1 ms (24.8 days) and fire at once; zero would drop every connection. */
const MAX_TIMEOUT = 576 * 3_600_000;

export function parseTimeout(value: unknown): number | undefined {
  const ms = parseDuration(value);
  return ms !== undefined && ms >= 1000 && ms <= MAX_TIMEOUT ? ms : undefined;
}

export function parseCount(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 100_000 ? value : undefined;
}

/** sshd's MaxStartups: a bare number is a hard cap; "start:rate:full" drops at random between start and full. */
export function parseStartups(value: unknown): Pick<Limits, 'maxStartups' | 'startupsDropFrom' | 'startupsDropRate'> | undefined {
  const single = parseCount(value);
  if (single !== undefined) return { maxStartups: single, startupsDropFrom: single, startupsDropRate: 100 };
  if (typeof value !== 'string') return undefined;
  const match = /^(\d{1,6}):(\d{1,3}):(\d{1,6})$/.exec(value.trim());
  if (!match) return undefined;
  const [start, rate, full] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (parseCount(start) === undefined || parseCount(full) === undefined || start > full || rate > 100) return undefined;
  return { maxStartups: full, startupsDropFrom: start, startupsDropRate: rate };
}

/** Zero is allowed: a site behind a NAT or proxy it cannot see through may want no penalties. */
export function parsePenalty(value: unknown): number | undefined {
  const ms = parseDuration(value);
  return ms !== undefined && ms <= MAX_TIMEOUT ? ms : undefined;
}

export function parseIpv6Prefix(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 128 ? value : undefined;
}

/** "10.0.0.5", "2001:db8::1", "10.0.9.0/24", "2001:db8::/48" (no host names: they would be resolved at every start). */
export function isAddressOrBlock(text: string): boolean {
  const [ip, bits, extra] = text.split('/');
  const family = isIP(ip ?? '');
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

