// Benchmark 2 (issue 8): 16 consecutive zstd segments fetched one after
// another through a ControlMaster, each `ssh ... get-wal pg1 NAME > FILE` as
// restore_command runs it, total wall time per round: walhub with its
// readahead cache (defaults) and without, against OpenSSH sshd serving the
// same files with `cat` (decompressed copies: the SSH transport limit) and
// with `zstd -dc` (the compressed ones).
//
// Every round starts each walhub afresh (an empty cache) and each variant's
// ControlMaster afresh; the window of segments is the same every round, so
// rounds compare like with like. One more walhub variant serves other
// segments first, as a hub that has been running does: its cache is full and
// evicting, and the memory it decodes into has been used before. A fresh
// hub's cache fills 16 MiB of memory new to the process per segment until its
// budget is used (about 0.6-0.9 ms per MiB for the kernel to hand it out on
// the development machine, once run.mjs has warmed the VM: see memory.mjs).
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { segno, sha256File } from './archive.mjs';
import { countCacheHits, describeHits } from './cache-hits.mjs';
import { fetchToFile } from './fetch.mjs';
import { fixed, formatTable, makeDir, summarize, timeRun, verdict } from './lib.mjs';
import { sshArgs, startMaster } from './servers.mjs';

export const CONSECUTIVE_TARGETS = { walhubVsSshdCat: 1.0 };
export const WINDOW = 16;

/**
 * sshd's side: a forced command that serves the one file named by
 * `get-wal pg1 NAME` (NAME exactly 24 hex digits, so no path can be named)
 * from `archiveDir` with `cat` or `zstd -dc`, and refuses anything else.
 */
export async function writeServeScript(path, program, archiveDir) {
  const hex24 = '[0-9A-F]'.repeat(24);
  const serve = program === 'cat' ? 'cat --' : 'zstd -dcq --';
  await writeFile(
    path,
    [
      '#!/bin/sh',
      '# walhub bench: sshd forced command; SSH_ORIGINAL_COMMAND must be "get-wal pg1 <24 hex digits>".',
      'case "$SSH_ORIGINAL_COMMAND" in',
      `  "get-wal pg1 "${hex24}) ;;`,
      '  *) echo "refused: not get-wal pg1 NAME" >&2; exit 2 ;;',
      'esac',
      `exec ${serve} ${JSON.stringify(archiveDir)}/"\${SSH_ORIGINAL_COMMAND#get-wal pg1 }"`,
      '',
    ].join('\n'),
  );
  await chmod(path, 0o755);
  return path;
}

/**
 * ctx: { dir, names (the window), plainDir, warmName, fillNames (segments a warm hub serves first;
 *        none within the cache's readahead of the window), rounds, cacheKnown,
 *        walhubKey, startHub({ name, cache }), cacheOn, cacheOff,
 *        sshd?, sshdMissing?, catKey, zstdKey }
 */
export async function benchConsecutive(ctx) {
  const { dir, names, rounds } = ctx;
  const expected = new Map();
  for (const name of names) expected.set(name, await sha256File(join(ctx.plainDir, name)));
  const cacheOn = ctx.cacheKnown ? 'cache on (defaults)' : 'cache not in this build';

  const walhubVariant = (id, label, profile, fill = []) => ({
    id,
    label,
    walhub: profile.name,
    fill,
    open: async () => {
      const hub = await ctx.startHub(profile);
      return { hub, target: hub, key: ctx.walhubKey };
    },
  });
  const sshdVariant = (id, label, key, masterOptions = []) => ({ id, label, masterOptions, open: async () => ({ target: ctx.sshd, key }) });
  const variants = [walhubVariant('walhub-cache', `walhub, ${cacheOn}`, { name: 'consecutive-cache', cache: ctx.cacheOn })];
  if (ctx.cacheKnown && ctx.fillNames?.length) {
    variants.push(
      walhubVariant('walhub-warm', `walhub, ${cacheOn}, warm: ${ctx.fillNames.length} other segments served first`, { name: 'consecutive-warm', cache: ctx.cacheOn }, ctx.fillNames),
    );
  }
  if (ctx.cachePreallocated) {
    variants.push(walhubVariant('walhub-prealloc', 'walhub, cache on, [cache] preallocate = true', { name: 'consecutive-prealloc', cache: ctx.cachePreallocated }));
  }
  // Without a cache in the build, a cache-off row would repeat the row above.
  if (ctx.cacheKnown) variants.push(walhubVariant('walhub-nocache', 'walhub, cache off ([cache] memory = 0)', { name: 'consecutive-nocache', cache: ctx.cacheOff }));
  if (ctx.sshd) {
    variants.push(sshdVariant('sshd-cat', 'sshd + cat of the decompressed files', ctx.catKey));
    // sshd's default offer leads OpenSSH to chacha20-poly1305; walhub's leads it to
    // aes128-gcm on a CPU with AES instructions. The same cipher, for reference:
    variants.push(sshdVariant('sshd-cat-gcm', 'sshd + cat, client told -c aes128-gcm@openssh.com', ctx.catKey, ['-c', 'aes128-gcm@openssh.com']));
    variants.push(sshdVariant('sshd-zstd', 'sshd + zstd -dc of the compressed files', ctx.zstdKey));
  }

  const outDirs = {};
  for (const v of variants) outDirs[v.id] = await makeDir(join(dir, v.id));
  const totals = Object.fromEntries(variants.map((v) => [v.id, []]));
  const hubAudit = {};
  for (let round = 0; round < rounds; round++) {
    const order = variants.map((_, i) => variants[(i + round) % variants.length]);
    for (const v of order) {
      const { hub, target, key } = await v.open();
      if (hub) hubAudit[v.id] = hub.auditLog;
      const controlPath = join(dir, `${v.id}.sock`);
      const stopMaster = await startMaster(target, key, controlPath, { extra: v.masterOptions ?? [] });
      try {
        const args = sshArgs(target, key, ['-o', `ControlPath=${controlPath}`, '-o', 'ControlMaster=no']);
        // Warm-up through the new master: the last segment, which has no successor to read ahead.
        const warm = await timeRun('ssh', [...args, `get-wal pg1 ${ctx.warmName}`]);
        if (warm.status !== 0) throw new Error(`${v.label}: warm-up fetch exited ${warm.status}: ${warm.stderr}`);
        for (const name of v.fill ?? []) {
          const filled = await timeRun('ssh', [...args, `get-wal pg1 ${name}`]);
          if (filled.status !== 0) throw new Error(`${v.label}: fetch of ${name} before timing exited ${filled.status}: ${filled.stderr}`);
        }
        const t0 = process.hrtime.bigint();
        for (const name of names) {
          const status = await fetchToFile(args, `get-wal pg1 ${name}`, join(outDirs[v.id], name));
          if (status !== 0) throw new Error(`${v.label}: get-wal pg1 ${name} exited ${status}`);
        }
        totals[v.id].push(Number(process.hrtime.bigint() - t0) / 1e6);
      } finally {
        await stopMaster();
        await hub?.stop();
      }
    }
    process.stderr.write(`bench: consecutive round ${round + 1}: ${variants.map((v) => `${v.id} ${fixed(totals[v.id].at(-1) / 1000, 2)} s`).join(', ')}\n`);
  }

  // The files of the last round, each variant's once: a fast wrong answer is no result.
  for (const v of variants) {
    for (const name of names) {
      if ((await sha256File(join(outDirs[v.id], name))) !== expected.get(name)) throw new Error(`${v.label}: ${name} differs from the archived segment`);
    }
  }
  const cache = {};
  for (const [id, auditLog] of Object.entries(hubAudit)) cache[id] = await countCacheHits(auditLog);

  const stats = Object.fromEntries(variants.map((v) => [v.id, { label: v.label, ...summarize(totals[v.id]), samples: totals[v.id] }]));
  const ratio = (x, y) => (stats[x] && stats[y] ? stats[x].median / stats[y].median : undefined);
  const results = {
    segments: { first: names[0], last: names.at(-1), count: names.length },
    ...(ctx.cacheKnown && ctx.fillNames?.length ? { fill: { count: ctx.fillNames.length, names: describeRuns(ctx.fillNames) } } : {}),
    rounds,
    cacheKnown: ctx.cacheKnown,
    variants: stats,
    ratios: {
      walhubCacheVsSshdCat: ratio('walhub-cache', 'sshd-cat'),
      walhubCacheVsSshdZstd: ratio('walhub-cache', 'sshd-zstd'),
      walhubWarmVsSshdCat: ratio('walhub-warm', 'sshd-cat'),
      walhubPreallocatedVsSshdCat: ratio('walhub-prealloc', 'sshd-cat'),
      walhubNoCacheVsSshdCat: ratio('walhub-nocache', 'sshd-cat'),
      walhubWarmVsSshdCatGcm: ratio('walhub-warm', 'sshd-cat-gcm'),
      sshdZstdVsSshdCat: ratio('sshd-zstd', 'sshd-cat'),
    },
    cache,
    hashChecked: true,
    sshd: ctx.sshd ? 'started' : ctx.sshdMissing,
  };
  return { results, text: report(results) };
}

/** Consecutive segment names as runs: "A .. B, C .. D". */
function describeRuns(names) {
  const runs = [];
  for (const name of names) {
    const last = runs.at(-1);
    if (last && segno(name) === segno(last.at(-1)) + 1) last.push(name);
    else runs.push([name]);
  }
  return runs.map((run) => (run.length === 1 ? run[0] : `${run[0]} .. ${run.at(-1)}`)).join(', ');
}

function report(r) {
  const s = (ms) => `${fixed(ms / 1000, 2)} s`;
  const rows = [['variant', 'median', 'per segment', 'min', 'max']];
  for (const [id, v] of Object.entries(r.variants)) rows.push([`${id}  ${v.label}`, s(v.median), `${fixed(v.median / r.segments.count)} ms`, s(v.min), s(v.max)]);
  const x = (v) => (v === undefined ? 'n/a' : `${fixed(v, 2)}x`);
  const goal = CONSECUTIVE_TARGETS.walhubVsSshdCat;
  const targets = [
    ['target', 'measured', 'goal', 'result'],
    [`walhub cache on / sshd cat${r.cacheKnown ? '' : ' (cache not in this build)'}`, x(r.ratios.walhubCacheVsSshdCat), `<= ${goal.toFixed(2)}x`, verdict(r.ratios.walhubCacheVsSshdCat, goal)],
    ['  for reference: walhub cache on / sshd zstd -dc', x(r.ratios.walhubCacheVsSshdZstd), '', ''],
    ['walhub cache on, warm hub / sshd cat', x(r.ratios.walhubWarmVsSshdCat), `<= ${goal.toFixed(2)}x`, verdict(r.ratios.walhubWarmVsSshdCat, goal)],
    ['walhub cache on, fresh hub, preallocate = true / sshd cat', x(r.ratios.walhubPreallocatedVsSshdCat), `<= ${goal.toFixed(2)}x`, verdict(r.ratios.walhubPreallocatedVsSshdCat, goal)],
    ['  for reference: walhub cache on, warm hub / sshd cat, both aes128-gcm', x(r.ratios.walhubWarmVsSshdCatGcm), '', ''],
    ['  for reference: walhub cache off / sshd cat', x(r.ratios.walhubNoCacheVsSshdCat), '', ''],
    ['  for reference: sshd zstd -dc / sshd cat', x(r.ratios.sshdZstdVsSshdCat), '', ''],
  ];
  return [
    `Benchmark 2: ${r.segments.count} consecutive segments (${r.segments.first} .. ${r.segments.last}, stored zstd -3) fetched one after another`,
    `through a ControlMaster, each \`ssh ... get-wal pg1 NAME > FILE\`; wall time of the ${r.segments.count} fetches per round; ${r.rounds} rounds, variants interleaved`,
    'each round: every walhub started afresh (empty cache), every variant its own new ControlMaster and one warm-up fetch of the last',
    'segment (no successor to read ahead) before timing; the same window every round; the last round\'s files hash-checked for every variant',
    ...(r.fill ? [`walhub-warm: before timing, its hub serves ${r.fill.count} segments (${r.fill.names}) that the window's readahead never reaches`] : []),
    ...(r.sshd === 'started'
      ? ['sshd: forced command, a sh script that accepts only "get-wal pg1 <24 hex digits>" and execs cat (decompressed copies) or zstd -dc (Barman\'s files)']
      : [`sshd variants skipped: ${r.sshd}`]),
    ...(r.cacheKnown ? [] : ['this build has no [cache] table: the cache-on row runs walhub as it is, and the cache-off row is left out (it would be the same)']),
    '',
    formatTable(rows),
    '',
    formatTable(targets),
    '',
    'cache use, from each walhub\'s audit log (all rounds, warm-up fetches included):',
    ...Object.entries(r.cache).map(([id, c]) => `  ${id}: ${describeHits(c)}`),
  ].join('\n');
}
