import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, type Limits } from '../../src/config.js';
import { Admission } from '../../src/ssh/admission.js';

const LIMITS: Limits = { ...DEFAULT_LIMITS, perSourceMaxStartups: 2, perSourceMaxConnections: 3, maxConnections: 2, startupsDropFrom: 4, startupsDropRate: 50, maxStartups: 8 };

describe('Admission', () => {
  it('caps unauthenticated connections per source, and all connections per source', () => {
    const admission = new Admission(LIMITS);
    const first = admission.admit('192.0.2.1');
    admission.admit('192.0.2.1');
    expect(admission.check('192.0.2.1')).toBe('too many unauthenticated connections from this source');
    expect(admission.check('192.0.2.2')).toBeUndefined();
    first.markAuthenticated();
    expect(admission.check('192.0.2.1')).toBeUndefined();
    admission.admit('192.0.2.1');
    expect(admission.check('192.0.2.1')).toBe('too many connections from this source');
    first.release();
    first.release();
    expect(admission.check('192.0.2.1')).toBe('too many unauthenticated connections from this source');
  });

  it('refuses new connections while every max_connections slot is taken by a logged-in client', () => {
    const admission = new Admission(LIMITS);
    const a = admission.admit('192.0.2.1');
    const b = admission.admit('192.0.2.2');
    a.markAuthenticated();
    b.markAuthenticated();
    expect(admission.check('192.0.2.3')).toBe('all connection slots are taken by logged-in clients');
    b.release();
    expect(admission.check('192.0.2.3')).toBeUndefined();
  });

  it('drops at random from start, with a probability rising from rate to 100% at full', () => {
    let percentile = 0;
    const admission = new Admission(LIMITS, () => percentile);
    const sources = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    for (const source of sources.slice(0, 3)) admission.admit(source);
    percentile = 0;
    expect(admission.check('x')).toBeUndefined();
    admission.admit(sources[3]!);
    // 4 of 8: 50% are dropped.
    percentile = 49;
    expect(admission.check('x')).toBe('dropped at random: many unauthenticated connections');
    percentile = 50;
    expect(admission.check('x')).toBeUndefined();
    for (const source of sources.slice(4, 6)) admission.admit(source);
    // 6 of 8: 50 + 50 * 2/4 = 75%.
    percentile = 74;
    expect(admission.check('x')).toBe('dropped at random: many unauthenticated connections');
    percentile = 75;
    expect(admission.check('x')).toBeUndefined();
    for (const source of sources.slice(6)) admission.admit(source);
    percentile = 99;
    expect(admission.check('x')).toBe('too many unauthenticated connections');
  });
});
