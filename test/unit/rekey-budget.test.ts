import { describe, expect, it } from 'vitest';
import { REKEY_BURST, REKEY_REFILL_BYTES, REKEY_REFILL_MS, RekeyBudget } from '../../src/ssh/rekey-budget.js';

describe('RekeyBudget', () => {
  it('allows a burst of re-exchanges, then refuses until time refills it', () => {
    const budget = new RekeyBudget(0);
    for (let i = 0; i < REKEY_BURST; i++) expect(budget.take(10 * i)).toBe(true);
    expect(budget.take(100)).toBe(false);
    expect(budget.take(REKEY_REFILL_MS - 1)).toBe(false);
    expect(budget.take(REKEY_REFILL_MS + 100)).toBe(true);
    expect(budget.take(REKEY_REFILL_MS + 200)).toBe(false);
  });

  it('never refuses a client that re-keys no more often than the refill', () => {
    const budget = new RekeyBudget(0);
    for (let t = 0; t < 1_000 * REKEY_REFILL_MS; t += REKEY_REFILL_MS) expect(budget.take(t)).toBe(true);
  });

  it('holds a looping client to one re-exchange per refill period, whatever it tried', () => {
    const budget = new RekeyBudget(0);
    let allowed = 0;
    // 100 attempts a second for 60 s.
    for (let t = 0; t < 60_000; t += 10) if (budget.take(t)) allowed++;
    expect(allowed).toBe(REKEY_BURST + Math.floor(60_000 / REKEY_REFILL_MS) - 1);
  });

  it('keeps no more than the burst however long the connection was quiet, and ignores a clock going back', () => {
    const budget = new RekeyBudget(0);
    let allowed = 0;
    for (let i = 0; i < 10; i++) if (budget.take(3_600_000)) allowed++;
    expect(allowed).toBe(REKEY_BURST);
    expect(budget.take(0)).toBe(false);
  });

  it('never refuses a client that re-keys by volume (RekeyLimit 16M), however fast it fetches', () => {
    const budget = new RekeyBudget(0, 0);
    // 10 GiB at 1 GiB/s: a re-exchange every 16 MiB, every 15.6 ms.
    for (let i = 1; i <= 640; i++) expect(budget.take(i * 15.6, i * REKEY_REFILL_BYTES)).toBe(true);
  });

  it('refuses a client that re-keys more often than its bytes and the time earn, and earns nothing from counters going back', () => {
    const budget = new RekeyBudget(0, 0);
    for (let i = 0; i < REKEY_BURST; i++) expect(budget.take(0, 0)).toBe(true);
    expect(budget.take(1, REKEY_REFILL_BYTES / 2)).toBe(false);
    expect(budget.take(2, REKEY_REFILL_BYTES)).toBe(true);
    expect(budget.take(3, 0)).toBe(false);
    expect(budget.take(4, REKEY_REFILL_BYTES + 10)).toBe(false);
    // Many bytes in one go still buy no more than the burst.
    for (let i = 0; i < 10; i++) budget.take(5, 100 * REKEY_REFILL_BYTES);
    expect(budget.take(6, 100 * REKEY_REFILL_BYTES)).toBe(false);
  });
});
