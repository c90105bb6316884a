import { once } from 'node:events';
import { BlockList, createServer, isIP, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Logger } from 'pino';
import ssh2 from 'ssh2';
import type { AuditLog } from '../audit/audit-log.js';
import type { Hub } from '../command/get-wal.js';
import type { KeyStore } from '../keys/key-store.js';
import { toPlainAddress } from '../keys/from-pattern.js';
import { Admission } from './admission.js';
import { toAlgorithms } from './algorithms.js';
import { handleAuthentication } from './auth.js';
import { Connection } from './connection.js';
import type { HostKey } from './host-keys.js';
import { PenaltyBox } from './penalties.js';
import { readProxyHeader, startsLikeProxyHeader } from './proxy-protocol.js';
import { RekeyBudget } from './rekey-budget.js';
import { RefusalLog } from './refusal-log.js';
import { RefusalLimiter } from './refusal-limiter.js';
import { handleSession } from './session.js';
import { toSourceKey } from './source-address.js';

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
  /**
   * Behind a balancer ([proxy] trusted), fails its health checks (LOCAL
   * headers get no banner) for drain_time while still serving every proxied
   * client, so the balancer sends new clients elsewhere before close().
   */
  drain(): Promise<void>;
  /** Stops accepting, lets transfers in flight finish for up to `graceMs`, then ends every connection. */
  close(graceMs?: number): Promise<void>;
}

/** sshd has no such limit; a socket that never sends its ident line gets 10 s, not the whole login grace time. */
const IDENT_TIMEOUT_MS = 10_000;
/** A balancer's header comes with its first packet; 5 s is generous even across a WAN. */
const PROXY_HEADER_TIMEOUT_MS = 5_000;
/** See rekey-budget.ts. Before login, penalized as a login that timed out. */
const TOO_MANY_REKEYS = 'key re-exchanges too frequent';
/** A login keeps its source exempt from penalties this long (see penalties.ts). */
const LOGIN_EXEMPTS_SOURCE_MS = 24 * 3_600_000;
/**
 * The longest a connection from an exempt source under penalty waits for its
 * banner (see penalties.ts): with per_source_max_startups at 10, at most 5 key
 * exchanges a second from it; far below the ident timeout.
 */
const EXEMPT_SLOW_MAX_MS = 2_000;
/** A source a standby uses is slowed only past one key exchange without a login a second, kept up for penalty_min. */
const EXEMPT_SLOW_STEP_MS = 1_000;
/** Like sshd's max-sources4/6. */
const MAX_PENALIZED_SOURCES = 65_536;

/** One listener's ssh2 server and its sockets still waiting for their ident line. */
interface Front {
  readonly ssh: ssh2.Server;
  /**
   * By remote ip:port, which is unique among one listener's sockets (not
   * across listeners: hence one Front per listener). ssh2 reports a
   * connection with its address, not its socket.
   */
  readonly awaitingIdent: Map<string, { conn: Connection; identArrived: () => void; cutOff: (reason: string) => void }>;
}

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
  const admission = new Admission(limits);
  const penalties = new PenaltyBox(
    { min: limits.penaltyMin, max: limits.penaltyMax, exemptFor: LOGIN_EXEMPTS_SOURCE_MS, slowMax: EXEMPT_SLOW_MAX_MS, slowStep: EXEMPT_SLOW_STEP_MS, maxSources: MAX_PENALIZED_SOURCES },
    (blob) => deps.keys.current.byBlob.has(blob),
  );
  const refusals = new RefusalLog(deps.log);
  const algorithms = toAlgorithms(config.fipsAlgorithms);
  let closing = false;

  const createFront = (): Front => {
    const awaitingIdent: Front['awaitingIdent'] = new Map();
    const ssh = new ssh2.Server(
      { hostKeys: deps.hostKeys.map((k) => k.privateKey), ident: `walhub_${deps.version}`, algorithms },
      (client, info) => {
        const key = `${info.ip}:${info.port}`;
        const waiting = awaitingIdent.get(key);
        awaitingIdent.delete(key);
        const conn = waiting?.conn;
        // Always listen: once past the ident line ssh2 drops its own handler and an
        // unhandled 'error' would take the whole process down.
        client.on('error', (error) => conn?.log.debug({ err: error.message }, 'connection error'));
        if (!waiting || !conn) return client.end();
        waiting.identArrived();
        const rekeys = new RekeyBudget(performance.now());
        client.on('rekey', () => {
          if (conn.identity && rekeys.take(performance.now(), conn.bytesCarried())) return;
          // Before login the close is logged as a failed login, with this reason.
          if (conn.identity) conn.log.warn({ address: conn.remoteAddress }, `connection closed: ${TOO_MANY_REKEYS}`);
          waiting.cutOff(TOO_MANY_REKEYS);
        });
        conn.attach(client, info.header.identRaw);
        deps.audit.record('connect', conn.fields());
        handleClient(client, conn);
      },
    );
    return { ssh, awaitingIdent };
  };

  const trustedProxies = toBlockList(config.proxy.trusted);
  const penaltyExempt = toBlockList(limits.penaltyExempt);
  /** Sockets from a balancer still sending their PROXY header: not yet counted by any source. */
  let awaitingHeader = 0;
  let draining = false;

  const handleSocket = (socket: Socket, front: Front) => {
    const peer = toPlainAddress(socket.remoteAddress ?? '');
    socket.on('error', () => {});
    if (!isListed(trustedProxies, peer)) return admitSocket(socket, front, peer, undefined);
    // Each balancer connection counts under the client it carries, known only
    // from its header: until then, a bound on them all, not per source.
    if (closing || awaitingHeader >= limits.maxStartups) {
      deps.log.warn({ proxy: peer, reason: closing ? 'shutting down' : 'too many connections awaiting their PROXY header' }, 'proxied connection refused');
      return void socket.destroy();
    }
    awaitingHeader++;
    void readProxyHeader(socket, Math.min(PROXY_HEADER_TIMEOUT_MS, limits.loginGraceTime)).then((header) => {
      awaitingHeader--;
      if (socket.destroyed) return;
      if (header.kind === 'invalid') {
        // Not "connection refused" with `address`: fail2ban would ban the balancer, and every standby behind it.
        deps.log.warn({ proxy: peer, reason: header.reason }, 'proxied connection refused');
        return void socket.destroy();
      }
      if (header.kind === 'local') {
        // The balancer's own health check: while draining it must fail, and sees no banner.
        if (draining) return void socket.destroy();
        return admitSocket(socket, front, peer, undefined, { healthCheck: true });
      }
      if (header.kind === 'unknown') return admitSocket(socket, front, peer, undefined, { unattributed: true });
      admitSocket(socket, front, toPlainAddress(header.address), { address: header.address, port: header.port });
    }).catch((error: unknown) => {
      // A direct connection's mishap is caught by ssh2's handlers; this one would end the process (exit 70) for every standby.
      deps.log.error({ proxy: peer, err: error instanceof Error ? error.message : String(error) }, 'proxied connection failed');
      socket.destroy();
    });
  };

  /**
   * `unattributed`: a PROXY LOCAL or UNKNOWN connection, whose address is the
   * balancer's own: no penalty counts or refuses it, and no line fail2ban
   * reads names it, or one client's failed logins would shut out every
   * standby behind the balancer. `healthCheck`: LOCAL, the balancer's health
   * check. UNKNOWN (a client the balancer has no address for, as HAProxy
   * sends for a unix-socket frontend's) counts apart from the health checks
   * in the per-source caps, so that such clients cannot take the checks' slots.
   */
  const admitSocket = (
    socket: Socket,
    front: Front,
    address: string,
    proxied: { address: string; port: number } | undefined,
    { healthCheck = false, unattributed = healthCheck }: { healthCheck?: boolean; unattributed?: boolean } = {},
  ) => {
    // Decide before spending anything on the socket: no Connection, no ssh2, no audit record.
    const source = `${unattributed && !healthCheck ? 'PROXY UNKNOWN via ' : ''}${toSourceKey(address, limits.perSourceIpv6Prefix)}`;
    if (closing) {
      refusals.refuse(address, source, 'shutting down', { balancer: unattributed });
      return void socket.destroy();
    }
    // In penalty_exempt: slowed, never refused, as a source a standby logged in from.
    const listed = !unattributed && isListed(penaltyExempt, address);
    const penalty = unattributed ? { refused: false as const } : penalties.check(source, { listed });
    if (penalty.refused) {
      // Once per penalty period: the source is known to be failing, its every retry is not news.
      if (penalty.first) refusals.write(address, 'penalized for connections that did not log in', { penalty_s: Math.ceil(penalty.remainingMs / 1000) });
      return void socket.destroy();
    }
    const refusal = admission.check(source);
    if (refusal) {
      refusals.refuse(address, source, refusal, { balancer: unattributed });
      return void socket.destroy();
    }

    const ticket = admission.admit(source);
    // Handshakes and small answers are many short packets: without this each
    // waits on the peer's delayed ACK (40 ms on Linux).
    socket.setNoDelay(true);
    const conn = new Connection(socket, deps.audit, deps.log, proxied);
    socket.on('error', (error) => conn.log.debug({ err: error.message }, 'socket error'));
    connections.add(conn);
    let authenticated = false;
    let timedOut = false;
    const timeOut = (reason: string) => () => {
      timedOut = true;
      conn.closeReason = reason;
      conn.end();
    };
    const identKey = `${socket.remoteAddress}:${socket.remotePort}`;
    const identTimer = setTimeout(timeOut('no SSH identification line within 10 s'), IDENT_TIMEOUT_MS);
    front.awaitingIdent.set(identKey, { conn, identArrived: () => clearTimeout(identTimer), cutOff: (reason) => timeOut(reason)() });
    // sshd's LoginGraceTime, counted from the TCP accept.
    const grace = setTimeout(timeOut('login grace time exceeded'), limits.loginGraceTime);
    conn.onAuthenticated = () => {
      clearTimeout(grace);
      authenticated = true;
      ticket.markAuthenticated();
      if (conn.identity && !unattributed) penalties.recordLogin(source, conn.identity.key.blob.toString('base64'));
    };
    socket.once('close', () => {
      clearTimeout(grace);
      clearTimeout(identTimer);
      conn.clearIdle();
      if (front.awaitingIdent.get(identKey)?.conn === conn) front.awaitingIdent.delete(identKey);
      ticket.release();
      connections.delete(conn);
      // Past the ident line a key exchange starts: before it, a connection cost walhub next to nothing.
      const keyExchange = conn.clientIdent !== undefined;
      if (!authenticated && !closing && (timedOut || (conn.login?.counted ?? 0) > 0)) {
        // Read before penalize(): a login exempts the source, and fail2ban must not ban the standby there.
        const exempt = listed || (!unattributed && penalties.exempts(source));
        if (!unattributed) penalties.penalize(source, timedOut ? limits.penaltyLoginTimeout : limits.penaltyAuthFailure, { keyExchange, listed });
        // One line per failed connection, for fail2ban: the per-source caps and
        // penalties bound how many a source can cause.
        const reason = conn.closeReason ?? 'authentication failed';
        const who = unattributed ? { proxy: address } : { address, ...(exempt ? { standby_source: true } : {}) };
        conn.log.warn({ ...who, reason, auth_attempts: conn.login?.counted ?? 0 }, 'login failed');
      } else if (!authenticated && !closing && !unattributed && keyExchange) {
        // A balancer's or a monitor's check that reads the banner and leaves is not counted.
        // No line for these: the penalty, once it shuts the source out, writes one.
        penalties.penalize(source, limits.penaltyNoAuth, { keyExchange, listed });
      }
      // A health check that went no further than the banner is no one's connection.
      if (healthCheck && conn.clientIdent === undefined) return;
      deps.audit.record('disconnect', {
        ...conn.fields(),
        ms: Date.now() - conn.startedAt,
        requests: conn.requests,
        ...(conn.closeReason ? { reason: conn.closeReason } : {}),
      });
    });
    const answer = () => {
      if (socket.destroyed) return;
      if (closing) return void socket.destroy();
      front.ssh.injectSocket(socket);
      // Added after ssh2 paused the socket, so ssh2 loses no byte; runs before its parser.
      if (!proxied && !unattributed) refuseUntrustedProxyHeader(socket, conn);
    };
    if (penalty.slowMs === undefined) return answer();
    // A quarter of login_grace_time at most: the wait counts against it.
    const waitMs = Math.min(penalty.slowMs, limits.loginGraceTime / 4);
    // Not "connection refused": this source is a standby's, which fail2ban must not ban.
    if (penalty.first) conn.log.warn({ address, reason: 'connections without a login from a source a standby uses', wait_ms: Math.round(waitMs) }, 'connections slowed');
    const wait = setTimeout(answer, waitMs);
    socket.once('close', () => clearTimeout(wait));
  };

  /** A balancer not in [proxy] trusted: its header is refused by name, never read as SSH or believed. */
  const refuseUntrustedProxyHeader = (socket: Socket, conn: Connection) => {
    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk.subarray(0, 16)]);
      const looks = startsLikeProxyHeader(seen);
      if (looks === undefined) return;
      socket.off('data', onData);
      if (!looks) return;
      conn.closeReason = 'PROXY protocol header from an address not in [proxy] trusted';
      conn.log.warn({ address: conn.remoteAddress, reason: conn.closeReason }, 'connection refused');
      socket.destroy();
    };
    socket.on('data', onData);
  };

  const refusedLogins = new RefusalLimiter((address, suppressed) => {
    const reason = `rate limit: ${suppressed} refused logins from this address not recorded`;
    deps.log.warn({ address, suppressed }, 'refused logins not recorded');
    deps.audit.record('auth', { conn: '-', remote: address, user: '-', method: '-', result: 'refused', reason, suppressed });
  });
  const authDeps = { user: config.user, keys: deps.keys, maxAuthTries: limits.maxAuthTries, audit: deps.audit, refusals: refusedLogins };

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
      const front = createFront();
      const listener = createServer((socket) => handleSocket(socket, front));
      listener.on('error', (error: Error) => deps.log.error({ err: error.message }, 'listener error'));
      listener.listen(port, host);
      await Promise.race([once(listener, 'listening'), once(listener, 'error').then(([error]) => Promise.reject(error))]);
      return listener;
    }),
  );

  return {
    addresses: listeners.map((l) => l.address() as AddressInfo),
    connections,
    async drain() {
      if (config.proxy.trusted.length === 0 || config.proxy.drainTime === 0) return;
      draining = true;
      deps.log.info({ drain_s: config.proxy.drainTime / 1000 }, 'draining: failing the balancer\'s health checks, still serving');
      await new Promise((r) => setTimeout(r, config.proxy.drainTime));
    },
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
      refusedLogins.close();
    },
  };
}

function toBlockList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [ip, bits] = entry.split('/') as [string, string | undefined];
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(ip, type);
    else list.addSubnet(ip, Number(bits), type);
  }
  return list;
}

function isListed(list: BlockList, address: string): boolean {
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}
