// Benchmark 5 (issue 8, replay): what one request costs through a
// ControlMaster when no data moves, the part of every restore_command that
// does not depend on the segment: `ssh -O check` alone (the OpenSSH client
// starting and asking its master), walhub answering `get-wal` of a segment
// that is not archived (exit 1), and sshd running its forced command for the
// same request (the benchmark-2 script: `cat` of a file that is not there).
// Rounds interleaved; medians.
import { join } from 'node:path';
import { fixed, formatTable, summarize, timeRun } from './lib.mjs';
import { sshArgs, startMaster } from './servers.mjs';

const ROUNDS = 40;
/** After the last segment of any bench archive: never there. */
const MISSING = '0000000100000000000000FF';

/** ctx: { dir, startHub({ name, cache }), cacheOn, walhubKey, sshd?, sshdMissing?, catKey } */
export async function benchFixedCost(ctx) {
  const hub = await ctx.startHub({ name: 'fixed-cost', cache: ctx.cacheOn });
  const stops = [];
  try {
    const open = async (id, target, key) => {
      const controlPath = join(ctx.dir, `${id}.sock`);
      stops.push(await startMaster(target, key, controlPath));
      return sshArgs(target, key, ['-o', `ControlPath=${controlPath}`, '-o', 'ControlMaster=no']);
    };
    const walhubArgs = await open('walhub', hub, ctx.walhubKey);
    const sshdArgs = ctx.sshd ? await open('sshd', ctx.sshd, ctx.catKey) : undefined;
    const variants = [
      { id: 'check', label: 'ssh -O check (the client starting and asking its master)', args: [...walhubArgs, '-O', 'check'], status: 0 },
      { id: 'walhub', label: `walhub: get-wal pg1 ${MISSING} (not archived)`, args: [...walhubArgs, `get-wal pg1 ${MISSING}`], status: 1 },
      ...(sshdArgs ? [{ id: 'sshd', label: 'sshd: the same request, forced command cat of a missing file', args: [...sshdArgs, `get-wal pg1 ${MISSING}`], status: 1 }] : []),
    ];
    const times = Object.fromEntries(variants.map((v) => [v.id, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const v of variants) {
        const t0 = process.hrtime.bigint();
        const result = await timeRun('ssh', v.args);
        if (result.status !== v.status) throw new Error(`${v.label}: exit ${result.status}, expected ${v.status}: ${result.stderr.trim()}`);
        times[v.id].push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }
    // With ControlMaster=no a client whose master had died would have made a connection of its own, silently.
    for (const args of [walhubArgs, ...(sshdArgs ? [sshdArgs] : [])]) {
      const alive = await timeRun('ssh', [...args, '-O', 'check']);
      if (alive.status !== 0) throw new Error(`a ControlMaster died during the rounds: ${alive.stderr.trim()}`);
    }
    const stats = Object.fromEntries(variants.map((v) => [v.id, { label: v.label, ...summarize(times[v.id]) }]));
    const results = { rounds: ROUNDS, variants: stats, sshd: ctx.sshd ? 'started' : ctx.sshdMissing };
    return { results, text: report(results) };
  } finally {
    for (const stop of stops) await stop();
    await hub.stop();
  }
}

function report(r) {
  const ms = (x) => `${fixed(x)} ms`;
  const rows = [['variant', 'median', 'p90', 'min']];
  for (const [id, v] of Object.entries(r.variants)) rows.push([`${id}  ${v.label}`, ms(v.median), ms(v.p90), ms(v.min)]);
  const check = r.variants.check.median;
  return [
    `Benchmark 5: the fixed cost of one request through a ControlMaster, no data moved; ${r.rounds} rounds, interleaved`,
    ...(r.sshd === 'started' ? [] : [`sshd variant skipped: ${r.sshd}`]),
    '',
    formatTable(rows),
    '',
    `beyond the client starting: walhub ${ms(r.variants.walhub.median - check)}` + (r.variants.sshd ? `, sshd ${ms(r.variants.sshd.median - check)}` : ''),
  ].join('\n');
}
