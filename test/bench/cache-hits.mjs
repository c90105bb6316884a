// How many requests a walhub served from its readahead cache, read back from
// its audit log: the `request` record says "cache": "hit" or "miss" for a
// segment the cache could have held (issue 8), and nothing on a build without one.
import { readText } from './lib.mjs';

/**
 * Counts of the request records in one audit log: { requests, hit, miss,
 * unmarked, missed } (missed: how often each WAL name was a miss, the first few names).
 */
export async function countCacheHits(auditLog) {
  const counts = { requests: 0, hit: 0, miss: 0, unmarked: 0, missed: {} };
  for (const line of (await readText(auditLog)).split('\n')) {
    if (line === '') continue;
    const record = JSON.parse(line);
    if (record.event !== 'request') continue;
    counts.requests += 1;
    if (record.cache === 'hit') {
      counts.hit += 1;
    } else if (record.cache === 'miss') {
      counts.miss += 1;
      const name = String(record.wal);
      if (name in counts.missed || Object.keys(counts.missed).length < 8) counts.missed[name] = (counts.missed[name] ?? 0) + 1;
    } else {
      counts.unmarked += 1;
    }
  }
  return counts;
}

/** One line for the report, e.g. "48 requests: 44 cache hits, 4 misses, 0 without a cache field". */
export function describeHits(counts) {
  if (!counts) return 'n/a';
  const named = Object.entries(counts.missed ?? {});
  const listed = named.reduce((sum, [, n]) => sum + n, 0);
  const missed = named.length > 0 ? ` (missed: ${named.map(([name, n]) => (n > 1 ? `${name} x${n}` : name)).join(' ')}${counts.miss > listed ? ' ...' : ''})` : '';
  return `${counts.requests} requests: ${counts.hit} cache hits, ${counts.miss} misses${missed}, ${counts.unmarked} without a cache field`;
}
