// `npm run bench`: builds real WAL with PostgreSQL, then runs
//   1. fetch.mjs — one 16 MiB zstd segment fetched cold (walhub's cache off) through the
//      OpenSSH client, walhub vs sshd + zstd -dc, fresh and ControlMaster (issues 2, 8);
//      walhub's peak RSS serving 16 streams at once, cache off and on
//   2. consecutive.mjs — 16 consecutive segments through a ControlMaster, walhub (cache on
//      and off) vs sshd + cat of the decompressed files and sshd + zstd -dc (issue 8)
//   3. replay.mjs — archive recovery through walhub (cache on and off), Barman over sshd,
//      and a local copy (issues 3, 8)
//   4. audit-summary.mjs — walhub audit --summary vs jq over a million request lines (issue 6;
//      also runs on its own: node test/bench/audit-summary.mjs)
//   5. fixed-cost.mjs — one request through a ControlMaster with no data: the OpenSSH client
//      starting alone, walhub and sshd answering a segment that is not archived (issue 8)
// then the issue 8 targets side by side, and how many requests each walhub
// served from its cache (from its audit log). Prints a plain-text report and
// writes it as JSON to test/bench/results/latest.json.
//
// The build under test may not know the [cache] table yet (checked with
// `walhub check`): then the cache-on variants run walhub as it is, labelled
// "cache not in this build", and the cache-off rows that would repeat them are left out.
//
// Knobs (environment): BENCH_ROUNDS (benchmark 1 rounds, default 15),
// BENCH_CONSECUTIVE_ROUNDS (benchmark 2 rounds, default 5), BENCH_REPLAY_RUNS
// (replays per variant, default 2), BENCH_BARMAN_RUNS (replays through Barman,
// at most BENCH_REPLAY_RUNS, default 1: about 80 s each), BENCH_SEGMENTS (at
// least this many segments, default 42), WALHUB_CLI (another build's
// dist/cli.js, to compare a change), BENCH_WARM_MEMORY_MIB (memory written once
// before the servers start, see memory.mjs; default a third of RAM up to 8 GiB,
// 0 skips it), benchmark 4's BENCH_AUDIT_LINES and BENCH_AUDIT_ROUNDS, and
// BENCH_ONLY (a comma-separated list of benchmark numbers, e.g. 3: only those
// run, the issue 8 summary needs 1, 2 and 3, and results/latest.json is
// written by whole runs only).
// A whole run takes about 8 minutes on 2 cores.
// Everything runs on 127.0.0.1 and in one temp dir, and is stopped and removed at the end.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildArchive, compressArchive, findPostgres, linkPlainLayout } from './archive.mjs';
import { benchAuditSummary } from './audit-summary.mjs';
import { describeHits } from './cache-hits.mjs';
import { benchConsecutive, CONSECUTIVE_TARGETS, WINDOW, writeServeScript } from './consecutive.mjs';
import { benchFetch, FETCH_TARGETS } from './fetch.mjs';
import { benchFixedCost } from './fixed-cost.mjs';
import { shapeLoopback } from './link.mjs';
import { describeWarmup, warmMachineMemory } from './memory.mjs';
import { benchReplay, REPLAY_TARGETS } from './replay.mjs';
import { findProgram, findUser, fixed, formatTable, isRoot, makeDir, makeTempDir, pgUser, runCleanups, verdict } from './lib.mjs';
import { buildKnowsCache, CACHE_DEFAULTS, CACHE_OFF, CACHE_PREALLOCATED, makeClientKey, SERVE_NODE_FLAGS, startSshd, startWalhub } from './servers.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RESULTS = join(ROOT, 'test/bench/results/latest.json');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const ONLY = new Set((process.env.BENCH_ONLY ?? '1,2,3,4,5').split(',').map((n) => n.trim()));
const runs = (n) => ONLY.has(String(n));
const CONSECUTIVE_ROUNDS = Number(process.env.BENCH_CONSECUTIVE_ROUNDS ?? 5);
const REPLAY_RUNS = Number(process.env.BENCH_REPLAY_RUNS ?? 2);
const BARMAN_RUNS = Number(process.env.BENCH_BARMAN_RUNS ?? 1);
const SEGMENTS = Math.max(40, Number(process.env.BENCH_SEGMENTS ?? 42));

const say = (text = '') => process.stdout.write(`${text}\n`);
const progress = (text) => process.stderr.write(`bench: ${text}\n`);

function versionOf(cmd, args, pattern = /.*/) {
  const out = spawnSync(cmd, args, { encoding: 'utf8' });
  return pattern.exec(`${out.stdout}${out.stderr}`.trim())?.[0] ?? 'unknown';
}

function machineFacts() {
  const git = (args) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' }).stdout?.trim();
  const commit = git(['rev-parse', '--short', 'HEAD']);
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: versionOf('uname', ['-sr']),
    node: process.version,
    openssh: versionOf('ssh', ['-V'], /OpenSSH_\S+/),
    postgres: versionOf(findProgram('postgres') ?? 'postgres', ['--version'], /\d+\.\d+\S*/),
    barman: findProgram('barman') ? versionOf('barman', ['--version'], /^\S+/) : 'not installed',
    zstd: versionOf('zstd', ['--version'], /v\d[\d.]*\d/),
    loadAverageAtStart: loadavg()[0],
    walhub: process.env.WALHUB_CLI
      ? `${process.env.WALHUB_CLI} (WALHUB_CLI; bench from ${commit ?? 'unknown'})`
      : commit
        ? `${commit}${git(['status', '--porcelain', '--', 'src']) ? ' + uncommitted src changes' : ''}`
        : 'unknown',
  };
}

async function main() {
  const startedAt = Date.now();
  const machine = machineFacts();
  say('walhub benchmarks (npm run bench)');
  say(`date: ${new Date().toISOString()}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} (1/5/15 min) at start`);
  say(
    `machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memoryGiB} GiB, ${machine.kernel}; node ${machine.node}; ` +
      `${machine.openssh}; PostgreSQL ${machine.postgres}; Barman ${machine.barman}; zstd ${machine.zstd}; walhub ${machine.walhub}`,
  );

  for (const [program, pkg] of [['ssh', 'openssh-client'], ['ssh-keygen', 'openssh-client'], ['zstd', 'zstd']]) {
    if (!findProgram(program)) throw new Error(`${program} not found: install the Debian package ${pkg}`);
  }
  const pg = findPostgres();
  if (pg.missing) throw new Error(`both benchmarks replay real WAL made by PostgreSQL: ${pg.missing}`);
  let sshdMissing;
  if (!findProgram('sshd')) sshdMissing = 'sshd not found: install the Debian package openssh-server (apt-get install openssh-server)';
  else if (!isRoot) sshdMissing = 'sshd must be started as root (it switches to the login user); run the bench as root';
  const barmanUser = findUser('barman');
  let barmanMissing;
  if (!findProgram('barman')) barmanMissing = 'barman not found: install the Debian package barman (apt-get install barman)';
  else if (sshdMissing) barmanMissing = `Barman is reached over OpenSSH: ${sshdMissing}`;

  const dir = await makeTempDir('walhub-bench-');
  const cli = process.env.WALHUB_CLI;
  const cacheKnown = await buildKnowsCache(await makeDir(join(dir, 'cache-check')), ...(cli ? [cli] : []));
  // Budget of the cache at its defaults, for the RSS goal (budget + 150 MiB).
  const cacheBudgetMiB = parseInt(CACHE_DEFAULTS.memory, 10);
  // Without a cache in the build, no [cache] table at all: it would be refused as unknown.
  const cacheOn = undefined;
  const cacheOff = cacheKnown ? CACHE_OFF : undefined;
  // The cache at its defaults, but its memory taken at start (a build without the setting: no such rows).
  const cachePreallocated =
    cacheKnown && (await buildKnowsCache(await makeDir(join(dir, 'preallocate-check')), cli, CACHE_PREALLOCATED)) ? CACHE_PREALLOCATED : undefined;
  say(`readahead cache: ${cacheKnown ? `in this build; "cache on" is its defaults (${CACHE_DEFAULTS.memory}, readahead ${CACHE_DEFAULTS.readahead}), "cache off" is [cache] memory = 0` : 'NOT in this build (walhub check refuses [cache]): cache-on variants run walhub as it is'}`);
  say(
    `walhub runs as npm start and the systemd unit run it: node ${[...SERVE_NODE_FLAGS, cli ?? 'dist/cli.js'].join(' ')} serve --config FILE` +
      (cli ? " (node's options from this checkout's package.json, whatever WALHUB_CLI's build had)" : ''),
  );
  progress(`building a WAL archive of at least ${SEGMENTS} segments with PostgreSQL in ${dir}`);
  const archive = await buildArchive(dir, { bins: pg.bins, segments: SEGMENTS });
  const layout = await compressArchive(dir, archive.plain, archive.names, isRoot ? barmanUser : undefined);
  progress(`archive: ${archive.names.length} segments, zstd -3 to ${((100 * layout.compressedBytes) / layout.plainBytes).toFixed(0)}%`);
  // After the archive's page cache is in place, before any server starts: see memory.mjs.
  const warmup = warmMachineMemory();
  say(describeWarmup(warmup));

  const keyDir = await makeDir(join(dir, 'keys'));
  const fetchKey = await makeClientKey(keyDir, 'bench-fetch');
  const replayKey = await makeClientKey(keyDir, 'bench-replay', pgUser);
  // Benchmark 2's sshd side: one key per forced command.
  const catKey = await makeClientKey(keyDir, 'bench-cat');
  const zstdKey = await makeClientKey(keyDir, 'bench-zstd');
  // A full segment from the middle of the run: real rows, not the backup's start.
  const segmentName = archive.names[Math.floor(archive.names.length / 2)];
  const segment = { name: segmentName, plainPath: join(archive.plain, segmentName), zstdPath: join(layout.zstd, segmentName) };
  segment.zstdBytes = statSync(segment.zstdPath).size;

  let sshd;
  if (!sshdMissing) {
    const sshdDir = await makeDir(join(dir, 'sshd'));
    const catScript = await writeServeScript(join(sshdDir, 'serve-cat.sh'), 'cat', archive.plain);
    const zstdScript = await writeServeScript(join(sshdDir, 'serve-zstd.sh'), 'zstd', layout.zstd);
    sshd = await startSshd({
      dir: sshdDir,
      // The fetch key runs sshd's side of benchmark 1 as a forced command; the
      // cat and zstd keys benchmark 2's; the replay key runs whatever
      // restore_command sends (barman get-wal ...).
      authorizedKeys: [
        { options: `command="zstd -dc ${segment.zstdPath}"`, key: fetchKey.publicLine },
        { options: `command="${catScript}"`, key: catKey.publicLine },
        { options: `command="${zstdScript}"`, key: zstdKey.publicLine },
        { key: replayKey.publicLine },
      ],
    });
  }
  const plainServerDir = await linkPlainLayout(dir, archive.plain, archive.names);
  // One directory per walhub configuration (host key, config, audit log): hubs
  // of different variants may run at once, and each audit log counts one variant.
  const startHub = async ({ name, cache }) =>
    startWalhub({
      dir: await makeDir(join(dir, `walhub-${name}`)),
      cache,
      archive: layout.barmanHome,
      authorizedKeys: [`servers="pg1" ${fetchKey.publicLine}`, `servers="pg1,pg1plain" ${replayKey.publicLine}`],
      // The same segments uncompressed: walhub's transport without zstd decoding.
      // 16 streams at once from one key on one host: above the defaults for one
      // host (10 logins at once) and one key (8 transfers), which guard against
      // exactly that from a stranger; raised here so every stream is served.
      extraToml: `[servers.pg1plain]\npath = ${JSON.stringify(plainServerDir)}\n[limits]\nper_source_max_startups = 32\nmax_transfers_per_key = 16\n`,
      ...(cli ? { cli } : {}),
    });

  let fetch, consecutive, replay, audit, fixedCost;
  if (runs(1)) {
    progress('benchmark 1: fetch');
    fetch = await benchFetch({
      dir: await makeDir(join(dir, 'fetch')),
      key: fetchKey,
      segment,
      // Full segments for the RSS measurement, and the one that compresses best
      // (a segment closed early by a WAL switch, as archive_timeout makes them).
      streamNames: archive.names.slice(1, 17),
      sparse: smallestSegment(archive.names, layout.zstd),
      rounds: ROUNDS,
      startHub,
      cacheOn,
      cacheOff,
      cachePreallocated,
      cacheKnown,
      cacheBudgetMiB,
      sshd,
      sshdMissing,
    });
    say();
    say(fetch.text);
  }

  if (runs(2)) {
    progress('benchmark 2: consecutive segments');
    const middle = Math.floor(archive.names.length / 2);
    consecutive = await benchConsecutive({
      dir: await makeDir(join(dir, 'consecutive')),
      // Full segments from the middle of the run, well before the last one (the warm-up fetch).
      names: archive.names.slice(middle - WINDOW / 2, middle + WINDOW / 2),
      plainDir: archive.plain,
      warmName: archive.names.at(-1),
      // A warm hub's earlier work: segments before the window beyond its readahead, and after it.
      fillNames: [
        ...archive.names.slice(1, middle - WINDOW / 2 - CACHE_DEFAULTS.readahead),
        ...archive.names.slice(middle + WINDOW / 2, -1),
      ],
      rounds: CONSECUTIVE_ROUNDS,
      cacheKnown,
      cacheOn,
      cacheOff,
      cachePreallocated,
      startHub,
      walhubKey: fetchKey,
      sshd,
      sshdMissing,
      catKey,
      zstdKey,
    });
    say();
    say(consecutive.text);
  }

  if (runs(3)) {
    progress('benchmark 3: replay');
    const hubs = {
      plain: await startHub({ name: 'replay-plain', cache: cacheOn }),
      mux: await startHub({ name: 'replay-mux', cache: cacheOn }),
      ...(cacheKnown ? { muxNoCache: await startHub({ name: 'replay-mux-nocache', cache: cacheOff }) } : {}),
      ...(cachePreallocated ? { muxPreallocated: await startHub({ name: 'replay-mux-prealloc', cache: cachePreallocated }) } : {}),
      muxPlain: await startHub({ name: 'replay-mux-plain', cache: cacheOn }),
      prefetch: await startHub({ name: 'replay-prefetch', cache: cacheOn }),
      muxLink: await startHub({ name: 'replay-link-mux', cache: cacheOn }),
      prefetchLink: await startHub({ name: 'replay-link-prefetch', cache: cacheOn }),
    };
    // The last two behind a 1 Gbit/s link: what leaves their ports is shaped (link.mjs).
    const link = await shapeLoopback([hubs.muxLink.port, hubs.prefetchLink.port], '1gbit', '1 Gbit/s');
    if (link.missing) {
      await hubs.muxLink.stop();
      await hubs.prefetchLink.stop();
      delete hubs.muxLink;
      delete hubs.prefetchLink;
    }
    let barmanConf;
    if (!barmanMissing) barmanConf = await writeBarmanConf(dir, layout.barmanHome, barmanUser);
    replay = await benchReplay({
      dir,
      bins: pg.bins,
      base: archive.base,
      names: archive.names,
      plain: archive.plain,
      zstd: layout.zstd,
      key: replayKey,
      hubs,
      cacheKnown,
      sshd,
      barmanConf,
      skipped: [
        ...(barmanMissing ? [barmanMissing] : BARMAN_RUNS > 0 ? [] : ['sshd + barman get-wal: BENCH_BARMAN_RUNS=0']),
        ...(link.missing ? [`the rows over a 1 Gbit/s link: ${link.missing}`] : []),
      ],
      link,
      reps: REPLAY_RUNS,
      barmanReps: BARMAN_RUNS,
    });
    await link.stop?.();
    say();
    say(replay.text);
  }

  if (runs(4)) {
    progress('benchmark 4: audit summary');
    audit = await benchAuditSummary({ dir: await makeDir(join(dir, 'audit')) });
    say();
    say(audit.text);
  }

  if (runs(5)) {
    progress('benchmark 5: fixed cost of a request');
    fixedCost = await benchFixedCost({ dir: await makeDir(join(dir, 'fixed-cost')), startHub, cacheOn, walhubKey: fetchKey, sshd, sshdMissing, catKey });
    say();
    say(fixedCost.text);
  }

  let targets;
  if (fetch && consecutive && replay) {
    targets = issue8Targets({ cacheKnown, fetch: fetch.results, consecutive: consecutive.results, replay: replay.results });
    say();
    say(targets.text);
  }

  const runtimeS = (Date.now() - startedAt) / 1000;
  say();
  say(`total bench time: ${runtimeS.toFixed(0)} s (building the archive included); load average ${loadavg()[0].toFixed(2)} at the end`);
  if (!(targets && audit && fixedCost)) {
    say(`BENCH_ONLY=${[...ONLY].join(',')}: a partial run, ${RESULTS.slice(ROOT.length)} left as it was`);
    return;
  }
  await mkdir(join(ROOT, 'test/bench/results'), { recursive: true });
  const json = {
    date: new Date(startedAt).toISOString(),
    command: 'npm run bench',
    machine,
    memoryWarmup: warmup,
    runtimeS,
    cacheKnown,
    issue8: targets.results,
    fetch: fetch.results,
    consecutive: consecutive.results,
    replay: replay.results,
    audit: audit.results,
    fixedCost: fixedCost.results,
  };
  await writeFile(RESULTS, `${JSON.stringify(json, null, 2)}\n`);
  say(`results written to ${RESULTS.slice(ROOT.length)}`);
}

/** The issue 8 targets side by side, each from the benchmark that measured it, and each walhub's cache use. */
function issue8Targets({ cacheKnown, fetch, consecutive, replay }) {
  const x = (v) => (v === undefined ? 'n/a' : `${fixed(v, 2)}x`);
  const mib = (m) => `${fixed(m.peakRssMiB)} MiB`;
  const on = cacheKnown ? 'cache on' : 'cache not in this build';
  const rssLimitCache = fetch.rssCache.budgetMiB + FETCH_TARGETS.rssMiB;
  const rows = [
    { target: `16 consecutive segments, ControlMaster, ${on}: walhub / sshd cat (2)`, measured: consecutive.ratios.walhubCacheVsSshdCat, goal: CONSECUTIVE_TARGETS.walhubVsSshdCat, show: x },
    ...(consecutive.ratios.walhubWarmVsSshdCat !== undefined
      ? [{ target: '  same, a warm hub (served other segments first) (2)', measured: consecutive.ratios.walhubWarmVsSshdCat, goal: CONSECUTIVE_TARGETS.walhubVsSshdCat, show: x }]
      : []),
    ...(consecutive.ratios.walhubPreallocatedVsSshdCat !== undefined
      ? [{ target: '  same, a fresh hub with [cache] preallocate = true (2)', measured: consecutive.ratios.walhubPreallocatedVsSshdCat, goal: CONSECUTIVE_TARGETS.walhubVsSshdCat, show: x }]
      : []),
    { target: 'single cold fetch, ControlMaster: walhub / sshd + zstd -dc (1 b/d)', measured: fetch.ratios.coldMultiplexed, goal: FETCH_TARGETS.coldMuxRatio, show: x },
    { target: `replay, ControlMaster, ${on}: walhub / local zstd -dc (3)`, measured: replay.ratios.walhubMuxVsLocalZstd, goal: REPLAY_TARGETS.muxVsLocalZstd, show: x },
    ...(replay.ratios.walhubMuxPreallocatedVsLocalZstd !== undefined
      ? [{ target: '  same, [cache] preallocate = true (3)', measured: replay.ratios.walhubMuxPreallocatedVsLocalZstd, goal: REPLAY_TARGETS.muxVsLocalZstd, show: x }]
      : []),
    ...(replay.ratios.walhubPrefetchVsLocalZstd !== undefined
      ? [{ target: '  same, walhub-restore fetching ahead (3)', measured: replay.ratios.walhubPrefetchVsLocalZstd, goal: REPLAY_TARGETS.muxVsLocalZstd, show: x }]
      : []),
    { target: `replay, ControlMaster, ${on}: walhub / local cp (3)`, measured: replay.ratios.walhubMuxVsLocalCp, goal: REPLAY_TARGETS.muxVsLocalCp, show: x },
    { target: 'peak RSS, 16 streams at once, cache off (1 e)', measured: fetch.rss.failed ? NaN : fetch.rss.peakRssMiB, goal: FETCH_TARGETS.rssMiB, show: () => mib(fetch.rss), below: true },
    { target: `peak RSS, 16 streams at once, ${on} (1 f)`, measured: fetch.rssCache.failed ? NaN : fetch.rssCache.peakRssMiB, goal: rssLimitCache, show: () => mib(fetch.rssCache), below: true },
    ...(fetch.rssPreallocated
      ? [
          {
            target: '  same, [cache] preallocate = true (1 g)',
            measured: fetch.rssPreallocated.failed ? NaN : fetch.rssPreallocated.peakRssMiB,
            goal: rssLimitCache,
            show: () => mib(fetch.rssPreallocated),
            below: true,
          },
        ]
      : []),
  ];
  const table = [['issue 8 target (benchmark)', 'measured', 'goal', 'result']];
  for (const r of rows) {
    const result = Number.isNaN(r.measured) ? 'MISS' : verdict(r.measured, r.below ? r.goal - 1e-9 : r.goal);
    table.push([r.target, r.show(r.measured), r.below ? `< ${r.goal} MiB` : `<= ${r.goal.toFixed(2)}x`, result]);
    r.result = result;
  }
  const cache = {
    'fetch a+b (cold)': fetch.cache.cold,
    'fetch f (RSS, cache on)': fetch.cache.rssCache,
    ...(fetch.cache.rssPreallocated ? { 'fetch g (RSS, cache preallocated)': fetch.cache.rssPreallocated } : {}),
    ...Object.fromEntries(Object.entries(consecutive.cache).map(([id, c]) => [`consecutive ${id}`, c])),
    ...Object.fromEntries(Object.entries(replay.cache).map(([id, c]) => [`replay ${id}`, c])),
  };
  const text = [
    `Issue 8 targets, side by side from this run (readahead cache ${cacheKnown ? 'in this build' : 'NOT in this build'}):`,
    formatTable(table),
    '',
    'cache hits per walhub variant, from its audit log:',
    ...Object.entries(cache).map(([id, c]) => `  ${id}: ${describeHits(c)}`),
  ].join('\n');
  return { text, results: { rows: rows.map(({ target, measured, goal, result }) => ({ target, measured, goal, result })), cache } };
}

function smallestSegment(names, zstdDir) {
  const sized = names.map((name) => ({ name, zstdBytes: statSync(join(zstdDir, name)).size }));
  return sized.reduce((a, b) => (b.zstdBytes < a.zstdBytes ? b : a));
}

/** Barman 3.4 reading the same zstd files: custom compression recognised by zstd's magic bytes. */
async function writeBarmanConf(dir, barmanHome, barmanUser) {
  const logDir = await makeDir(join(dir, 'barman-log'), { owner: barmanUser });
  const conf = join(dir, 'barman.conf');
  await writeFile(
    conf,
    [
      '[barman]',
      `barman_home = ${barmanHome}`,
      `barman_user = ${barmanUser?.name ?? 'root'}`,
      `log_file = ${join(logDir, 'barman.log')}`,
      'log_level = WARNING',
      'compression = custom',
      'custom_compression_filter = zstd -c',
      'custom_decompression_filter = zstd -dc',
      'custom_compression_magic = 0x28b52ffd',
      '',
      '[pg1]',
      'description = walhub benchmark',
      'conninfo = host=/nonexistent user=postgres dbname=postgres',
      'backup_method = postgres',
      'archiver = on',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  return conf;
}

let exiting = false;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (exiting) return;
    exiting = true;
    progress(`${signal}: stopping everything the bench started`);
    void runCleanups().then(() => process.exit(130));
  });
}

try {
  await main();
} catch (error) {
  process.exitCode = 1;
  process.stderr.write(`bench failed: ${error?.stack ?? error}\n`);
} finally {
  await runCleanups();
}
