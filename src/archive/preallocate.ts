import { freemem } from 'node:os';
import type { Logger } from 'pino';
import type { WalCache } from './wal-cache.js';

/** PostgreSQL's default wal_segment_size: the size of the blocks `[cache] preallocate` takes. */
export const PREALLOCATED_BLOCK_BYTES = 16 * 1024 * 1024;

/**
 * How much of the cache's budget a start may take: at most half of the memory
 * available then. Taking more on a host short of memory would wake the OOM
 * killer, which may pick PostgreSQL or Barman: the rest is then taken as the
 * cache fills, as without preallocate, and only under load.
 */
export function preallocationLimit(budget: number, available: number): number {
  return Math.min(budget, Math.floor(available / 2));
}

/** What Node tells of this process's memory (process.availableMemory is Node 20.13+, constrainedMemory 19.6+). */
export interface MemoryProbe {
  readonly free: () => number;
  readonly available?: (() => number) | undefined;
  readonly constrained?: (() => number | undefined) | undefined;
  readonly rss: () => number;
}

const NODE_PROBE: MemoryProbe = {
  free: freemem,
  available: (process as { availableMemory?: () => number }).availableMemory?.bind(process),
  constrained: (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.bind(process),
  rss: () => process.memoryUsage.rss(),
};

/**
 * The memory available to this process: the host's, or what is left under
 * its cgroup's limit (systemd's MemoryMax) when that is less. Node before
 * 20.13 has no availableMemory(): the limit less this process's RSS then.
 * A cgroup without a limit reports none (0 or 2^64 - 1).
 */
export function availableMemory(probe: MemoryProbe = NODE_PROBE): number {
  const free = probe.free();
  if (probe.available) return Math.min(free, probe.available());
  const limit = probe.constrained?.();
  if (!limit || limit > Number.MAX_SAFE_INTEGER) return free;
  return Math.min(free, Math.max(0, limit - probe.rss()));
}

/**
 * Takes the cache's budget now, one block at a time (WalCache.addSpare),
 * and says in the program log how much, and how long it took. Never fails
 * the start: this only saves the first requests some time, so a block that
 * cannot be had ends it with a warning, and the rest comes as the cache fills.
 */
export function preallocateCache(cache: WalCache, log: Logger, available = availableMemory()): void {
  const limit = preallocationLimit(cache.capacity, available);
  // Said first: on a slow host this takes seconds, before the hub listens.
  const wanted = limit - (limit % PREALLOCATED_BLOCK_BYTES);
  if (wanted > 0) log.info({ bytes: wanted }, 'preallocating cache memory');
  const started = performance.now();
  let blocks = 0;
  let failure: string | undefined;
  while (cache.heldBytes + PREALLOCATED_BLOCK_BYTES <= limit) {
    try {
      if (!cache.addSpare(PREALLOCATED_BLOCK_BYTES)) break;
    } catch (error) {
      failure = (error as Error).message;
      break;
    }
    blocks++;
  }
  const fields = { blocks, bytes: blocks * PREALLOCATED_BLOCK_BYTES, ms: Math.round(performance.now() - started) };
  if (failure !== undefined) {
    log.warn({ ...fields, err: failure }, 'cache memory preallocated only in part: no more memory could be had; the rest is taken as the cache fills');
  } else if (limit < cache.capacity) {
    log.warn(
      { ...fields, memory: cache.capacity, available },
      'cache memory preallocated only in part: [cache] memory is more than half the memory available; the rest is taken as the cache fills',
    );
  } else if (blocks === 0) {
    log.warn({ ...fields, memory: cache.capacity }, 'cache memory not preallocated: [cache] memory is less than one 16 MiB block');
  } else log.info(fields, 'cache memory preallocated');
}
