import { spawn } from 'node:child_process';

export interface FloodCounts {
  /** Most sockets the hub held at once (it sent its banner and had not closed them yet). */
  readonly maxHeld: number;
  /** Connections the hub closed before sending a byte: refused at accept. */
  readonly refusedBeforeBanner: number;
  /** Connections opened, reconnections included. */
  readonly opened: number;
}

export interface IdleFlood {
  counts(): FloodCounts;
  stop(): Promise<FloodCounts>;
}

// Runs in its own process, as an attacker runs on its own machine: the
// test's event loop stays free to read the standby's ssh output.
const SCRIPT = `
import { connect } from 'node:net';
const [port, localAddress, count, reconnectMs] = process.argv.slice(1);
const counts = { maxHeld: 0, refusedBeforeBanner: 0, opened: 0 };
let held = 0;
let stopped = false;
const report = () => process.stdout.write(JSON.stringify(counts) + '\\n');
function open(slot) {
  if (stopped) return;
  counts.opened++;
  const socket = connect({ port: Number(port), host: '127.0.0.1', localAddress });
  let banner = false;
  socket.on('connect', () => { if (slot % 2 === 1) socket.write('SSH-2.0-Open'); });
  socket.on('data', () => {
    if (banner) return;
    banner = true;
    counts.maxHeld = Math.max(counts.maxHeld, ++held);
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    if (banner) held--;
    else counts.refusedBeforeBanner++;
    setTimeout(() => open(slot), Number(reconnectMs));
  });
}
for (let slot = 0; slot < Number(count); slot++) open(slot);
setInterval(report, 200);
process.on('SIGTERM', () => { stopped = true; report(); process.exit(0); });
`;

/**
 * An attacker with no key: `count` plain TCP connections from `localAddress`,
 * half sending nothing, half only the start of an ident line. Each one the
 * hub closes is opened again after `reconnectMs`, until stop().
 */
export function startIdleFlood(port: number, localAddress: string, count: number, reconnectMs = 1000): IdleFlood {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT, String(port), localAddress, String(count), String(reconnectMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let last: FloodCounts = { maxHeld: 0, refusedBeforeBanner: 0, opened: 0 };
  let buffered = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    buffered += text;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    if (lines.length > 0) last = JSON.parse(lines[lines.length - 1]!) as FloodCounts;
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    counts: () => last,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      return last;
    },
  };
}
