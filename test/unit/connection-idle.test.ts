// The idle timer of a connection (idle_timeout): armed when its last command
// ends, never while one runs, and never for a connection already closed: a
// command that ends after its client went away would otherwise keep a timer
// of idle_timeout (5 min by default) alive for a connection nobody has.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import pino from 'pino';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import type { AuditLog } from '../../src/audit/audit-log.js';
import { Connection } from '../../src/ssh/connection.js';

const IDLE_MS = 300_000;

function connection(): { conn: Connection; socket: EventEmitter & { destroyed: number } } {
  const socket = Object.assign(new EventEmitter(), { remoteAddress: '127.0.0.1', remotePort: 40000, destroyed: 0 });
  // A connection ended before ssh2 took over is ended by destroying its socket.
  Object.assign(socket, { destroy: () => void socket.destroyed++ });
  const audit = { record: () => undefined } as unknown as AuditLog;
  return { conn: new Connection(socket as unknown as Socket, audit, pino({ level: 'silent' })), socket };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

it('arms the idle timer when the last command ends, and not while one runs', () => {
  const { conn, socket } = connection();
  conn.armIdle(IDLE_MS);
  expect(vi.getTimerCount()).toBe(1);
  conn.startCommand();
  conn.startCommand();
  expect(vi.getTimerCount()).toBe(0);
  conn.endCommand();
  expect(vi.getTimerCount()).toBe(0);
  conn.endCommand();
  expect(vi.getTimerCount()).toBe(1);
  vi.advanceTimersByTime(IDLE_MS);
  expect(conn.closeReason).toBe('idle timeout');
  expect(socket.destroyed).toBeGreaterThan(0);
});

it('arms no timer for a connection whose socket closed while its command ran', () => {
  const { conn, socket } = connection();
  conn.armIdle(IDLE_MS);
  conn.startCommand();
  socket.emit('close');
  conn.endCommand();
  expect(vi.getTimerCount()).toBe(0);
  vi.advanceTimersByTime(IDLE_MS);
  expect(conn.closeReason).toBeUndefined();
  expect(socket.destroyed).toBe(0);
});
