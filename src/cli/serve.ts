import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import { createAuditLog, type AuditConsumer } from '../audit/audit-log.js';
import { createDecoderTable } from '../archive/compression.js';
import { preallocateCache } from '../archive/preallocate.js';
import { Readahead } from '../archive/readahead.js';
import { WalCache } from '../archive/wal-cache.js';
import { ZstdWorkerPool } from '../archive/zstd-worker-pool.js';
import { createTransferCounts, type Hub } from '../command/get-wal.js';
import { loadConfig } from '../config.js';
import { unreachableKeyWarning } from '../keys/authorized-keys.js';
import { KeyStore } from '../keys/key-store.js';
import { growHeapForBuffers } from '../heap-growth.js';
import { createProgramLog } from '../log.js';
import type { MetricsEndpoint } from '../metrics/metrics.js';
import { loadHostKeys, toKnownHostsLine } from '../ssh/host-keys.js';
import { startServer, type RunningServer } from '../ssh/server.js';
import { VERSION } from '../version.js';
import { COMMON_OPTIONS_HELP, parseOptions, reportKnownError, type CliResult } from './options.js';

const HELP = `usage: walhub serve [--config FILE]

Runs the SSH server in the foreground. Logs JSON lines to stdout; requests go
to the audit log named in the configuration. Creates the ed25519 host key at
first start. SIGHUP re-reads authorized_keys; SIGUSR1 reopens the audit log
(after logrotate); SIGTERM lets transfers in flight finish (up to 30 s) and
stops, after [proxy] drain_time when behind a balancer. With [metrics] listen
in the configuration, serves Prometheus metrics on http://ADDRESS/metrics.

${COMMON_OPTIONS_HELP}`;

const AUTHORIZED_KEYS_TEMPLATE = `# walhub authorized_keys: one standby key a line, OpenSSH format.
# servers= is required and names the server IDs the key may read ("*" for all):
#   servers="pg1",from="10.1.0.0/16",expiry-time="20271231" ssh-ed25519 AAAA... standby-a
# Changes take effect without a restart.
`;

export async function runServe(args: string[]): Promise<CliResult> {
  const options = parseOptions(args);
  if (typeof options === 'string') return usage(options);
  if (options.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  growHeapForBuffers();
  const log = createProgramLog();
  // Until the reload handler is installed: a SIGHUP's default action would end the process
  // (systemd takes that as a clean exit). The keys are read at start, and watched, anyway.
  const earlyReload = () => log.info('SIGHUP during start-up: nothing to reload yet (the authorized keys are read at start, then watched)');
  process.on('SIGHUP', earlyReload);
  // A bug must leave its stack in the log before the process goes (systemd restarts it).
  process.on('uncaughtException', (error) => {
    log.fatal({ err: error }, 'internal error, exiting');
    process.exit(70);
  });
  // A failed start ends the decoding threads it started, as a stop does.
  let zstdPool: ZstdWorkerPool | undefined;
  try {
    const config = loadConfig(options.config);
    const hostKeys = loadHostKeys(config.hostKeys, { create: true });
    for (const key of hostKeys) {
      if (key.created) log.info({ path: key.path }, 'host key created');
      log.info({ path: key.path, fingerprint: key.fingerprint }, 'host key');
    }
    if (!existsSync(config.archive)) log.warn({ archive: config.archive }, 'archive directory does not exist yet');
    if (!existsSync(config.authorizedKeys)) {
      mkdirSync(dirname(config.authorizedKeys), { recursive: true, mode: 0o700 });
      writeFileSync(config.authorizedKeys, AUTHORIZED_KEYS_TEMPLATE, { mode: 0o600, flag: 'wx' });
      log.info({ path: config.authorizedKeys }, 'authorized_keys created, empty: add standby keys to it');
    }

    const keys = new KeyStore(config.authorizedKeys, {
      loaded: (set) => {
        for (const problem of set.problems) log.warn(problem);
        for (const entry of set.byBlob.values()) {
          const unreachable = unreachableKeyWarning(entry);
          if (unreachable) log.warn(`${config.authorizedKeys}:${entry.line}: ${unreachable}`);
        }
        log.info({ path: config.authorizedKeys, keys: set.byBlob.size, skipped: set.problems.length }, 'authorized keys loaded');
      },
      failed: (error) => log.error({ path: config.authorizedKeys, err: error.message }, 'cannot read authorized keys; the last good set stays in force'),
    });
    await keys.reload();
    keys.watch();

    const pool = (zstdPool = new ZstdWorkerPool());
    const decoders = createDecoderTable(undefined, pool);
    for (const reason of decoders.missing.values()) log.info(reason);
    const transfers = createTransferCounts();
    const { memory, readahead: depth, preallocate } = config.cache;
    const cache = memory > 0 && depth > 0 ? new WalCache(memory) : undefined;
    if (!cache && preallocate) log.warn('[cache] preallocate ignored: the cache is off (memory or readahead is 0)');
    const readahead = cache
      ? new Readahead({
          cache,
          depth,
          decoders,
          limits: config.limits,
          requestsActive: () => ({ all: transfers.active, fromArchive: transfers.fromArchive }),
          busyAt: Math.max(1, availableParallelism()),
          log,
        })
      : undefined;
    const hub: Hub = { config, decoders, transfers, ...(readahead ? { readahead } : {}) };
    const consumers: AuditConsumer[] = [];
    let server: RunningServer | undefined;
    let metricsEndpoint: MetricsEndpoint | undefined;
    // Loaded only when configured: prom-client costs about 12 MiB of RSS.
    const metricsModule = config.metrics ? await import('../metrics/metrics.js') : undefined;
    const metrics = metricsModule
      ? metricsModule.createMetrics({
          configuredServers: Object.keys(config.servers),
          authorizedKeys: () => keys.current.byBlob.size,
          connections: () => server?.connections.size ?? 0,
          sessions: () => [...(server?.connections ?? [])].reduce((sum, c) => sum + c.openSessions, 0),
          ...(readahead ? { readahead } : {}),
        })
      : undefined;
    if (metrics) consumers.push(metrics.consume);
    const audit = createAuditLog(config.auditLog, consumers);
    // Before the long step below: a reload (SIGHUP) meanwhile must not kill the process, as the signal's default would.
    process.on('SIGUSR1', () => {
      log.info({ path: config.auditLog }, 'SIGUSR1: reopening the audit log');
      audit.reopen();
    });
    process.on('SIGHUP', () => {
      log.info('SIGHUP: re-reading authorized keys');
      void keys.reload();
    });
    process.off('SIGHUP', earlyReload);
    // Before listening: the first requests then find memory already handed out.
    if (cache && preallocate) preallocateCache(cache, log);
    server = await startServer({ hub, keys, hostKeys, audit, log, version: VERSION });
    if (metricsModule && metrics && config.metrics) {
      metricsEndpoint = await metricsModule.startMetricsEndpoint(metrics, config.metrics.listen);
      log.info({ host: metricsEndpoint.address.address, port: metricsEndpoint.address.port }, 'metrics listening');
    }
    const running = server;
    for (const address of server.addresses) {
      log.info({ host: address.address, port: address.port, version: VERSION }, 'listening');
      for (const key of hostKeys) {
        // What a standby admin pastes into ~/.ssh/known_hosts; a wildcard address would match no connection.
        if (isWildcard(address.address)) log.info({ port: address.port }, 'listening on all addresses: for the standbys\' known_hosts line, run walhub host-key --host NAME');
        else log.info({ known_hosts: toKnownHostsLine(key, address.address, address.port) }, 'known_hosts line');
      }
    }

    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log.info({ signal, transfers: hub.transfers.active }, 'stopping');
        keys.close();
        // Background work ends at once; requests in flight still finish.
        void readahead?.close();
        // SIGTERM behind a balancer: first fail its health checks while still serving, then stop accepting.
        void (signal === 'SIGINT' ? Promise.resolve() : running.drain())
          .then(() => running.close(signal === 'SIGINT' ? 0 : 30_000))
          .then(() => metricsEndpoint?.close())
          .then(() => audit.flush())
          .then(() => pool.close())
          .then(resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    log.info('stopped');
    return 0;
  } catch (error) {
    await zstdPool?.close();
    if (!reportKnownError(error)) process.stderr.write(`walhub: cannot start: ${toStartFailure(error, options.config)}\n`);
    return 1;
  }
}

function usage(message: string): CliResult {
  process.stderr.write(`walhub serve: ${message}\n${HELP}\n`);
  return 2;
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/** A listen failure names the address and the setting to change; anything else is a bug, with its stack. */
function toStartFailure(error: unknown, configFile: string): string {
  const e = error as NodeJS.ErrnoException & { address?: string; port?: number };
  const where = e.address !== undefined ? `${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port ?? '?'}` : 'the listen address';
  if (e.code === 'EADDRINUSE') return `${where} is already in use (another walhub or sshd?): change "listen" in ${configFile}`;
  if (e.code === 'EACCES') return `not allowed to listen on ${where} (ports below 1024 need privileges): change "listen" in ${configFile}`;
  if (e.code === 'EADDRNOTAVAIL') return `${where} is not an address of this host: change "listen" in ${configFile}`;
  return e.stack ?? String(e);
}
