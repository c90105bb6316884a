// walhub_auth_failures_total counts refused logins, also those the audit log
// only summarises past its rate limit.
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.js';

function newMetrics() {
  return createMetrics({ configuredServers: [], authorizedKeys: () => 0, connections: () => 0, sessions: () => 0 });
}

async function authFailures(metrics: ReturnType<typeof createMetrics>): Promise<Record<string, number>> {
  const text = await metrics.registry.getSingleMetricAsString('walhub_auth_failures_total');
  return Object.fromEntries([...text.matchAll(/^walhub_auth_failures_total\{reason="([a-z_0-9]+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

describe('walhub_auth_failures_total', () => {
  it('counts each recorded refusal under its reason', async () => {
    const metrics = newMetrics();
    for (let i = 0; i < 3; i++) metrics.consume('auth', { conn: `c${i}`, remote: '192.0.2.1', result: 'refused', reason: 'key not authorized' });
    metrics.consume('auth', { conn: 'c9', remote: '192.0.2.1', result: 'refused', reason: 'bad signature' });
    metrics.consume('auth', { conn: 'c10', remote: '192.0.2.1', result: 'ok' });
    expect(await authFailures(metrics)).toEqual({ key_not_authorized: 3, bad_signature: 1 });
  });

  it('counts every refusal a rate-limit summary record stands for, as rate_limited', async () => {
    const metrics = newMetrics();
    for (let i = 0; i < 5; i++) metrics.consume('auth', { conn: `c${i}`, remote: '192.0.2.1', result: 'refused', reason: 'key not authorized' });
    // The record server.ts writes when the address's window ends.
    metrics.consume('auth', {
      conn: '-',
      remote: '192.0.2.1',
      user: '-',
      method: '-',
      result: 'refused',
      reason: 'rate limit: 995 refused logins from this address not recorded',
      suppressed: 995,
    });
    expect(await authFailures(metrics)).toEqual({ key_not_authorized: 5, rate_limited: 995 });
  });
});
