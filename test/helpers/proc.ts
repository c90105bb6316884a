// What a process holds, read from /proc: for tests that check walhub lets go.
import { readFile, readdir, readlink } from 'node:fs/promises';

/** Files `pid` holds open under `dir`, and how many child processes it has (decoders). */
export async function heldOpen(pid: number, dir: string): Promise<{ files: string[]; children: number }> {
  const files: string[] = [];
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir)) files.push(target);
  }
  let children = 0;
  for (const entry of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // Field 4 (ppid) comes after the command name in parentheses.
    if (stat.split(') ')[1]?.split(' ')[1] === String(pid)) children++;
  }
  return { files, children };
}

/** Resident memory of `pid` in MiB (VmRSS). */
export async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
  return kib / 1024;
}

/** Samples VmRSS every 100 ms until stopped; `peak()` is the highest seen. */
export function sampleRss(pid: number): { peak(): number; stop(): void } {
  let peak = 0;
  const timer = setInterval(() => {
    void rssMiB(pid)
      .then((mib) => (peak = Math.max(peak, mib)))
      .catch(() => undefined);
  }, 100);
  return { peak: () => peak, stop: () => clearInterval(timer) };
}
