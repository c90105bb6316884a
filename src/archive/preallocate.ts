import { freemem } from 'node:os';
import type { Logger } from 'pino';
import { WalhubError } from '../errors.js';
import type { WalCache } from './wal-cache.js';

/** PostgreSQL's default wal_segment_size: the size of the blocks `[cache] preallocate` takes. */
export const PREALLOCATED_BLOCK_BYTES = 16 * 1024 * 1024;
const MIB = 1024 * 1024;

/**
 * How much of the cache's budget a start may take: at most half of the memory
 * available then. Taking more on a host short of memory would wake the OOM
 * killer, which may pick PostgreSQL or Barman: the rest is then taken as the
 * cache fills, as without preallocate, and only under load.
 */
export function preallocationLimit(budget: number, available: number): number {
  return Math.min(budget, Math.floor(available / 2));
}

/** The memory available to this process: the host's, or its cgroup's (systemd's MemoryMax) when that is less. */
export function availableMemory(): number {
  const constrained = (process as { availableMemory?: () => number }).availableMemory?.();
  return Math.min(freemem(), constrained ?? Infinity);
}

/** Takes the cache's budget now (WalCache.preallocate), and says in the program log how much, and how long it took. */
export function preallocateCache(cache: WalCache, log: Logger, available = availableMemory()): void {
  const limit = preallocationLimit(cache.capacity, available);
  const started = performance.now();
  let blocks: number;
  try {
    blocks = cache.preallocate(PREALLOCATED_BLOCK_BYTES, limit);
  } catch (error) {
    throw new WalhubError(
      'UNAVAILABLE',
      `[cache] preallocate: no memory for ${Math.floor(limit / MIB)} MiB (${(error as Error).message}): lower [cache] memory, or set preallocate = false`,
    );
  }
  const fields = { blocks, bytes: blocks * PREALLOCATED_BLOCK_BYTES, ms: Math.round(performance.now() - started) };
  if (limit < cache.capacity) {
    log.warn(
      { ...fields, memory: cache.capacity, available },
      'cache memory preallocated only in part: [cache] memory is more than half the memory available; the rest is taken as the cache fills',
    );
  } else log.info(fields, 'cache memory preallocated');
}
