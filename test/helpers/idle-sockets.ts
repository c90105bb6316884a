import { connect, type Socket } from 'node:net';

export interface IdleFlood {
  /** Sockets the hub accepted and still holds (it sent its banner, and has not closed them). */
  readonly held: () => number;
  /** Connections the hub closed before sending a byte (refused at accept). */
  readonly refusedBeforeBanner: () => number;
  /** Connections opened so far, reconnections included. */
  readonly opened: () => number;
  stop(): Promise<void>;
}

/**
 * An attacker with no key: `count` plain TCP connections from `localAddress`,
 * half sending nothing, half only the start of an ident line. Each one that
 * the hub closes is opened again after `reconnectMs`, until stop().
 */
export function startIdleFlood(port: number, localAddress: string, count: number, reconnectMs = 1000): IdleFlood {
  let stopped = false;
  let opened = 0;
  let refused = 0;
  const live = new Set<Socket>();
  const held = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const open = (slot: number) => {
    if (stopped) return;
    opened++;
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    live.add(socket);
    let banner = false;
    socket.on('connect', () => {
      if (slot % 2 === 1) socket.write('SSH-2.0-Open');
    });
    socket.on('data', () => {
      if (!banner) held.add(socket);
      banner = true;
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      live.delete(socket);
      held.delete(socket);
      if (!banner) refused++;
      if (stopped) return;
      const timer = setTimeout(() => {
        timers.delete(timer);
        open(slot);
      }, reconnectMs);
      timers.add(timer);
    });
  };
  for (let slot = 0; slot < count; slot++) open(slot);
  return {
    held: () => held.size,
    refusedBeforeBanner: () => refused,
    opened: () => opened,
    async stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      const closing = [...live].map((s) => new Promise((r) => (s.destroyed ? r(undefined) : s.once('close', r))));
      for (const socket of live) socket.destroy();
      await Promise.all(closing);
    },
  };
}
