// Benchmark 3 (issues 3, 8): wall time for PostgreSQL to replay the same archive
// from a base backup with restore_command: through walhub (plain ssh and
// ControlMaster; also the same segments uncompressed, to show the transport
// alone), through sshd + Barman's `barman get-wal`, and from a local copy
// (cp of the uncompressed files; zstd -dc of the compressed ones). Archive
// recovery with recovery.signal: when restore_command reports the segment
// after the last as missing, recovery ends and the server promotes.
import { appendFile, chmod, chown, copyFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clusterConf, SEGMENT_SIZE, toConf } from './archive.mjs';
import { countCacheHits, describeHits } from './cache-hits.mjs';
import { findFreePort, fixed, formatTable, makeDir, pgUser, readText, run, sleep, summarize, verdict } from './lib.mjs';
import { sshArgs, stopMaster } from './servers.mjs';

export const REPLAY_TARGETS = { muxVsLocalZstd: 1.0, muxVsLocalCp: 1.5, barmanVsPlain: 3 };
const READY = 'database system is ready to accept connections';
const RESTORE_SCRIPT = fileURLToPath(new URL('../../etc/standby/walhub-restore', import.meta.url));

/**
 * ctx: { dir, bins, base, names, plain, zstd, key (owned by postgres), sshd?, barmanConf?, skipped: [reasons], reps, barmanReps,
 *        cacheKnown, hubs: { plain, mux, muxNoCache?, muxPreallocated?, muxPlain, prefetch, muxLink, prefetchLink },
 *        link: { rate } (the link hubs' traffic shaped) or { missing: why } }
 * Each walhub variant has its own walhub (own audit log, own cache), running for
 * all its runs; the hubs are handed over and stopped here when done.
 */
export async function benchReplay(ctx) {
  const as = pgUser;
  const work = await makeDir(join(ctx.dir, 'replay'), { owner: as, mode: 0o755 });
  const controlDir = await makeDir(join(work, 'cm'), { owner: as, mode: 0o700 });
  const ssh = (target, extra = []) => ['ssh', ...sshArgs(target, ctx.key, extra)].join(' ');
  // The recipe for standbys: the first restore_command starts a master that the
  // next ones reuse; one control socket per variant, as each has its own walhub.
  const muxVariant = (id, label, hub, server) => {
    const controlPath = join(controlDir, `${id}.sock`);
    const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${controlPath}`, '-o', 'ControlPersist=60'];
    // The master that the first restore_command left behind.
    return { id, label, hub, command: `${ssh(hub, mux)} get-wal ${server} %f > %p`, after: () => stopMaster(hub, ctx.key, controlPath, { as }) };
  };
  const cacheOn = ctx.cacheKnown ? 'cache on (defaults)' : 'cache not in this build';
  const { hubs } = ctx;

  const variants = [
    { id: 'local-cp', label: 'local copy, cp (uncompressed)', command: `cp ${ctx.plain}/%f %p` },
    { id: 'local-zstd', label: 'local copy, zstd -dc (compressed)', command: `zstd -dcq ${ctx.zstd}/%f > %p` },
    { id: 'walhub', label: `walhub, plain ssh, ${cacheOn}`, hub: hubs.plain, command: `${ssh(hubs.plain)} get-wal pg1 %f > %p` },
    muxVariant('walhub-mux', `walhub, ssh ControlMaster, ${cacheOn}`, hubs.mux, 'pg1'),
    ...(hubs.muxNoCache ? [muxVariant('walhub-mux-nocache', 'walhub, ssh ControlMaster, cache off ([cache] memory = 0)', hubs.muxNoCache, 'pg1')] : []),
    // The same segments stored uncompressed: walhub's transport alone.
    ...(hubs.muxPreallocated
      ? [muxVariant('walhub-mux-prealloc', 'walhub, ssh ControlMaster, cache on, [cache] preallocate = true', hubs.muxPreallocated, 'pg1')]
      : []),
    muxVariant('walhub-mux-plain', `walhub, ssh ControlMaster, uncompressed archive, ${cacheOn}`, hubs.muxPlain, 'pg1plain'),
    await prefetchVariant(ctx, work, controlDir, {
      id: 'walhub-prefetch',
      label: `walhub, walhub-restore (4 segments fetched ahead), ssh ControlMaster, ${cacheOn}`,
      hub: hubs.prefetch,
    }),
  ];
  // The same two recipes with the hub behind a 1 Gbit/s link (link.mjs).
  if (ctx.link.rate) {
    variants.push(
      muxVariant('link-mux', `over ${ctx.link.label}: walhub, ssh ControlMaster (the recommended line), ${cacheOn}`, hubs.muxLink, 'pg1'),
      await prefetchVariant(ctx, work, controlDir, {
        id: 'link-prefetch',
        label: `over ${ctx.link.label}: walhub, walhub-restore (4 segments fetched ahead), ${cacheOn}`,
        hub: hubs.prefetchLink,
      }),
    );
  }
  if (ctx.sshd) {
    // The SSH transport limit on this machine: OpenSSH's own server sending the
    // decompressed files with cat, through the same ControlMaster recipe.
    const controlPath = join(controlDir, 'sshd-cat.sock');
    const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${controlPath}`, '-o', 'ControlPersist=60'];
    variants.push({
      id: 'sshd-cat-mux',
      label: 'sshd + cat of the decompressed files, ssh ControlMaster',
      command: `${ssh(ctx.sshd, mux)} cat ${ctx.plain}/%f > %p`,
      after: () => stopMaster(ctx.sshd, ctx.key, controlPath, { as }),
    });
  }
  if (ctx.sshd && ctx.barmanConf && ctx.barmanReps > 0) {
    variants.push({
      id: 'barman',
      label: 'sshd + barman get-wal',
      // Five times slower than the rest and far from its goal: fewer runs keep the bench short.
      reps: Math.min(ctx.barmanReps, ctx.reps),
      command: `${ssh(ctx.sshd)} barman -c ${ctx.barmanConf} get-wal pg1 %f > %p`,
    });
  }

  // BENCH_REPLAY_VARIANTS (ids, comma-separated): only those, to compare a few rows quickly.
  const wanted = process.env.BENCH_REPLAY_VARIANTS?.split(',');
  if (wanted) variants.splice(0, variants.length, ...variants.filter((v) => wanted.includes(v.id) || v.id === 'local-cp' || v.id === 'local-zstd'));
  const runs = Object.fromEntries(variants.map((v) => [v.id, []]));
  for (let rep = 0; rep < ctx.reps; rep++) {
    const order = variants.map((_, i) => variants[(i + rep) % variants.length]);
    for (const v of order) {
      if (rep >= (v.reps ?? ctx.reps)) continue;
      const ms = await replayOnce(ctx, work, v, `${v.id}-${rep}`);
      runs[v.id].push(ms);
      process.stderr.write(`bench: replay ${v.id} run ${rep + 1}: ${(ms / 1000).toFixed(2)} s\n`);
    }
  }

  const cache = {};
  for (const v of variants.filter((v) => v.hub)) {
    await v.hub.stop();
    cache[v.id] = await countCacheHits(v.hub.auditLog);
  }
  const stats = Object.fromEntries(variants.map((v) => [v.id, { label: v.label, restoreCommand: v.command, ...summarize(runs[v.id]), samples: runs[v.id] }]));
  const local = stats['local-cp'].median;
  for (const s of Object.values(stats)) s.vsLocalCp = s.median / local;
  // undefined when either variant did not run (its server missing, or BENCH_REPLAY_VARIANTS)
  const ratio = (a, b) => (stats[a] && stats[b] ? stats[a].median / stats[b].median : undefined);
  const results = {
    segments: ctx.names.length,
    walBytes: ctx.names.length * SEGMENT_SIZE,
    first: ctx.names[0],
    last: ctx.names.at(-1),
    reps: ctx.reps,
    barmanReps: stats.barman ? stats.barman.n : undefined,
    variants: stats,
    ratios: {
      walhubMuxVsLocalCp: ratio('walhub-mux', 'local-cp'),
      walhubMuxVsLocalZstd: ratio('walhub-mux', 'local-zstd'),
      walhubMuxNoCacheVsLocalCp: ratio('walhub-mux-nocache', 'local-cp'),
      walhubMuxNoCacheVsLocalZstd: ratio('walhub-mux-nocache', 'local-zstd'),
      walhubMuxPreallocatedVsLocalZstd: ratio('walhub-mux-prealloc', 'local-zstd'),
      walhubPrefetchVsLocalZstd: ratio('walhub-prefetch', 'local-zstd'),
      walhubPrefetchVsLocalCp: ratio('walhub-prefetch', 'local-cp'),
      linkPrefetchVsLinkMux: ratio('link-prefetch', 'link-mux'),
      linkPrefetchVsLocalZstd: ratio('link-prefetch', 'local-zstd'),
      walhubMuxPlainVsLocalCp: ratio('walhub-mux-plain', 'local-cp'),
      sshdCatMuxVsLocalCp: ratio('sshd-cat-mux', 'local-cp'),
      walhubMuxVsSshdCatMux: ratio('walhub-mux', 'sshd-cat-mux'),
      barmanVsWalhubPlain: ratio('barman', 'walhub'),
    },
    cacheKnown: ctx.cacheKnown,
    cache,
    skipped: ctx.skipped,
    link: ctx.link.label,
  };
  return { results, text: report(results) };
}

/**
 * The README's catch-up recipe: etc/standby/walhub-restore, installed where the
 * postgres user can run it, with the ControlMaster recipe in an ssh config of
 * its own; every run starts with an empty spool.
 */
async function prefetchVariant(ctx, work, controlDir, { id, label, hub }) {
  const as = pgUser;
  const script = join(work, 'walhub-restore');
  await copyFile(RESTORE_SCRIPT, script);
  await chmod(script, 0o755);
  const spool = join(work, `spool-${id}`);
  const config = join(work, `ssh_config-${id}`);
  const controlPath = join(controlDir, `${id}.sock`);
  await writeFile(
    config,
    [
      'Host walhub-bench',
      '  HostName 127.0.0.1',
      `  Port ${hub.port}`,
      `  User ${hub.user}`,
      `  IdentityFile ${ctx.key.path}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${hub.knownHosts}`,
      '  StrictHostKeyChecking yes',
      '  BatchMode yes',
      '  LogLevel ERROR',
      '  RequestTTY no',
      '  ControlMaster auto',
      '  ControlPersist 60',
      `  ControlPath ${controlPath}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  if (as) await chown(config, as.uid, as.gid);
  return {
    id,
    label,
    hub,
    command: `${script} -F ${config} -d ${spool} walhub-bench pg1 %f %p`,
    after: async () => {
      await stopMaster(hub, ctx.key, controlPath, { as });
      await rm(spool, { recursive: true, force: true });
    },
  };
}

/** One archive recovery from a fresh copy of the base backup; resolves its wall time in ms. */
async function replayOnce(ctx, work, variant, tag) {
  const as = pgUser;
  const data = join(work, `data-${tag}`);
  const log = join(work, `postgres-${tag}.log`);
  await run('cp', ['-a', ctx.base, data], { as });
  try {
    await writeFile(join(data, 'recovery.signal'), '');
    if (as) await chown(join(data, 'recovery.signal'), as.uid, as.gid);
    const port = await findFreePort();
    await appendFile(
      join(data, 'postgresql.conf'),
      '\n# walhub replay benchmark\n' + toConf({ ...clusterConf(work, port), archive_mode: 'off', restore_command: variant.command }),
    );
    const t0 = process.hrtime.bigint();
    await run(ctx.bins.pg_ctl, ['start', '-W', '-s', '-D', data, '-l', log], { as });
    let text = '';
    for (const deadline = Date.now() + 600_000; ; ) {
      text = await readText(log);
      if (text.includes(READY)) break;
      if (/\b(FATAL|PANIC):/.test(text) || Date.now() > deadline) {
        throw new Error(`replay ${tag} failed; the end of its log:\n${text.trim().split('\n').slice(-15).join('\n')}`);
      }
      await sleep(20);
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const missing = ctx.names.filter((n) => !text.includes(`restored log file "${n}" from archive`));
    if (missing.length > 0) throw new Error(`replay ${tag} did not restore ${missing.length} segments, e.g. ${missing[0]}`);
    return ms;
  } finally {
    await run(ctx.bins.pg_ctl, ['stop', '-s', '-D', data, '-m', 'immediate', '-w'], { as }).catch(() => {});
    await variant.after?.();
    await rm(data, { recursive: true, force: true });
  }
}

function report(r) {
  const s = (ms) => `${fixed(ms / 1000, 2)} s`;
  const rows = [['variant', 'median', 'per segment', 'runs (s)', 'vs local cp']];
  for (const [id, v] of Object.entries(r.variants)) {
    rows.push([`${id}  ${v.label}`, s(v.median), `${fixed(v.median / r.segments, 0)} ms`, v.samples.map((x) => fixed(x / 1000, 2)).join(' '), `${fixed(v.vsLocalCp, 2)}x`]);
  }
  const x = (v) => (v === undefined ? 'n/a' : `${fixed(v, 2)}x`);
  const t = REPLAY_TARGETS;
  const on = r.cacheKnown ? 'cache on' : 'cache not in this build';
  const targets = [
    ['target', 'measured', 'goal', 'result'],
    [`walhub ControlMaster, ${on}, vs local zstd -dc`, x(r.ratios.walhubMuxVsLocalZstd), `<= ${t.muxVsLocalZstd.toFixed(1)}x`, verdict(r.ratios.walhubMuxVsLocalZstd, t.muxVsLocalZstd)],
    [`walhub ControlMaster, ${on}, vs local cp`, x(r.ratios.walhubMuxVsLocalCp), `<= ${t.muxVsLocalCp.toFixed(1)}x`, verdict(r.ratios.walhubMuxVsLocalCp, t.muxVsLocalCp)],
    [
      `walhub ControlMaster, ${on}, preallocate = true, vs local zstd -dc`,
      x(r.ratios.walhubMuxPreallocatedVsLocalZstd),
      `<= ${t.muxVsLocalZstd.toFixed(1)}x`,
      verdict(r.ratios.walhubMuxPreallocatedVsLocalZstd, t.muxVsLocalZstd),
    ],
    [`walhub-restore (fetching ahead), ControlMaster, ${on}, vs local zstd -dc`, x(r.ratios.walhubPrefetchVsLocalZstd), `<= ${t.muxVsLocalZstd.toFixed(1)}x`, verdict(r.ratios.walhubPrefetchVsLocalZstd, t.muxVsLocalZstd)],
    [`walhub-restore (fetching ahead), ControlMaster, ${on}, vs local cp`, x(r.ratios.walhubPrefetchVsLocalCp), `<= ${t.muxVsLocalCp.toFixed(1)}x`, verdict(r.ratios.walhubPrefetchVsLocalCp, t.muxVsLocalCp)],
    ['  for reference: cache off vs local zstd -dc', x(r.ratios.walhubMuxNoCacheVsLocalZstd), '', ''],
    ['  for reference: cache off vs local cp', x(r.ratios.walhubMuxNoCacheVsLocalCp), '', ''],
    ['  for reference: uncompressed archive vs local cp', x(r.ratios.walhubMuxPlainVsLocalCp), '', ''],
    ['  for reference: sshd + cat (ControlMaster) vs local cp: the SSH transport limit', x(r.ratios.sshdCatMuxVsLocalCp), '', ''],
    ['  for reference: walhub ControlMaster, cache on, vs sshd + cat (ControlMaster)', x(r.ratios.walhubMuxVsSshdCatMux), '', ''],
    ...(r.ratios.linkPrefetchVsLinkMux !== undefined
      ? [
          [`  over ${r.link}: walhub-restore vs the recommended line`, x(r.ratios.linkPrefetchVsLinkMux), '', ''],
          [`  over ${r.link}: walhub-restore vs local zstd -dc`, x(r.ratios.linkPrefetchVsLocalZstd), '', ''],
        ]
      : []),
    ['barman get-wal vs walhub plain (speed-up)', x(r.ratios.barmanVsWalhubPlain), `>= ${t.barmanVsPlain}x`, verdict(r.ratios.barmanVsWalhubPlain, t.barmanVsPlain, { atLeast: true })],
  ];
  return [
    `Benchmark 3: archive recovery of a base backup (pg_basebackup -X none, recovery.signal), replaying ${r.segments} real segments`,
    `(${r.first} .. ${r.last}, ${r.walBytes / 2 ** 20} MiB of WAL); wall time from pg_ctl start to "${READY}"; ${r.reps} runs each${r.barmanReps < r.reps ? ` (Barman ${r.barmanReps})` : ''}, interleaved`,
    'each walhub variant has its own walhub, started before the first run and kept for all its runs (run 2 finds what run 1 left in the cache)',
    ...(r.cacheKnown ? [] : ['this build has no [cache] table: the cache-off row is left out (it would repeat walhub-mux)']),
    ...r.skipped.map((why) => `skipped: ${why}`),
    '',
    formatTable(rows),
    '',
    formatTable(targets),
    '',
    'restore_command of each variant:',
    ...Object.entries(r.variants).map(([id, v]) => `  ${id}: ${v.restoreCommand}`),
    '',
    'cache use, from each walhub\'s audit log (all runs):',
    ...Object.entries(r.cache).map(([id, c]) => `  ${id}: ${describeHits(c)}`),
  ].join('\n');
}
