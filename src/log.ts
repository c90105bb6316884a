import { pino, type Logger } from 'pino';

/** The program's own log: JSON lines on stdout, for journald or a collector. */
export function createProgramLog(level = process.env.WALHUB_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }));
}
