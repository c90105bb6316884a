import { Writable } from 'node:stream';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { RefusalLog } from '../../src/ssh/refusal-log.js';

it('writes one line per source and reason a minute, then one counting the refusals it left out', () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const clock = { now: 0 };
  const refusals = new RefusalLog(pino({ base: null, timestamp: false }, sink), () => clock.now);
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
