// Benchmark 1 (issues 2 and 8): wall time of fetching one 16 MiB zstd-compressed
// WAL segment cold (walhub's cache off: every fetch decodes the file) with the
// OpenSSH client, walhub vs sshd running `zstd -dc FILE`, fresh connections and
// ControlMaster, interleaved; then walhub's peak RSS while it serves 16 streams
// at once, with the cache off and on.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256File, SEGMENT_SIZE } from './archive.mjs';
import { countCacheHits, describeHits } from './cache-hits.mjs';
import { fixed, formatTable, sleep, summarize, timeRun, verdict } from './lib.mjs';
import { describeConnection, sshArgs, startMaster } from './servers.mjs';

export const FETCH_TARGETS = { freshRatio: 0.75, coldMuxRatio: 0.9, rssMiB: 150 };
const CONCURRENT_STREAMS = 16;
const PROFILE_RUNS = 5;
const RSS_SETTLE_MS = 1000;

/**
 * ctx: { dir, key, segment: { name, plainPath, zstdBytes }, streamNames, sparse: { name, zstdBytes },
 *        startHub({ name, cache }), cacheOn, cacheOff, cacheKnown, cacheBudgetMiB, sshd?, sshdMissing?, rounds }
 * Returns the JSON-able results and the text report.
 */
export async function benchFetch(ctx) {
  const { dir, key, segment, rounds } = ctx;
  const command = `get-wal pg1 ${segment.name}`;
  const expected = await sha256File(segment.plainPath);
  const hub = await ctx.startHub({ name: 'fetch-cold', cache: ctx.cacheOff });
  const cold = ctx.cacheKnown ? 'cold ([cache] memory = 0)' : 'cold (no cache in this build)';
  const mux = (name) => ['-o', `ControlPath=${join(dir, `${name}.sock`)}`, '-o', 'ControlMaster=no'];

  const variants = [
    { id: 'a', label: `walhub, fresh connection, ${cold}`, target: hub, extra: [] },
    { id: 'b', label: `walhub, ControlMaster, ${cold}`, target: hub, extra: mux('walhub'), master: 'walhub' },
  ];
  if (ctx.sshd) {
    variants.push(
      { id: 'c', label: 'sshd + zstd -dc, fresh connection', target: ctx.sshd, extra: [] },
      { id: 'd', label: 'sshd + zstd -dc, ControlMaster', target: ctx.sshd, extra: mux('sshd'), master: 'sshd' },
    );
  }
  const stopMasters = [];
  for (const v of variants.filter((v) => v.master)) {
    stopMasters.push(await startMaster(v.target, key, join(dir, `${v.master}.sock`)));
  }
  try {
    // Warm-up and proof: every variant once to a file, byte-identical to the segment.
    for (const v of variants) {
      const out = join(dir, `check-${v.id}`);
      const status = await fetchToFile(sshArgs(v.target, key, v.extra), command, out);
      const sum = await sha256File(out);
      if (status !== 0 || sum !== expected) throw new Error(`variant ${v.id} (${v.label}) fetched a wrong file: exit ${status}`);
    }

    const cpuBefore = await readCpuMs(hub.pid);
    const times = Object.fromEntries(variants.map((v) => [v.id, []]));
    for (let round = 0; round < rounds; round++) {
      // Rotate the order each round so no variant always runs right after another.
      const order = variants.map((_, i) => variants[(i + round) % variants.length]);
      for (const v of order) {
        const r = await timeRun('ssh', [...sshArgs(v.target, key, v.extra), command]);
        if (r.status !== 0) throw new Error(`variant ${v.id} (${v.label}) exited ${r.status}: ${r.stderr}`);
        times[v.id].push(r.ms);
      }
    }
    const walhubFetches = rounds * 2;
    const cpuPerFetch = ((await readCpuMs(hub.pid)) - cpuBefore) / walhubFetches;

    // Where the time goes: time to first byte and the rate after it.
    const profile = {};
    for (const v of variants) {
      const runs = [];
      for (let i = 0; i < PROFILE_RUNS; i++) runs.push(await fetchTimed(sshArgs(v.target, key, v.extra), command));
      const ttfb = summarize(runs.map((r) => r.ttfb)).median;
      const rest = summarize(runs.map((r) => r.total - r.ttfb)).median;
      profile[v.id] = { ttfbMs: ttfb, afterFirstByteMs: rest, mibPerS: SEGMENT_SIZE / 2 ** 20 / (rest / 1000) };
    }
    const algorithms = { walhub: await describeConnection(hub, key, command) };
    if (ctx.sshd) algorithms.sshd = await describeConnection(ctx.sshd, key, command);
    for (const stop of stopMasters) await stop();
    await hub.stop();
    const coldCache = await countCacheHits(hub.auditLog);

    const streams = ctx.streamNames.slice(0, CONCURRENT_STREAMS);
    const rss = await measureRss(ctx, key, streams, { name: 'rss-nocache', cache: ctx.cacheOff });
    const rssSparse = await measureRss(ctx, key, Array(CONCURRENT_STREAMS).fill(ctx.sparse.name), { name: 'rss-nocache', cache: ctx.cacheOff });
    const rssCache = await measureRss(ctx, key, streams, { name: 'rss-cache', cache: ctx.cacheOn });
    const rssPreallocated = ctx.cachePreallocated ? await measureRss(ctx, key, streams, { name: 'rss-cache-preallocated', cache: ctx.cachePreallocated }) : undefined;
    const stats = Object.fromEntries(variants.map((v) => [v.id, { label: v.label, ...summarize(times[v.id]), samples: times[v.id] }]));
    const ratio = (x, y) => (stats[x] && stats[y] ? stats[x].median / stats[y].median : undefined);
    const results = {
      segment: { name: segment.name, bytes: SEGMENT_SIZE, storedBytes: segment.zstdBytes, compression: 'zstd -3' },
      rounds,
      command: `ssh ${sshArgs({ port: 'PORT', knownHosts: 'KNOWN_HOSTS', user: 'walhub' }, { path: 'KEY' }).join(' ')} ${command} > /dev/null`,
      variants: stats,
      ratios: { fresh: ratio('a', 'c'), coldMultiplexed: ratio('b', 'd') },
      cacheKnown: ctx.cacheKnown,
      cache: { cold: coldCache, rssCache: rssCache.cache, ...(rssPreallocated ? { rssPreallocated: rssPreallocated.cache } : {}) },
      rss,
      rssSparse: { ...rssSparse, segment: ctx.sparse },
      rssCache: { ...rssCache, budgetMiB: ctx.cacheBudgetMiB },
      ...(rssPreallocated ? { rssPreallocated } : {}),
      walhubCpuMsPerFetch: cpuPerFetch,
      profile,
      algorithms,
      sshd: ctx.sshd ? 'started' : ctx.sshdMissing,
    };
    return { results, text: report(results) };
  } finally {
    for (const stop of stopMasters) await stop();
    await hub.stop();
  }
}

/** Fetches of `names`, all at once, from a freshly started walhub; VmHWM is the peak RSS of its whole life. */
async function measureRss(ctx, key, names, profile) {
  const hub = await ctx.startHub(profile);
  let measured;
  try {
    const idle = await readStatus(hub.pid);
    const t0 = Date.now();
    const results = await Promise.all(names.map((name) => timeRun('ssh', [...sshArgs(hub, key), `get-wal pg1 ${name}`])));
    const wallMs = Date.now() - t0;
    // Readahead may still be decoding after the last stream ended: its memory counts too.
    await sleep(RSS_SETTLE_MS);
    const after = await readStatus(hub.pid);
    const failed = results.filter((r) => r.status !== 0);
    measured = {
      streams: results.length,
      failed: failed.length,
      failures: [...new Set(failed.map((r) => `exit ${r.status}: ${r.stderr.split('\n')[0]}`))],
      wallMs,
      idleRssMiB: idle.VmRSS,
      peakRssMiB: after.VmHWM,
    };
  } finally {
    await hub.stop();
  }
  // Read after the stop: the audit writer flushes on shutdown.
  return { ...measured, cache: await countCacheHits(hub.auditLog) };
}

export function fetchToFile(args, command, path) {
  const fd = openSync(path, 'w');
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', [...args, command], { stdio: ['ignore', fd, 'inherit'] });
    child.on('error', reject);
    child.on('close', (status) => {
      closeSync(fd);
      resolve(status);
    });
  });
}

/** One fetch through a pipe: ms to the first stdout byte and to the end. */
function fetchTimed(args, command) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
    const child = spawn('ssh', [...args, command], { stdio: ['ignore', 'pipe', 'ignore'] });
    let ttfb;
    let bytes = 0;
    child.stdout.on('data', (chunk) => {
      ttfb ??= ms();
      bytes += chunk.length;
    });
    child.on('error', reject);
    child.on('close', (status) => {
      if (status !== 0 || bytes !== SEGMENT_SIZE) reject(new Error(`profile fetch: exit ${status}, ${bytes} bytes`));
      else resolve({ ttfb, total: ms() });
    });
  });
}

async function readStatus(pid) {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1]) / 1024;
  return { VmRSS: kib('VmRSS'), VmHWM: kib('VmHWM') };
}

/** user + system CPU time of a process, in ms (from /proc/PID/stat, clock ticks of 10 ms). */
async function readCpuMs(pid) {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function report(r) {
  const ms = (x) => `${fixed(x)} ms`;
  const rows = [['variant', 'median', 'p90', 'min', 'max']];
  for (const [id, s] of Object.entries(r.variants)) rows.push([`${id}  ${s.label}`, ms(s.median), ms(s.p90), ms(s.min), ms(s.max)]);
  const t = FETCH_TARGETS;
  const x = (v) => (v === undefined ? 'n/a' : `${fixed(v, 2)}x`);
  const { rss, rssSparse, rssCache, rssPreallocated } = r;
  const rssVerdict = (m, limit = t.rssMiB) => (m.failed ? 'MISS' : verdict(m.peakRssMiB, limit - 1e-9));
  const cacheLimit = rssCache.budgetMiB + t.rssMiB;
  const sparseLabel = `${fixed(rssSparse.segment.zstdBytes / 1024)} KiB stored`;
  const targets = [
    ['target', 'measured', 'goal', 'result'],
    ['fresh connection: walhub / sshd (a/c)', x(r.ratios.fresh), `<= ${t.freshRatio.toFixed(2)}x`, verdict(r.ratios.fresh, t.freshRatio)],
    ['cold fetch, ControlMaster: walhub / sshd + zstd -dc (b/d)', x(r.ratios.coldMultiplexed), `<= ${t.coldMuxRatio.toFixed(2)}x`, verdict(r.ratios.coldMultiplexed, t.coldMuxRatio)],
    [`walhub peak RSS, ${rss.streams} streams at once, cache off (e)`, `${fixed(rss.peakRssMiB)} MiB`, `< ${t.rssMiB} MiB`, rssVerdict(rss)],
    [`  same, one sparse segment x${rssSparse.streams} (${sparseLabel})`, `${fixed(rssSparse.peakRssMiB)} MiB`, `< ${t.rssMiB} MiB`, rssVerdict(rssSparse)],
    [
      `walhub peak RSS, ${rssCache.streams} streams at once, cache on${r.cacheKnown ? ` (${rssCache.budgetMiB} MiB budget)` : ' (cache not in this build)'} (f)`,
      `${fixed(rssCache.peakRssMiB)} MiB`,
      `< ${cacheLimit} MiB`,
      rssVerdict(rssCache, cacheLimit),
    ],
    ...(rssPreallocated ? [['  same, [cache] preallocate = true (g)', `${fixed(rssPreallocated.peakRssMiB)} MiB`, `< ${cacheLimit} MiB`, rssVerdict(rssPreallocated, cacheLimit)]] : []),
  ];
  const prof = [['variant', 'first byte', 'rest of file', 'rate after first byte']];
  for (const [id, p] of Object.entries(r.profile)) prof.push([`${id}  ${r.variants[id].label}`, ms(p.ttfbMs), ms(p.afterFirstByteMs), `${fixed(p.mibPerS, 0)} MiB/s`]);
  const algo = Object.entries(r.algorithms).map(([who, a]) => `${who}: kex ${a.kex ?? '?'}, cipher ${a.cipher ?? '?'}`);
  return [
    `Benchmark 1: fetch one 16 MiB WAL segment (${r.segment.name}, real PostgreSQL WAL, stored zstd -3: ${fixed(r.segment.storedBytes / 2 ** 20)} MiB)`,
    `with the OpenSSH client, stdout to /dev/null; ${r.rounds} rounds, variants interleaved; wall time per fetch`,
    `command: ${r.command}`,
    ...(r.sshd === 'started'
      ? ['sshd: the same client command to root@127.0.0.1 on sshd\'s port; its authorized_keys line forces command="zstd -dc FILE"']
      : [`sshd variants skipped: ${r.sshd}`]),
    'ControlMaster: one master (ssh -M -N -f -o ControlPersist=60) per server, started before timing; clients add -o ControlPath=SOCKET',
    '',
    formatTable(rows),
    '',
    formatTable(targets),
    ...[rss, rssSparse, rssCache, ...(rssPreallocated ? [rssPreallocated] : [])].filter((m) => m.failed).map((m) => `  ${m.failed} of ${m.streams} concurrent fetches failed: ${m.failures.join('; ')}`),
    `  RSS runs: a freshly started walhub each, default limits but per_source_max_startups 32 and max_transfers_per_key 16; VmHWM read ${RSS_SETTLE_MS} ms after the last stream ended.`,
    `  (e): ${rss.streams} different full segments; walhub's RSS was ${fixed(rss.idleRssMiB)} MiB idle after start; the fetches took ${rss.wallMs} ms together.`,
    `  sparse: ${rssSparse.segment.name}, closed early by a WAL switch (as archive_timeout makes them), decodes to 16 MiB.`,
    `  (f): the same ${rssCache.streams} segments as (e), walhub with the cache at its defaults; goal: the cache budget plus ${t.rssMiB} MiB.`,
    ...(rssPreallocated
      ? [`  (g): as (f), with the cache's whole budget taken at start; walhub's RSS was ${fixed(rssPreallocated.idleRssMiB)} MiB idle after start.`]
      : []),
    `cache use, from the audit logs: a and b (cold hub): ${describeHits(r.cache.cold)}; (f): ${describeHits(r.cache.rssCache)}${
      r.cache.rssPreallocated ? `; (g): ${describeHits(r.cache.rssPreallocated)}` : ''
    }`,
    '',
    'Profile (5 fetches each through a pipe, medians):',
    formatTable(prof),
    `walhub server CPU per fetch (a and b): ${fixed(r.walhubCpuMsPerFetch)} ms`,
    `negotiated by the OpenSSH client: ${algo.join('; ')}`,
  ].join('\n');
}
