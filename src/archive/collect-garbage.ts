import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** At most one collection this often: each stops the event loop for a few milliseconds. */
const MIN_INTERVAL_MS = 5_000;

let collect: (() => void) | undefined;
let lastAt = -Infinity;
let trailing: NodeJS.Timeout | undefined;

/** V8's full collection for this thread, which Node exposes only behind a flag. */
export function fullCollection(): () => void {
  if (!collect) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  return collect;
}

/**
 * A full collection on this thread, soon, unless one was asked for in the
 * last few seconds: for memory that only the collector frees and that is
 * needed back now (cache blocks a channel held until it closed, see
 * WalCache.retainedBytes). V8 alone would wait until its own heap grows,
 * which on an idle hub can take a long time.
 */
export function collectGarbageSoon(now = Date.now(), collector: () => () => void = fullCollection): void {
  if (trailing) return;
  const wait = lastAt + MIN_INTERVAL_MS - now;
  if (wait <= 0) {
    lastAt = now;
    setImmediate(collector());
    return;
  }
  // Asked again too soon: once more when the interval is over, rather than
  // never. Blocks dropped one by one (a gzip chain discarding a spare per
  // segment) would otherwise wait for V8, which may take long.
  trailing = setTimeout(() => {
    trailing = undefined;
    lastAt = Date.now();
    collector()();
  }, wait).unref();
}
