// collectGarbageSoon: at most one full collection every 5 s, and a request
// that comes too soon is kept for when the interval is over, not dropped:
// blocks discarded one by one (a spare per segment read ahead) would
// otherwise stay resident until V8 alone got to them.
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { collectGarbageSoon } from '../../src/archive/collect-garbage.js';

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

it('collects at once, then once more after the interval for requests that came meanwhile', () => {
  let runs = 0;
  const collector = () => () => void runs++;
  const t0 = Date.now();
  collectGarbageSoon(t0, collector);
  vi.advanceTimersByTime(1);
  expect(runs).toBe(1);
  // Two requests within the interval: one collection when it is over.
  collectGarbageSoon(t0 + 1_000, collector);
  collectGarbageSoon(t0 + 2_000, collector);
  vi.advanceTimersByTime(3_000);
  expect(runs).toBe(1);
  vi.advanceTimersByTime(1_000);
  expect(runs).toBe(2);
  vi.advanceTimersByTime(60_000);
  expect(runs).toBe(2);
  // Long after: at once again.
  collectGarbageSoon(Date.now() + 10_000, collector);
  vi.advanceTimersByTime(1);
  expect(runs).toBe(3);
});
