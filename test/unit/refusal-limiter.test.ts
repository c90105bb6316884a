import { afterEach, describe, expect, it } from 'vitest';
import { RefusalLimiter } from '../../src/ssh/refusal-limiter.js';

describe('RefusalLimiter', () => {
  let limiter: RefusalLimiter | undefined;
  afterEach(() => limiter?.close());

  it('admits the first records of an address in a window, counts the rest, and reports them once', () => {
    const reports: [string, number][] = [];
    limiter = new RefusalLimiter((address, suppressed) => reports.push([address, suppressed]), 2, 10_000);
    const admitted = [1, 2, 3, 4].map(() => limiter!.admit('192.0.2.1', 0));
    expect(admitted).toEqual([true, true, false, false]);
    expect(limiter.admit('192.0.2.2', 0)).toBe(true);
    expect(reports).toEqual([]);
    limiter.close();
    expect(reports).toEqual([['192.0.2.1', 2]]);
  });

  it('keeps a bounded table: addresses past it are counted together', () => {
    const reports: [string, number][] = [];
    limiter = new RefusalLimiter((address, suppressed) => reports.push([address, suppressed]), 5, 10_000, 2);
    expect(['a', 'b', 'c', 'd'].map((address) => limiter!.admit(address, 0))).toEqual([true, true, false, false]);
    limiter.close();
    expect(reports).toEqual([['(other addresses)', 2]]);
  });
});
