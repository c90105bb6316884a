// A network link of a given rate between a standby and the hub, on loopback:
// traffic sent from the hub's ports (the WAL going to the standby) is shaped
// with an htb class on `lo`; everything else on lo stays as fast as before.
// On one machine the standby, the hub and the transfer share the same cores
// and loopback moves 16 MiB in a few ms, which hides what a real network
// costs per segment (16 MiB at 1 Gbit/s: 134 ms); these rows put it back.
import { defer, findProgram, isRoot, run } from './lib.mjs';

/**
 * Shapes what leaves `ports` on lo to `rate` (tc syntax, e.g. '1gbit'; `label`
 * says it for people). Resolves { rate, label, stop } once in place, or { missing: why } when it cannot be
 * (not root, no tc, no htb or u32 in the kernel, or lo already has a qdisc of
 * someone else's, which is left alone).
 */
export async function shapeLoopback(ports, rate, label) {
  if (!isRoot) return { missing: 'shaping lo needs root' };
  const tcPath = findProgram('tc');
  if (!tcPath) return { missing: 'tc not found: install the Debian package iproute2' };
  const tc = (...args) => run(tcPath, args);
  const { stdout } = await tc('qdisc', 'show', 'dev', 'lo');
  if (!/^qdisc noqueue 0: root/m.test(stdout)) return { missing: `lo already has a queueing discipline (${stdout.trim().split('\n')[0]}); left as it is` };
  try {
    // r2q: loopback's 64 KiB packets; traffic no filter matches is not shaped (htb's default 0).
    await tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'r2q', '1000');
  } catch (error) {
    return { missing: `the kernel cannot shape lo with htb: ${firstLine(error)}` };
  }
  const stop = defer('tc qdisc on lo', () => tc('qdisc', 'del', 'dev', 'lo', 'root'));
  try {
    await tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:1', 'htb', 'rate', rate, 'burst', '256k', 'cburst', '256k');
    for (const port of ports) {
      await tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', 'sport', String(port), '0xffff', 'flowid', '1:1');
    }
  } catch (error) {
    await stop();
    return { missing: `the kernel cannot filter by port on lo (u32): ${firstLine(error)}` };
  }
  return { rate, label, stop };
}

function firstLine(error) {
  return String(error?.message ?? error).trim().split('\n').at(-1);
}
