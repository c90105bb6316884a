import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Readahead } from '../archive/readahead.js';
import { READAHEAD_OUTCOMES } from '../archive/readahead.js';
import type { AuditConsumer } from '../audit/audit-log.js';

export interface MetricsSources {
  /** Server IDs named in [servers]: always a label of their own. */
  readonly configuredServers: readonly string[];
  readonly authorizedKeys: () => number;
  readonly connections: () => number;
  readonly sessions: () => number;
  /** Absent when [cache] turns the readahead off. */
  readonly readahead?: Pick<Readahead, 'cache' | 'outcomes'>;
}

export interface Metrics {
  /** Fed by the audit log: the same record that goes to the file. */
  readonly consume: AuditConsumer;
  readonly registry: Registry;
}

/**
 * The results that prove the server ID exists and the key may read it: only
 * such IDs (bounded by the archive's directories) become label values. Any
 * other string a client sends is counted under "other".
 */
const SERVER_PROVEN_BY = new Set(['ok', 'not_found', 'damaged']);

/** auth refusal reasons as the audit log words them -> a fixed label set. */
const AUTH_REASONS: readonly [RegExp, string][] = [
  [/^key not authorized$/, 'key_not_authorized'],
  [/^key expired$/, 'key_expired'],
  [/^address not allowed/, 'address_not_allowed'],
  [/^unknown user$/, 'unknown_user'],
  [/^bad signature$/, 'bad_signature'],
  [/^RSA\/SHA-1/, 'rsa_sha1'],
  [/^too many authentication attempts$/, 'too_many_attempts'],
  [/^method .* not allowed$/, 'method_not_allowed'],
];

export function toAuthFailureReason(reason: unknown): string {
  const text = typeof reason === 'string' ? reason : '';
  return AUTH_REASONS.find(([pattern]) => pattern.test(text))?.[1] ?? 'other';
}

export function createMetrics(sources: MetricsSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'walhub_requests_total',
    help: 'get-wal requests finished, by server ID and result (ok, not_found, usage, denied, damaged, unavailable, aborted).',
    labelNames: ['server', 'result'],
    registers: [registry],
  });
  const bytesSent = new Counter({
    name: 'walhub_bytes_sent_total',
    help: 'Bytes of WAL sent to standbys, by server ID.',
    labelNames: ['server'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'walhub_request_duration_seconds',
    help: 'Time from exec to exit status of a request.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const authFailures = new Counter({
    name: 'walhub_auth_failures_total',
    help: 'Refused logins, by reason; rate_limited: those past the audit log\'s limit of 5 records per address in 10 s.',
    labelNames: ['reason'],
    registers: [registry],
  });
  new Gauge({
    name: 'walhub_connections',
    help: 'TCP connections open now, authenticated or not.',
    registers: [registry],
    collect() {
      this.set(sources.connections());
    },
  });
  new Gauge({
    name: 'walhub_sessions',
    help: 'SSH sessions (channels) open now.',
    registers: [registry],
    collect() {
      this.set(sources.sessions());
    },
  });
  new Gauge({
    name: 'walhub_authorized_keys',
    help: 'Keys loaded from authorized_keys.',
    registers: [registry],
    collect() {
      this.set(sources.authorizedKeys());
    },
  });

  const cacheRequests = new Counter({
    name: 'walhub_cache_requests_total',
    help: 'get-wal requests the readahead cache could serve, by whether it did (hit, miss).',
    labelNames: ['result'],
    registers: [registry],
  });
  const { readahead } = sources;
  if (readahead) {
    new Gauge({
      name: 'walhub_cache_bytes',
      help: 'Memory held by the readahead cache: decoded segments cached, reserved for the decode under way, spare (blocks of dropped segments kept to decode into), and retained (blocks a failed transfer may still hold, until collected).',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const { cache } = readahead;
        this.set({ state: 'cached' }, cache.cachedBytes);
        this.set({ state: 'decoding' }, cache.reservedBytes);
        this.set({ state: 'spare' }, cache.spareBytes);
        this.set({ state: 'retained' }, cache.retainedBytes);
      },
    });
    const counted = new Map<string, number>();
    new Counter({
      name: 'walhub_readahead_decodes_total',
      help: `Segments read ahead, by outcome (${READAHEAD_OUTCOMES.join(', ')}).`,
      labelNames: ['outcome'],
      registers: [registry],
      collect() {
        for (const [outcome, total] of readahead.outcomes) {
          const added = total - (counted.get(outcome) ?? 0);
          this.inc({ outcome }, added);
          counted.set(outcome, total);
        }
      },
    });
  }

  const knownServers = new Set(sources.configuredServers);
  const serverLabel = (server: unknown, result: unknown): string => {
    if (typeof server !== 'string') return 'none';
    if (knownServers.has(server)) return server;
    if (typeof result === 'string' && SERVER_PROVEN_BY.has(result)) {
      knownServers.add(server);
      return server;
    }
    return 'other';
  };

  const consume: AuditConsumer = (event, fields) => {
    if (event === 'request') {
      const server = serverLabel(fields.server, fields.result);
      requests.inc({ server, result: String(fields.result) });
      if (typeof fields.bytes === 'number' && fields.bytes > 0) bytesSent.inc({ server }, fields.bytes);
      if (typeof fields.ms === 'number') duration.observe(fields.ms / 1000);
      if (fields.cache === 'hit' || fields.cache === 'miss') cacheRequests.inc({ result: fields.cache });
    } else if (event === 'auth' && fields.result === 'refused') {
      // Past its rate limit an address's refusals get one summary record, which
      // carries how many there were: each counts, so a flood shows as one.
      if (typeof fields.suppressed === 'number' && fields.suppressed > 0) authFailures.inc({ reason: 'rate_limited' }, fields.suppressed);
      else authFailures.inc({ reason: toAuthFailureReason(fields.reason) });
    }
  };
  return { consume, registry };
}

export interface MetricsEndpoint {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/** GET /metrics in Prometheus's text format; everything else is 404. */
export async function startMetricsEndpoint(metrics: Metrics, listen: { host: string; port: number }): Promise<MetricsEndpoint> {
  const server: Server = createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      () => response.writeHead(500).end(),
    );
  });
  // A scraper gets a few seconds; nobody holds a socket open forever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.maxConnections = 16;
  server.listen(listen.port, listen.host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([error]) => Promise.reject(error))]);
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
