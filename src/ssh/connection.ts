import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Connection as Ssh2Connection } from 'ssh2';
import type { AuditLog, AuthFields, ConnectionFields } from '../audit/audit-log.js';
import type { KeyEntry } from '../keys/authorized-keys.js';
import { toPlainAddress } from '../keys/from-pattern.js';

/** What walhub knows about one SSH connection, from accept to close. */
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
  /** Set only after a verified signature (see auth.ts). */
  identity: KeyEntry | undefined;
  user: string | undefined;

  constructor(
    private readonly client: Ssh2Connection,
    address: string,
    port: number,
    private readonly audit: AuditLog,
    log: Logger,
  ) {
    this.remoteAddress = toPlainAddress(address);
    this.remote = this.remoteAddress.includes(':') ? `[${this.remoteAddress}]:${port}` : `${this.remoteAddress}:${port}`;
    this.log = log.child({ conn: this.id, remote: this.remote });
  }

  fields(): ConnectionFields {
    return {
      conn: this.id,
      remote: this.remote,
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

  end(): void {
    this.client.end();
  }
}
