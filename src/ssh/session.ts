import type { Connection as Ssh2Connection, ServerChannel, Session } from 'ssh2';
import type { AuditLog } from '../audit/audit-log.js';
import { MAX_COMMAND_LENGTH_IN_AUDIT } from '../audit/audit-log.js';
import type { Hub } from '../command/get-wal.js';
import { asksFatalErrors, runCommand, type Outcome } from '../command/run-command.js';
import { EXIT_STATUS, exitStatus } from '../errors.js';
import { findLoginRefusal, type KeyEntry } from '../keys/authorized-keys.js';
import type { KeyStore } from '../keys/key-store.js';
import { BareSession } from './bare-session.js';
import type { Connection } from './connection.js';
import { MAX_MESSAGE, MAX_NAME, toLoggable } from './loggable.js';

export interface SessionDeps {
  readonly hub: Hub;
  readonly audit: AuditLog;
  readonly keys: KeyStore;
  /** ms a session may stay open without starting its command. */
  readonly startTimeout: number;
}

/**
 * One session channel: exactly one exec of get-wal. A pty request is granted
 * (none is ever allocated) so that the exec that follows can answer exit 2
 * with a line saying why: refusing it makes OpenSSH exit 255 on its own,
 * which a standby whose ssh_config says RequestTTY force would take as fatal.
 * Every other request (env, subsystem, x11, agent) has no listener, so ssh2
 * refuses it.
 */
export function handleSession(session: Session, conn: Connection, client: Ssh2Connection, deps: SessionDeps): void {
  let ptyRequested = false;
  let started = false;
  const bare = new BareSession(client, session);
  // A session that never starts would hold a session slot, and its connection, for good.
  const startTimer = setTimeout(() => {
    // ssh2 emits no 'close' on a session that never ran anything when its connection goes.
    if (conn.closed.aborted) return;
    started = true;
    conn.log.info({ ms: deps.startTimeout }, 'session closed: no command started');
    bare.close();
  }, deps.startTimeout);
  session.once('close', () => clearTimeout(startTimer));

  session.on('pty', (accept) => {
    ptyRequested = true;
    accept?.();
  });

  session.on('shell', (accept, reject) => {
    if (started) return reject?.();
    started = true;
    clearTimeout(startTimer);
    const channel = accept();
    record(conn, deps.audit, '', { bytes: 0, handed: 0, exit: EXIT_STATUS.USAGE, result: 'usage', message: 'shell requested' }, Date.now());
    refuse(channel, 'walhub serves WAL only; there is no shell (use: get-wal SERVER WAL_NAME)', ptyRequested);
  });

  session.on('exec', (accept, reject, info) => {
    if (started) return reject?.();
    started = true;
    clearTimeout(startTimer);
    const channel = accept();
    const startedAt = Date.now();
    if (ptyRequested) {
      record(conn, deps.audit, info.command, { bytes: 0, handed: 0, exit: EXIT_STATUS.USAGE, result: 'usage', message: 'pty requested' }, startedAt);
      refuse(channel, 'walhub does not allocate a terminal; run ssh with -T (WAL would be mangled by a tty)', true);
      return;
    }
    conn.startCommand();
    void serve(channel, info.command, conn, deps, startedAt).finally(() => conn.endCommand());
  });
}

async function serve(channel: ServerChannel, command: string, conn: Connection, deps: SessionDeps, startedAt: number): Promise<void> {
  const aborter = new AbortController();
  channel.on('close', () => aborter.abort());
  channel.on('error', () => aborter.abort());
  // Nothing is read from stdin; let it drain so a chatty client cannot stall the channel.
  channel.resume();
  conn.requests++;
  const key = toCurrentEntry(conn, deps.keys);
  const outcome = key
    ? await runCommand(command, key, deps.hub, { stdout: channel, stderr: channel.stderr, signal: aborter.signal, outlet: conn, connection: conn.closed })
    : refuseRevoked(channel, command);
  // The audit write is synchronous: the line is in the kernel before the client hears the exit status.
  record(conn, deps.audit, command, outcome, startedAt);
  if (outcome.exit !== undefined && !aborter.signal.aborted) {
    channel.exit(outcome.exit);
    channel.end();
  }
  if (outcome.endConnection !== undefined) {
    conn.closeReason ??= outcome.endConnection;
    conn.end();
  }
  if (outcome.internal) conn.log.error({ err: outcome.internal, command: toLoggable(command, MAX_COMMAND_LENGTH_IN_AUDIT) }, 'request failed');
}

/**
 * The key as authorized_keys says now, not as it was at login: a multiplexed
 * connection (ControlPersist) can outlive a removed, expired or narrowed key,
 * and each request must answer to the current file.
 */
function toCurrentEntry(conn: Connection, keys: KeyStore): KeyEntry | undefined {
  const entry = keys.current.byBlob.get(conn.identity!.key.blob.toString('base64'));
  if (!entry || findLoginRefusal(entry, conn.remoteAddress, Date.now())) return undefined;
  return entry;
}

function refuseRevoked(channel: ServerChannel, command: string): Outcome {
  const message = 'this key is no longer authorized';
  channel.stderr.write(`walhub: ${message}\n`);
  // A point-in-time recovery asked for --fatal-errors: a revoked key must stop it too, not read as "not yet".
  return { bytes: 0, handed: 0, exit: exitStatus('DENIED', asksFatalErrors(command)), result: 'denied', message };
}

function refuse(channel: ServerChannel, message: string, terminal: boolean): void {
  // After a pty request the client's terminal is in raw mode: it needs \r too.
  channel.stderr.write(`walhub: ${message}${terminal ? '\r\n' : '\n'}`);
  channel.exit(EXIT_STATUS.USAGE);
  channel.end();
}

function record(conn: Connection, audit: AuditLog, command: string, outcome: Outcome, startedAt: number): void {
  const ms = Date.now() - startedAt;
  // Every field the client wrote is cut and escaped: the grammar checks a WAL
  // name only when it is used (`--test` takes any word), and messages quote the client.
  const server = outcome.server !== undefined ? toLoggable(outcome.server, MAX_NAME) : undefined;
  const wal = outcome.wal !== undefined ? toLoggable(outcome.wal, MAX_NAME) : undefined;
  audit.record('request', {
    ...conn.fields(),
    command: toLoggable(command, MAX_COMMAND_LENGTH_IN_AUDIT),
    ...(server !== undefined ? { server } : {}),
    ...(wal !== undefined ? { wal } : {}),
    result: outcome.result,
    exit: outcome.exit ?? null,
    bytes: outcome.bytes,
    ms,
    ...(outcome.compression ? { compression: outcome.compression } : {}),
    ...(outcome.file ? { file: outcome.file } : {}),
    ...(outcome.cache ? { cache: outcome.cache } : {}),
    ...(outcome.message ? { error: toLoggable(outcome.message, MAX_MESSAGE) } : {}),
  });
  const fields = { server, wal, result: outcome.result, exit: outcome.exit, bytes: outcome.bytes, ms };
  // An unavailable answer (an archive path leading out, a decoder missing, an I/O error) needs a person: say why.
  if (outcome.result === 'unavailable' && outcome.message) conn.log.warn({ ...fields, error: toLoggable(outcome.message, MAX_MESSAGE) }, 'request');
  else conn.log.info(fields, 'request');
}
