import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino } from 'pino';
import type { RequestResult } from '../errors.js';

export type AuditEvent = 'connect' | 'auth' | 'request' | 'disconnect';

/** Fields every record of one connection carries. */
export interface ConnectionFields {
  conn: string;
  remote: string;
  /** The load balancer's address, when `remote` came from its PROXY header. */
  proxy?: string;
  client?: string;
  user?: string;
  key?: string;
  key_name?: string;
}

export interface AuthFields {
  /** The fingerprint offered, accepted or not. */
  key?: string;
  key_name?: string;
  user: string;
  method: string;
  result: 'ok' | 'refused';
  reason?: string;
  /** Refused: the attempts this connection made (one record per connection). */
  attempts?: number;
  /** Refused: the fingerprints offered, in order, at most 10. */
  keys?: string[];
  /** A rate-limit summary: refused logins from this address that got no record. */
  suppressed?: number;
}

export interface RequestFields {
  command: string;
  server?: string;
  wal?: string;
  result: RequestResult;
  /** null when the client left before an exit status could be sent. */
  exit: number | null;
  bytes: number;
  ms: number;
  compression?: string;
  file?: string;
  error?: string;
}

export interface AuditLog {
  record(event: 'connect', fields: ConnectionFields): void;
  record(event: 'auth', fields: ConnectionFields & AuthFields): void;
  record(event: 'request', fields: ConnectionFields & RequestFields): void;
  record(event: 'disconnect', fields: ConnectionFields & { ms: number; requests: number; reason?: string }): void;
  flush(): Promise<void>;
  /** Opens the file by its name again (SIGUSR1, after logrotate moved it away). */
  reopen(): void;
}

/** One record, two consumers: the file and anything else fed by the same record (metrics). */
export type AuditConsumer = (event: AuditEvent, fields: Readonly<Record<string, unknown>>) => void;

export const MAX_COMMAND_LENGTH_IN_AUDIT = 256;

/**
 * The audit log: one JSON line per event, apart from the program's log so it
 * can be kept, shipped and reviewed on its own.
 *
 * Writes are synchronous: record() returns once the line is in the kernel, so
 * a request's line is written before its exit status is sent and a SIGKILL
 * right after loses nothing. One write(2) of a few hundred bytes per event is
 * far below what a request costs. The file is 0640 (it names every standby and
 * address) in a 0750 directory.
 */
export function createAuditLog(path: string, consumers: readonly AuditConsumer[] = []): AuditLog {
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  const destination = pino.destination({ dest: path, sync: true, mkdir: true, minLength: 0, mode: 0o640 });
  // Each event is a pino level, so the level formatter writes `event` first
  // and no numeric level clutters the record.
  const logger = pino<AuditEvent, true>(
    {
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      customLevels: { connect: 30, auth: 31, request: 32, disconnect: 33 },
      useOnlyCustomLevels: true,
      level: 'connect',
      formatters: { level: (label) => ({ event: label }) },
    },
    destination,
  );
  return {
    record(event: AuditEvent, fields: object) {
      logger[event](fields);
      for (const consume of consumers) consume(event, fields as Record<string, unknown>);
    },
    flush() {
      return new Promise((resolve) => destination.flush(() => resolve()));
    },
    reopen() {
      destination.reopen();
    },
  };
}
