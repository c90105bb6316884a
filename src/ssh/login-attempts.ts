import type { AuditLog } from '../audit/audit-log.js';
import type { Connection } from './connection.js';
import { MAX_MESSAGE, MAX_USER, toLoggable } from './loggable.js';
import type { RefusalLimiter } from './refusal-limiter.js';

export interface Refusal {
  readonly user: string;
  readonly method: string;
  /** The fingerprint offered, if the method offered a key. */
  readonly key?: string;
  readonly key_name?: string;
  readonly reason: string;
}

/** Enough to see which keys a client tried; maxAuthTries may be set far higher. */
const MAX_KEYS_LISTED = 10;

/**
 * One connection's refused authentication attempts, written as ONE audit
 * record (and one program-log line): when the client is cut off, when it logs
 * in after all, or when it leaves. A record per attempt let one connection
 * write hundreds of KiB (30000-byte user names, several attempts, twice for
 * the last one), and it carries what a reviewer needs: the user as first
 * sent, the keys offered in order, how many attempts, why it ended.
 */
export class LoginAttempts {
  /** Attempts that count towards max_auth_tries. */
  counted = 0;
  private askedForMethods = false;
  private first: Refusal | undefined;
  private last: Refusal | undefined;
  private lastKey: { key: string; key_name?: string } | undefined;
  private readonly keys: string[] = [];
  private recorded = false;

  constructor(
    private readonly conn: Connection,
    private readonly audit: AuditLog,
    private readonly limiter: RefusalLimiter,
  ) {}

  /**
   * Counts an attempt: 'over' once the client is past its tries. Every client
   * starts with one `none` to learn the methods, so that one is 'free'; every
   * other `none` counts like any other method (it carries a user name too).
   */
  count(method: string, maxAuthTries: number): 'free' | 'counted' | 'over' {
    if (method === 'none' && !this.askedForMethods) {
      this.askedForMethods = true;
      return 'free';
    }
    this.counted++;
    return this.counted <= maxAuthTries ? 'counted' : 'over';
  }

  refuse(refusal: Refusal): void {
    if (this.recorded) return;
    this.first ??= refusal;
    this.last = refusal;
    if (refusal.key !== undefined) {
      this.lastKey = { key: refusal.key, ...(refusal.key_name !== undefined ? { key_name: refusal.key_name } : {}) };
      if (!this.keys.includes(refusal.key) && this.keys.length < MAX_KEYS_LISTED) this.keys.push(refusal.key);
    }
  }

  /** Writes the one record, if anything was refused and it has not been written. */
  record(): void {
    if (this.recorded || !this.first || !this.last) return;
    this.recorded = true;
    if (!this.limiter.admit(this.conn.remoteAddress)) return;
    const user = toLoggable(this.first.user, MAX_USER);
    const reason = toLoggable(this.last.reason, MAX_MESSAGE);
    // One line with the address and the reason, so fail2ban can match it.
    this.conn.log.warn({ user, key: this.lastKey?.key, reason, attempts: this.counted }, 'authentication refused');
    this.audit.record('auth', {
      ...this.conn.fields(),
      user,
      method: this.last.method,
      ...this.lastKey,
      reason,
      result: 'refused',
      attempts: this.counted,
      ...(this.keys.length > 0 ? { keys: [...this.keys] } : {}),
    });
  }
}
