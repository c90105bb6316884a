import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Socket } from 'node:net';
import type { Connection as Ssh2Connection } from 'ssh2';
import type { AuditLog, AuthFields, ConnectionFields } from '../audit/audit-log.js';
import type { KeyEntry } from '../keys/authorized-keys.js';
import { toPlainAddress } from '../keys/from-pattern.js';

/** What walhub knows about one connection, from TCP accept to close. */
export class Connection {
  readonly id = randomBytes(6).toString('hex');
  readonly remoteAddress: string;
  readonly remote: string;
  readonly startedAt = Date.now();
  readonly log: Logger;
  authAttempts = 0;
  openSessions = 0;
  requests = 0;
  clientIdent: string | undefined;
  /** Why walhub closed it, for the disconnect record. */
  closeReason: string | undefined;
  onAuthenticated: (() => void) | undefined;
  private idle: NodeJS.Timeout | undefined;
  /** Set only after a verified signature (see auth.ts). */
  identity: KeyEntry | undefined;
  user: string | undefined;

  /** Set once the client has sent its ident line and ssh2 has taken over. */
  private client: Ssh2Connection | undefined;

  /** The balancer's address when the client's came in a PROXY header (proxy-protocol.ts). */
  readonly proxy: string | undefined;

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

  refuseAuth(details: Omit<AuthFields, 'result'>): void {
    // One line with the address and the reason, so fail2ban can match it.
    this.log.warn({ user: details.user, key: details.key, reason: details.reason }, 'authentication refused');
    this.audit.record('auth', { ...this.fields(), ...details, result: 'refused' });
  }

  bindIdentity(entry: KeyEntry, user: string): void {
    this.identity = entry;
    this.user = user;
    this.log.info({ user, key: entry.key.fingerprint, key_name: entry.name }, 'authenticated');
    this.audit.record('auth', { ...this.fields(), user, method: 'publickey', result: 'ok' });
  }

  /** A connection with no open session is closed after `ms` (ControlPersist masters hold them open). */
  armIdle(ms: number): void {
    this.clearIdle();
    if (this.openSessions > 0) return;
    this.idle = setTimeout(() => {
      this.closeReason = 'idle timeout';
      this.end();
    }, ms);
  }

  clearIdle(): void {
    clearTimeout(this.idle);
  }

  attach(client: Ssh2Connection, ident: string): void {
    this.client = client;
    this.clientIdent = ident;
  }

  /** Says goodbye over SSH when it can; a peer that never answers is cut off soon after. */
  end(): void {
    if (this.client) this.client.end();
    else this.socket.destroy();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }
}
