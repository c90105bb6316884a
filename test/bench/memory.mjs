// What touching new memory costs on this machine, and a warm-up that makes it
// what it is on a host that has been up a while.
//
// On a freshly booted virtual machine (this bench's Firecracker VMs), the
// first write to a guest page the guest has never used makes the hypervisor
// back it: measured 2.5-4 ms per MiB, against about 0.5 ms per MiB for a page
// the guest kernel has used before and hands out again zeroed. A production
// backup host has long since used its memory (page cache alone does), so the
// cost a walhub pays there is the second one. The first one would charge
// whichever variant allocates the most new memory (a fresh hub's cache fills
// 16 MiB a segment) for the machine's youth rather than its own work.
// Also run on its own, by .ci/run before the tests: `node test/bench/memory.mjs`.
import { spawnSync } from 'node:child_process';
import { totalmem } from 'node:os';
import { pathToFileURL } from 'node:url';

const PROBE_MIB = 256;

function touchInChild(mib) {
  const script = `
    const t0 = process.hrtime.bigint();
    const mib = ${mib}, chunk = Math.min(mib, 256) * 1048576, held = [];
    for (let left = mib * 1048576; left > 0; left -= chunk) {
      const b = Buffer.allocUnsafeSlow(Math.min(chunk, left));
      for (let i = 0; i < b.length; i += 4096) b[i] = 1;
      held.push(b);
    }
    process.stdout.write(String(Number(process.hrtime.bigint() - t0) / 1e6));`;
  const out = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 300_000 });
  if (out.status !== 0) throw new Error(`touching ${mib} MiB in a child failed: ${out.stderr.trim() || out.signal}`);
  return Number(out.stdout);
}

/** Milliseconds per MiB a new process spends writing memory it has just allocated. */
export function firstTouchMsPerMiB() {
  return touchInChild(PROBE_MIB) / PROBE_MIB;
}

/**
 * Writes `mib` MiB once in a child process that then exits, so the guest's
 * pages are backed, as on a host that has been up; returns the cost of first
 * touch before and after. BENCH_WARM_MEMORY_MIB=0 skips it.
 */
export function warmMachineMemory(mib = Number(process.env.BENCH_WARM_MEMORY_MIB ?? Math.min(8192, Math.floor(totalmem() / 2 ** 20 / 3)))) {
  const before = firstTouchMsPerMiB();
  if (!(mib > 0)) return { before, after: before, warmedMiB: 0, warmMs: 0 };
  const warmMs = touchInChild(mib);
  return { before, after: firstTouchMsPerMiB(), warmedMiB: mib, warmMs };
}

export function describeWarmup({ before, after, warmedMiB, warmMs }) {
  const perMiB = (ms) => `${ms.toFixed(2)} ms/MiB`;
  if (warmedMiB === 0) return `memory: a new process writes new memory at ${perMiB(before)} (not warmed: BENCH_WARM_MEMORY_MIB=0)`;
  return (
    `memory: a new process wrote new memory at ${perMiB(before)}; after ${warmedMiB} MiB written once ` +
    `(${(warmMs / 1000).toFixed(1)} s, as a host that has been up has), ${perMiB(after)}`
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${describeWarmup(warmMachineMemory())}\n`);
}
