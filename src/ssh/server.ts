import { once } from 'node:events';
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Logger } from 'pino';
import ssh2 from 'ssh2';
import type { AuditLog } from '../audit/audit-log.js';
import type { Hub } from '../command/get-wal.js';
import type { KeyStore } from '../keys/key-store.js';
import { handleAuthentication } from './auth.js';
import { Connection } from './connection.js';
import type { HostKey } from './host-keys.js';
import { RefusalLimiter } from './refusal-limiter.js';
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

/**
 * The listener. It accepts TCP itself and hands sockets to ssh2, so that
 * every limit and timeout applies from the first byte: ssh2 reports a
 * connection only after the client's ident line, and a socket that never
 * sends one would otherwise stay open forever.
 */
export async function startServer(deps: ServerDeps): Promise<RunningServer> {
  const { config } = deps.hub;
  const { limits } = config;
  const connections = new Set<Connection>();
  /** By remote ip:port, until ssh2 reports the connection after the ident line. */
  const awaitingIdent = new Map<string, Connection>();
  let unauthenticated = 0;
  let closing = false;

  const ssh = new ssh2.Server(
    {
      hostKeys: deps.hostKeys.map((k) => k.privateKey),
      ident: `walhub_${deps.version}`,
      algorithms: ALGORITHMS as unknown as ssh2.Algorithms,
    },
    (client, info) => {
      const key = `${info.ip}:${info.port}`;
      const conn = awaitingIdent.get(key);
      awaitingIdent.delete(key);
      // Always listen: once past the ident line ssh2 drops its own handler and an
      // unhandled 'error' would take the whole process down.
      client.on('error', (error) => conn?.log.debug({ err: error.message }, 'connection error'));
      if (!conn) return client.end();
      conn.attach(client, info.header.identRaw);
      deps.audit.record('connect', conn.fields());
      handleClient(client, conn);
    },
  );

  const handleSocket = (socket: Socket) => {
    // Handshakes and small answers are many short packets: without this each
    // waits on the peer's delayed ACK (40 ms on Linux).
    socket.setNoDelay(true);
    const conn = new Connection(socket, deps.audit, deps.log);
    socket.on('error', (error) => conn.log.debug({ err: error.message }, 'socket error'));
    if (closing || connections.size >= limits.maxConnections || unauthenticated >= limits.maxStartups) {
      const reason = closing ? 'shutting down' : 'too many connections';
      conn.log.warn({ reason }, 'connection dropped');
      deps.audit.record('disconnect', { ...conn.fields(), ms: 0, requests: 0, reason });
      socket.destroy();
      return;
    }
    connections.add(conn);
    unauthenticated++;
    let countedUnauthenticated = true;
    const remoteKey = `${socket.remoteAddress}:${socket.remotePort}`;
    awaitingIdent.set(remoteKey, conn);
    // sshd's LoginGraceTime, counted from the TCP accept.
    const grace = setTimeout(() => {
      conn.closeReason = 'login grace time exceeded';
      conn.log.warn('login grace time exceeded');
      conn.end();
    }, limits.loginGraceTime);
    conn.onAuthenticated = () => {
      clearTimeout(grace);
      if (countedUnauthenticated) unauthenticated--;
      countedUnauthenticated = false;
    };
    socket.once('close', () => {
      clearTimeout(grace);
      conn.clearIdle();
      awaitingIdent.delete(remoteKey);
      if (countedUnauthenticated) unauthenticated--;
      connections.delete(conn);
      deps.audit.record('disconnect', {
        ...conn.fields(),
        ms: Date.now() - conn.startedAt,
        requests: conn.requests,
        ...(conn.closeReason ? { reason: conn.closeReason } : {}),
      });
    });
    ssh.injectSocket(socket);
  };

  const refusals = new RefusalLimiter((address, suppressed) => {
    const reason = `rate limit: ${suppressed} refused logins from this address not recorded`;
    deps.log.warn({ address, suppressed }, 'refused logins not recorded');
    deps.audit.record('auth', { conn: '-', remote: address, user: '-', method: '-', result: 'refused', reason, suppressed });
  });
  const authDeps = { user: config.user, keys: deps.keys, maxAuthTries: limits.maxAuthTries, audit: deps.audit, refusals };

  const sessionDeps = { hub: deps.hub, audit: deps.audit, keys: deps.keys, startTimeout: limits.sessionStartTimeout };

  const handleClient = (client: ssh2.Connection, conn: Connection) => {
    client.on('authentication', (ctx) => handleAuthentication(ctx, conn, authDeps));
    client.on('ready', () => {
      conn.onAuthenticated?.();
      conn.armIdle(limits.idleTimeout);
      client.on('session', (accept, reject) => {
        if (conn.openSessions >= limits.maxSessions || closing) return reject();
        conn.openSessions++;
        const session = accept();
        // ssh2 emits 'close' on the session once its channel is closed.
        session.once('close', () => conn.openSessions--);
        handleSession(session, conn, client, sessionDeps);
      });
    });
  };

  const listeners: NetServer[] = await Promise.all(
    config.listen.map(async ({ host, port }) => {
      const listener = createServer(handleSocket);
      listener.on('error', (error: Error) => deps.log.error({ err: error.message }, 'listener error'));
      listener.listen(port, host);
      await Promise.race([once(listener, 'listening'), once(listener, 'error').then(([error]) => Promise.reject(error))]);
      return listener;
    }),
  );

  return {
    addresses: listeners.map((l) => l.address() as AddressInfo),
    connections,
    async close(graceMs = 0) {
      closing = true;
      // net.Server.close() calls back only once every connection is gone.
      const closed = listeners.map((l) => new Promise<void>((resolve) => l.close(() => resolve())));
      // Wait for sessions, not just transfers: a session still has to send its
      // exit status and close, and a client disconnected before that exits 255.
      const deadline = Date.now() + graceMs;
      const busy = () => deps.hub.transfers.active > 0 || [...connections].some((c) => c.openSessions > 0);
      while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const conn of connections) conn.end();
      await Promise.race([Promise.all(closed), new Promise((r) => setTimeout(r, 3000).unref())]);
      refusals.close();
    },
  };
}
