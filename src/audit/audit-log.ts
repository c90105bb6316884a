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
}

export const MAX_COMMAND_LENGTH_IN_AUDIT = 256;

/**
 * The audit log: one JSON line per event, apart from the program's log so it
 * can be kept, shipped and reviewed on its own.
 */
export function createAuditLog(path: string): AuditLog {
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  const destination = pino.destination({ dest: path, sync: false, mkdir: true, minLength: 0 });
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
    },
    flush() {
      return new Promise((resolve) => destination.flush(() => resolve()));
    },
  };
}
