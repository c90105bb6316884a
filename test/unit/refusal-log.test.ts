import { Writable } from 'node:stream';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { RefusalLog } from '../../src/ssh/refusal-log.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const clock = { now: 0 };
  return { lines, clock, refusals: new RefusalLog(pino({ base: null, timestamp: false }, sink), () => clock.now) };
}

it('writes one line per source and reason a minute, then one counting the refusals it left out', () => {
  const { lines, clock, refusals } = capture();
  for (let i = 0; i < 100; i++) refusals.refuse('192.0.2.1', '192.0.2.1', 'too many connections from this source');
  refusals.refuse('192.0.2.2', '192.0.2.2', 'too many connections from this source');
  clock.now += 60_000;
  refusals.refuse('192.0.2.1', '192.0.2.1', 'too many connections from this source');
  expect(lines).toEqual([
    { level: 40, address: '192.0.2.1', reason: 'too many connections from this source', msg: 'connection refused' },
    { level: 40, address: '192.0.2.2', reason: 'too many connections from this source', msg: 'connection refused' },
    { level: 40, address: '192.0.2.1', reason: 'too many connections from this source', suppressed: 99, msg: 'connection refused' },
  ]);
});

it('names a trusted balancer\'s own address as `proxy`, under a message fail2ban does not match, counted apart', () => {
  const { lines, refusals } = capture();
  refusals.refuse('127.0.0.1', '127.0.0.1', 'too many unauthenticated connections from this source', { balancer: true });
  refusals.refuse('127.0.0.1', '127.0.0.1', 'too many unauthenticated connections from this source', { balancer: true });
  refusals.refuse('127.0.0.1', '127.0.0.1', 'too many unauthenticated connections from this source');
  expect(lines).toEqual([
    { level: 40, proxy: '127.0.0.1', reason: 'too many unauthenticated connections from this source', msg: 'proxied connection refused' },
    { level: 40, address: '127.0.0.1', reason: 'too many unauthenticated connections from this source', msg: 'connection refused' },
  ]);
});
