import { describe, expect, it } from 'vitest';
import { PenaltyBox, type PenaltyPolicy } from '../../src/ssh/penalties.js';

const POLICY: PenaltyPolicy = { min: 15_000, max: 600_000, exemptFor: 86_400_000, slowMax: 2_000, slowStep: 1_000, maxSources: 3 };
/** The failure cost walhub a key exchange. */
const KEX = { keyExchange: true };

function createBox(authorized = new Set(['standby-key'])) {
  const clock = { now: 1_000_000 };
  const box = new PenaltyBox(POLICY, (key) => authorized.has(key), () => clock.now);
  return { box, clock, authorized };
}

describe('PenaltyBox', () => {
  it('forgives failures below min, then refuses until the penalty runs out', () => {
    const { box, clock } = createBox();
    box.penalize('192.0.2.1', 5_000, KEX);
    box.penalize('192.0.2.1', 5_000, KEX);
    expect(box.check('192.0.2.1')).toEqual({ refused: false });
    box.penalize('192.0.2.1', 5_000, KEX);
    expect(box.check('192.0.2.1')).toEqual({ refused: true, first: true, remainingMs: 15_000 });
    clock.now += 14_000;
    expect(box.check('192.0.2.1')).toEqual({ refused: true, first: false, remainingMs: 1_000 });
    clock.now += 1_000;
    expect(box.check('192.0.2.1')).toEqual({ refused: false });
  });

  it('says "first" once per penalty period, again for a new one', () => {
    const { box, clock } = createBox();
    box.penalize('192.0.2.1', 20_000, KEX);
    expect(box.check('192.0.2.1')).toMatchObject({ first: true });
    expect(box.check('192.0.2.1')).toMatchObject({ first: false });
    clock.now += 20_000;
    box.penalize('192.0.2.1', 20_000, KEX);
    expect(box.check('192.0.2.1')).toMatchObject({ first: true });
  });

  it('never holds a source longer than max from its last failure', () => {
    const { box } = createBox();
    for (let i = 0; i < 1000; i++) box.penalize('192.0.2.1', 10_000, KEX);
    expect(box.check('192.0.2.1')).toMatchObject({ refused: true, remainingMs: 600_000 });
  });

  it('lets time pass between failures count against the penalty', () => {
    const { box, clock } = createBox();
    box.penalize('192.0.2.1', 10_000, KEX);
    clock.now += 10_000;
    box.penalize('192.0.2.1', 10_000, KEX);
    expect(box.check('192.0.2.1')).toEqual({ refused: false });
  });

  it('never refuses a source a still-authorized key logged in from: past min it slows it, by slowMax at most', () => {
    const { box, authorized, clock } = createBox();
    box.recordLogin('192.0.2.1', 'standby-key');
    // There a failure counts slowStep for its key exchange, whatever its own penalty.
    for (let i = 0; i < 15; i++) box.penalize('192.0.2.1', 60_000, KEX);
    expect(box.check('192.0.2.1')).toEqual({ refused: false });
    box.penalize('192.0.2.1', 60_000, KEX);
    expect(box.check('192.0.2.1')).toEqual({ refused: false, slowMs: 1_000, first: true });
    for (let i = 0; i < 100; i++) box.penalize('192.0.2.1', 60_000, KEX);
    expect(box.check('192.0.2.1')).toEqual({ refused: false, slowMs: 2_000, first: false });
    // The penalty there is capped at min + slowMax: 2 s after the exchanges stop, it no longer slows.
    clock.now += 2_000;
    expect(box.check('192.0.2.1')).toEqual({ refused: false });
    authorized.delete('standby-key');
    box.penalize('192.0.2.1', 60_000, KEX);
    expect(box.check('192.0.2.1')).toMatchObject({ refused: true });
  });

  it('reports slowing a source at most once a minute while it goes on', () => {
    const { box, clock } = createBox();
    box.recordLogin('192.0.2.1', 'standby-key');
    const firsts: boolean[] = [];
    // A neighbour at one and a half key exchanges a second, for two minutes.
    for (let i = 0; i < 120; i++) {
      box.penalize('192.0.2.1', 1_000, KEX);
      if (i % 2 === 0) box.penalize('192.0.2.1', 1_000, KEX);
      clock.now += 1_000;
      const checked = box.check('192.0.2.1');
      if (!checked.refused && checked.slowMs !== undefined) firsts.push(checked.first);
    }
    expect(firsts.length).toBeGreaterThan(10);
    expect(firsts.filter((f) => f)).toHaveLength(2);
  });

  it('never slows a source a standby uses for failures that cost no key exchange (idle sockets)', () => {
    const { box } = createBox();
    box.recordLogin('192.0.2.1', 'standby-key');
    for (let i = 0; i < 100; i++) box.penalize('192.0.2.1', 10_000, { keyExchange: false });
    expect(box.check('192.0.2.1')).toEqual({ refused: false });
  });

  it('keeps an exempt source\'s penalty across the standby\'s logins, and clears a new source\'s at its first login', () => {
    const { box } = createBox();
    box.penalize('192.0.2.1', 10_000, KEX);
    box.recordLogin('192.0.2.1', 'standby-key');
    for (let i = 0; i < 10; i++) box.penalize('192.0.2.1', 5_000, KEX);
    expect(box.check('192.0.2.1')).toEqual({ refused: false });
    for (let i = 0; i < 7; i++) box.penalize('192.0.2.1', 5_000, KEX);
    box.recordLogin('192.0.2.1', 'standby-key');
    expect(box.check('192.0.2.1')).toEqual({ refused: false, slowMs: 2_000, first: true });
  });

  it('forgets a login after exemptFor', () => {
    const { box, clock } = createBox();
    box.recordLogin('192.0.2.1', 'standby-key');
    clock.now += POLICY.exemptFor + 1;
    box.penalize('192.0.2.1', 60_000, KEX);
    expect(box.check('192.0.2.1')).toMatchObject({ refused: true });
  });

  it('keeps at most maxSources penalties, forgetting the oldest', () => {
    const { box } = createBox();
    for (const source of ['a', 'b', 'c', 'd']) box.penalize(source, 60_000, KEX);
    expect(box.check('a')).toEqual({ refused: false });
    expect(box.check('d')).toMatchObject({ refused: true });
  });
});
