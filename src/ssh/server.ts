import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import ssh2 from 'ssh2';
import type { AuditLog } from '../audit/audit-log.js';
import type { Hub } from '../command/get-wal.js';
import type { KeyStore } from '../keys/key-store.js';
import { handleAuthentication } from './auth.js';
import { Connection } from './connection.js';
import type { HostKey } from './host-keys.js';
import { handleSession } from './session.js';

export interface ServerDeps {
  readonly hub: Hub;
  readonly keys: KeyStore;
  readonly hostKeys: readonly HostKey[];
  readonly audit: AuditLog;
  readonly log: Logger;
  readonly version: string;
}

export interface RunningServer {
  readonly addresses: readonly AddressInfo[];
  readonly connections: ReadonlySet<Connection>;
  /** Stops accepting, lets transfers in flight finish for up to `graceMs`, then ends every connection. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Only modern algorithms: no SHA-1 host-key signatures or MACs, no
 * compression (WAL is already decoded; zlib would only cost CPU).
 */
const ALGORITHMS = {
  serverHostKey: { remove: ['ssh-rsa', 'ssh-dss'] },
  hmac: { remove: ['hmac-sha1', 'hmac-sha1-etm@openssh.com'] },
  kex: { remove: ['diffie-hellman-group-exchange-sha1', 'diffie-hellman-group14-sha1', 'diffie-hellman-group1-sha1'] },
  compress: ['none'],
} as const;

/** The listener: accepts connections on every configured address and owns every limit and timeout. */
export async function startServer(deps: ServerDeps): Promise<RunningServer> {
  const { config } = deps.hub;
  const { limits } = config;
  const connections = new Set<Connection>();
  let unauthenticated = 0;
  let closing = false;

  const onConnection = (client: ssh2.Connection, info: ssh2.ClientInfo) => {
    const conn = new Connection(client, info.ip, info.port, deps.audit, deps.log);
    conn.clientIdent = info.header.identRaw;
    // Always listen: once past the ident line ssh2 drops its own handler and an
    // unhandled 'error' would take the whole process down.
    client.on('error', (error) => conn.log.debug({ err: error.message }, 'connection error'));
    if (closing || connections.size >= limits.maxConnections || unauthenticated >= limits.maxStartups) {
      const reason = closing ? 'shutting down' : 'too many connections';
      conn.log.warn({ reason }, 'connection dropped');
      deps.audit.record('disconnect', { ...conn.fields(), ms: 0, requests: 0, reason });
      client.end();
      return;
    }
    connections.add(conn);
    unauthenticated++;
    let authenticated = false;
    deps.audit.record('connect', conn.fields());

    let closeReason: string | undefined;
    // sshd's LoginGraceTime: ssh2 itself would wait forever.
    const grace = setTimeout(() => {
      conn.log.warn('login grace time exceeded');
      closeReason = 'login grace time exceeded';
      client.end();
    }, limits.loginGraceTime);
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      clearTimeout(idle);
      if (conn.openSessions === 0) {
        idle = setTimeout(() => {
          closeReason = 'idle timeout';
          client.end();
        }, limits.idleTimeout);
      }
    };

    client.on('authentication', (ctx) =>
      handleAuthentication(ctx, conn, { user: config.user, keys: deps.keys, maxAuthTries: limits.maxAuthTries }),
    );
    client.on('ready', () => {
      clearTimeout(grace);
      authenticated = true;
      unauthenticated--;
      armIdle();
      client.on('session', (accept, reject) => {
        if (conn.openSessions >= limits.maxSessions || closing) return reject();
        conn.openSessions++;
        clearTimeout(idle);
        const session = accept();
        // ssh2 emits 'close' on the session once its channel is closed.
        session.once('close', () => {
          conn.openSessions--;
          armIdle();
        });
        handleSession(session, conn, { hub: deps.hub, audit: deps.audit });
      });
    });
    client.on('close', () => {
      clearTimeout(grace);
      clearTimeout(idle);
      if (!authenticated) unauthenticated--;
      connections.delete(conn);
      deps.audit.record('disconnect', {
        ...conn.fields(),
        ms: Date.now() - conn.startedAt,
        requests: conn.requests,
        ...(closeReason ? { reason: closeReason } : {}),
      });
    });
  };

  const servers = await Promise.all(
    config.listen.map(async ({ host, port }) => {
      const server = new ssh2.Server(
        {
          hostKeys: deps.hostKeys.map((k) => k.privateKey),
          ident: `walhub_${deps.version}`,
          algorithms: ALGORITHMS as unknown as ssh2.Algorithms,
        },
        onConnection,
      );
      server.on('error', (error: Error) => deps.log.error({ err: error.message }, 'listener error'));
      server.listen(port, host);
      await Promise.race([once(server, 'listening'), once(server, 'error').then(([error]) => Promise.reject(error))]);
      return server;
    }),
  );

  return {
    addresses: servers.map((s) => s.address() as AddressInfo),
    connections,
    async close(graceMs = 0) {
      closing = true;
      // net.Server.close() calls back only once every connection is gone.
      const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
      const deadline = Date.now() + graceMs;
      while (deps.hub.transfers.active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const conn of connections) conn.end();
      // A peer that never answers our disconnect must not hold shutdown hostage.
      await Promise.race([Promise.all(closed), new Promise((r) => setTimeout(r, 2000).unref())]);
    },
  };
}
