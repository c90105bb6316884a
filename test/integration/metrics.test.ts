// The Prometheus endpoint, scraped during real fetches.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServerDir } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { createClientKey, sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { HISTORY_TEXT } from '../helpers/walhub-cli.js';

let hub: Hub;
let standby: ClientKey;
let stranger: ClientKey;
let metricsUrl: string;

beforeAll(async () => {
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys({ 'standby-a': 'servers="*"' }, { extraToml: '[metrics]\nlisten = "127.0.0.1:0"\n' }));
  stranger = await createClientKey(hub.dir, 'stranger');
  await createServerDir(hub.archive, 'pg1');
  await writeFile(join(hub.archive, 'pg1', 'wals', '00000002.history'), HISTORY_TEXT);
  const listening = await hub.waitForLog((l) => l.msg === 'metrics listening');
  expect(listening.host).toBe('127.0.0.1');
  metricsUrl = `http://127.0.0.1:${String(listening.port)}/metrics`;
});
afterAll(async () => {
  await hub?.stop();
});

/** name{labels} -> value, from Prometheus's text format. */
async function scrape(): Promise<Map<string, number>> {
  const response = await fetch(metricsUrl);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

describe('the metrics endpoint', () => {
  it('counts requests, bytes, durations, refusals and open connections from real fetches', async () => {
    for (let i = 0; i < 3; i++) expect((await sshExec(hub, standby, 'get-wal pg1 00000002.history')).status).toBe(0);
    expect((await sshExec(hub, standby, 'get-wal pg1 000000010000000000000009')).status).toBe(1);
    // Any string a client sends as a server ID: it must not become a label value.
    expect((await sshExec(hub, standby, 'get-wal no-such-server-4711 000000010000000000000009')).status).toBe(3);
    expect((await sshExec(hub, stranger, 'get-wal pg1 00000002.history')).status).toBe(255);

    // A ControlMaster connection held open while scraping.
    const control = join(hub.dir, 'cm-%C');
    const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=30'];
    expect((await sshExec(hub, standby, 'get-wal pg1 00000002.history', { extra: mux })).status).toBe(0);

    const samples = await scrape();
    expect(samples.get('walhub_requests_total{server="pg1",result="ok"}')).toBe(4);
    expect(samples.get('walhub_requests_total{server="pg1",result="not_found"}')).toBe(1);
    expect(samples.get('walhub_requests_total{server="other",result="denied"}')).toBe(1);
    expect([...samples.keys()].some((k) => k.includes('no-such-server'))).toBe(false);
    expect(samples.get('walhub_bytes_sent_total{server="pg1"}')).toBe(4 * HISTORY_TEXT.length);
    expect(samples.get('walhub_request_duration_seconds_count')).toBe(6);
    expect(samples.get('walhub_request_duration_seconds_bucket{le="+Inf"}')).toBe(6);
    expect(samples.get('walhub_auth_failures_total{reason="key_not_authorized"}')).toBeGreaterThanOrEqual(1);
    expect(samples.get('walhub_authorized_keys')).toBe(1);
    expect(samples.get('walhub_connections')).toBe(1);
    expect(samples.get('walhub_sessions')).toBe(0);
    expect(samples.get('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(samples.has('nodejs_eventloop_lag_seconds')).toBe(true);

    await sshExec(hub, standby, undefined, { extra: [...mux, '-O', 'exit'] });
  });

  it('answers only GET /metrics', async () => {
    expect((await fetch(metricsUrl.replace('/metrics', '/'))).status).toBe(404);
    expect((await fetch(metricsUrl, { method: 'POST' })).status).toBe(404);
  });
});
