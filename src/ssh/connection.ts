import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Socket } from 'node:net';
import type { Connection as Ssh2Connection } from 'ssh2';
import type { AuditLog, ConnectionFields } from '../audit/audit-log.js';
import type { Outlet } from '../command/channel-sink.js';
import type { KeyEntry } from '../keys/authorized-keys.js';
import { toPlainAddress } from '../keys/from-pattern.js';
import { MAX_CLIENT_IDENT, toLoggable } from './loggable.js';
import type { LoginAttempts } from './login-attempts.js';
import { recyclePackets, type PacketSlabs } from './packet-slabs.js';

/**
 * Bytes that may wait in one connection's socket before its sessions stop
 * handing ssh2 more. A few packets' worth keeps a fast client's pipe full;
 * more is only memory a client that stopped reading makes walhub hold.
 */
const MAX_QUEUED_BYTES = 1024 * 1024;
/** How often a blocked sender looks again when no 'drain' comes (key re-exchange ends, socket closes). */
const RECHECK_MS = 50;
const EMPTY = Buffer.alloc(0);

/** What walhub knows about one connection, from TCP accept to close. */
export class Connection implements Outlet {
  readonly id = randomBytes(6).toString('hex');
  readonly remoteAddress: string;
  readonly remote: string;
  readonly startedAt = Date.now();
  readonly log: Logger;
  /** Authentication attempts and refusals, from the first one (see auth.ts). */
  login: LoginAttempts | undefined;
  openSessions = 0;
  requests = 0;
  clientIdent: string | undefined;
  /** Why walhub closed it, for the disconnect record. */
  closeReason: string | undefined;
  onAuthenticated: (() => void) | undefined;
  private idle: NodeJS.Timeout | undefined;
  private idleMs: number | undefined;
  private commandsRunning = 0;
  /** Set only after a verified signature (see auth.ts). */
  identity: KeyEntry | undefined;
  user: string | undefined;

  /** Set once the client has sent its ident line and ssh2 has taken over. */
  private client: Ssh2Connection | undefined;
  /** Where ssh2's outgoing packets come from, when this ssh2 is one packet-slabs.ts knows. */
  private slabs: PacketSlabs | undefined;
  /** One shared wait for the socket's next progress, however many sessions wait. */
  private progress: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** At most one empty write waits in the socket (see nextProgress). */
  private flushWatched = false;

  /** The balancer's address when the client's came in a PROXY header (proxy-protocol.ts). */
  readonly proxy: string | undefined;
  /** Aborted when the socket closes: ends the readahead done for this connection. */
  readonly closed: AbortSignal;

  constructor(
    private readonly socket: Socket,
    private readonly audit: AuditLog,
    log: Logger,
    proxied?: { readonly address: string; readonly port: number },
  ) {
    const address = proxied?.address ?? socket.remoteAddress ?? '';
    const port = proxied?.port ?? socket.remotePort ?? 0;
    this.remoteAddress = toPlainAddress(address);
    this.remote = this.remoteAddress.includes(':') ? `[${this.remoteAddress}]:${port}` : `${this.remoteAddress}:${port}`;
    this.proxy = proxied ? toPlainAddress(socket.remoteAddress ?? '') : undefined;
    this.log = log.child({ conn: this.id, remote: this.remote, ...(this.proxy ? { proxy: this.proxy } : {}) });
    // Registered before the listener's own 'close' handler: the refused-login
    // record of a client that gave up comes before its disconnect record.
    socket.once('close', () => this.login?.record());
    const closed = new AbortController();
    socket.once('close', () => closed.abort());
    this.closed = closed.signal;
  }

  fields(): ConnectionFields {
    return {
      conn: this.id,
      remote: this.remote,
      ...(this.proxy !== undefined ? { proxy: this.proxy } : {}),
      ...(this.clientIdent !== undefined ? { client: this.clientIdent } : {}),
      ...(this.user !== undefined ? { user: this.user } : {}),
      ...(this.identity ? { key: this.identity.key.fingerprint, key_name: this.identity.name } : {}),
    };
  }

  bindIdentity(entry: KeyEntry, user: string): void {
    // Keys refused before this one (an agent offers several) keep their one record.
    this.login?.record();
    this.identity = entry;
    this.user = user;
    this.log.info({ user, key: entry.key.fingerprint, key_name: entry.name }, 'authenticated');
    this.audit.record('auth', { ...this.fields(), user, method: 'publickey', result: 'ok' });
  }

  /**
   * A connection with no command running is closed after `ms`: ControlPersist
   * masters hold connections open, and a session that runs nothing (closed
   * after session_start_timeout, or never confirmed closed by its client)
   * must not keep one alive.
   */
  armIdle(ms: number): void {
    this.idleMs = ms;
    this.clearIdle();
    // A command that ends after its connection closed must not arm a timer for it.
    if (this.commandsRunning > 0 || this.closed.aborted) return;
    this.idle = setTimeout(() => {
      this.closeReason = 'idle timeout';
      this.end();
    }, ms);
  }

  clearIdle(): void {
    clearTimeout(this.idle);
  }

  startCommand(): void {
    this.commandsRunning++;
    this.clearIdle();
  }

  endCommand(): void {
    this.commandsRunning--;
    if (this.commandsRunning > 0) return;
    this.slabs?.idle();
    if (this.idleMs !== undefined) this.armIdle(this.idleMs);
  }

  attach(client: Ssh2Connection, ident: string): void {
    this.client = client;
    this.clientIdent = toLoggable(ident, MAX_CLIENT_IDENT);
    const protocol = (client as unknown as { _protocol?: object })._protocol;
    if (protocol) this.slabs = recyclePackets(protocol, this.socket);
  }

  async waitForRoom(signal: AbortSignal): Promise<void> {
    while (this.socket.writableLength > MAX_QUEUED_BYTES || this.isRekeying()) await this.waitForProgress(signal);
  }

  waitForProgress(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      void this.nextProgress().then(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  written(): number {
    return this.socket.bytesWritten;
  }

  /** Bytes through the socket both ways, SSH framing included. */
  bytesCarried(): number {
    return this.socket.bytesRead + this.socket.bytesWritten;
  }

  batched<T>(send: () => T): T {
    this.socket.cork();
    try {
      return send();
    } finally {
      this.socket.uncork();
    }
  }

  /** Node counts bytes still queued in bytesWritten; writableLength is what the kernel has not yet taken. */
  taken(): number {
    return this.socket.bytesWritten - this.socket.writableLength;
  }

  private nextProgress(): Promise<void> {
    this.progress ??= new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        clearTimeout(timer);
        this.progress = this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, RECHECK_MS);
      this.socket.once('drain', done);
      this.wake = done;
      // 'drain' comes only after a write was refused; an empty write's callback
      // says when everything written before it has gone to the kernel, so the
      // end of a transfer is seen at once, not at the next recheck.
      if (!this.flushWatched && this.socket.writableLength > 0 && this.socket.writable) {
        this.flushWatched = true;
        this.socket.write(EMPTY, () => {
          this.flushWatched = false;
          this.wake?.();
        });
      }
    });
    return this.progress;
  }

  /**
   * During a key re-exchange ssh2 queues every packet in memory, without
   * limit, until the exchange ends (ssh2 1.17 Protocol: `_kexinit` is set from
   * KEXINIT to NEWKEYS; internal, no public event covers the whole span).
   */
  private isRekeying(): boolean {
    const protocol = (this.client as unknown as { _protocol?: { _kexinit?: unknown } } | undefined)?._protocol;
    return protocol?._kexinit !== undefined;
  }

  /** Says goodbye over SSH when it can; a peer that never answers is cut off soon after. */
  end(): void {
    if (this.client) this.client.end();
    else this.socket.destroy();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }
}
