import { timingSafeEqual } from 'node:crypto';
import type { AuthContext } from 'ssh2';
import type { AuditLog } from '../audit/audit-log.js';
import { findLoginRefusal, type KeyEntry } from '../keys/authorized-keys.js';
import type { KeyStore } from '../keys/key-store.js';
import { isValidSignature, toFingerprint } from '../keys/public-key.js';
import type { Connection } from './connection.js';
import { LoginAttempts } from './login-attempts.js';
import type { RefusalLimiter } from './refusal-limiter.js';

export interface AuthDeps {
  readonly user: string;
  readonly keys: KeyStore;
  readonly maxAuthTries: number;
  readonly audit: AuditLog;
  readonly refusals: RefusalLimiter;
  readonly now?: () => number;
}

/**
 * One authentication request. The identity is bound to the connection only
 * after the signature is verified here: ssh2 accepts whatever the handler
 * accepts, and a key that was merely offered proves nothing.
 */
export function handleAuthentication(ctx: AuthContext, conn: Connection, deps: AuthDeps): void {
  const login = (conn.login ??= new LoginAttempts(conn, deps.audit, deps.refusals));
  const fingerprint = ctx.method === 'publickey' ? toFingerprint(ctx.key.data) : undefined;
  const counted = login.count(ctx.method, deps.maxAuthTries);
  if (counted === 'over') {
    // Requests already in flight after the cut-off add nothing to the record.
    login.refuse({ user: ctx.username, method: ctx.method, ...(fingerprint ? { key: fingerprint } : {}), reason: 'too many authentication attempts' });
    login.record();
    ctx.reject(['publickey']);
    conn.end();
    return;
  }
  if (ctx.method !== 'publickey') {
    if (counted === 'counted') login.refuse({ user: ctx.username, method: ctx.method, reason: `method ${ctx.method} not allowed` });
    return ctx.reject(['publickey']);
  }
  const offered = ctx.key.data;
  // Every refused key is noted, queries included: the OpenSSH client never
  // signs with a key the server refused to take, so an unknown key shows up
  // only as a query.
  const refuse = (reason: string, entry?: KeyEntry) => {
    login.refuse({ user: ctx.username, method: 'publickey', key: fingerprint!, ...(entry ? { key_name: entry.name } : {}), reason });
    ctx.reject(['publickey']);
  };

  if (ctx.username !== deps.user) return refuse(`unknown user`);
  const entry = deps.keys.current.byBlob.get(offered.toString('base64'));
  if (!entry || entry.key.type !== ctx.key.algo || !sameBytes(entry.key.blob, offered)) return refuse('key not authorized');
  // ssh2 reports rsa-sha2-256/512 as ssh-rsa with a hashAlgo; none means SHA-1.
  if (entry.key.type === 'ssh-rsa' && ctx.hashAlgo !== 'sha256' && ctx.hashAlgo !== 'sha512') {
    return refuse('RSA/SHA-1 signatures are refused', entry);
  }
  const refusal = findLoginRefusal(entry, conn.remoteAddress, (deps.now ?? Date.now)());
  if (refusal) return refuse(refusal, entry);
  if (ctx.signature === undefined) return ctx.accept();
  if (!ctx.blob || !isValidSignature(entry.key, ctx.blob, ctx.signature!, ctx.hashAlgo)) return refuse('bad signature', entry);
  conn.bindIdentity(entry, ctx.username);
  ctx.accept();
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
