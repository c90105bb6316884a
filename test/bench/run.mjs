// `npm run bench`: builds real WAL with PostgreSQL, then runs
//   1. fetch.mjs  — one 16 MiB zstd segment through the OpenSSH client, walhub vs sshd (issue 2)
//   2. replay.mjs — archive recovery through walhub, Barman over sshd, and a local copy (issue 3)
//   3. audit-summary.mjs — walhub audit --summary vs jq over a million request lines (issue 6;
//      also runs on its own: node test/bench/audit-summary.mjs)
// prints a plain-text report and writes it as JSON to test/bench/results/latest.json.
//
// Knobs (environment): BENCH_ROUNDS (fetch rounds, default 15), BENCH_REPLAY_RUNS
// (replays per variant, default 2), BENCH_SEGMENTS (at least this many segments,
// default 42), WALHUB_CLI (another build's dist/cli.js, to compare a change).
// Everything runs on 127.0.0.1 and in one temp dir, and is stopped and removed at the end.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildArchive, compressArchive, findPostgres, linkPlainLayout } from './archive.mjs';
import { benchAuditSummary } from './audit-summary.mjs';
import { benchFetch } from './fetch.mjs';
import { benchReplay } from './replay.mjs';
import { findProgram, findUser, isRoot, makeDir, makeTempDir, pgUser, runCleanups } from './lib.mjs';
import { makeClientKey, startSshd, startWalhub } from './servers.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RESULTS = join(ROOT, 'test/bench/results/latest.json');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const REPLAY_RUNS = Number(process.env.BENCH_REPLAY_RUNS ?? 2);
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
    walhub: commit ? `${commit}${git(['status', '--porcelain', '--', 'src']) ? ' + uncommitted src changes' : ''}` : 'unknown',
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
  progress(`building a WAL archive of at least ${SEGMENTS} segments with PostgreSQL in ${dir}`);
  const archive = await buildArchive(dir, { bins: pg.bins, segments: SEGMENTS });
  const layout = await compressArchive(dir, archive.plain, archive.names, isRoot ? barmanUser : undefined);
  progress(`archive: ${archive.names.length} segments, zstd -3 to ${((100 * layout.compressedBytes) / layout.plainBytes).toFixed(0)}%`);

  const keyDir = await makeDir(join(dir, 'keys'));
  const fetchKey = await makeClientKey(keyDir, 'bench-fetch');
  const replayKey = await makeClientKey(keyDir, 'bench-replay', pgUser);
  // A full segment from the middle of the run: real rows, not the backup's start.
  const segmentName = archive.names[Math.floor(archive.names.length / 2)];
  const segment = { name: segmentName, plainPath: join(archive.plain, segmentName), zstdPath: join(layout.zstd, segmentName) };
  segment.zstdBytes = statSync(segment.zstdPath).size;

  let sshd;
  if (!sshdMissing) {
    sshd = await startSshd({
      dir: await makeDir(join(dir, 'sshd')),
      // The fetch key runs sshd's side of benchmark 1 as a forced command; the
      // replay key runs whatever restore_command sends (barman get-wal ...).
      authorizedKeys: [
        { options: `command="zstd -dc ${segment.zstdPath}"`, key: fetchKey.publicLine },
        { key: replayKey.publicLine },
      ],
    });
  }
  const hubDir = await makeDir(join(dir, 'walhub'));
  const plainServerDir = await linkPlainLayout(dir, archive.plain, archive.names);
  const startHub = (moreToml = '') =>
    startWalhub({
      dir: hubDir,
      archive: layout.barmanHome,
      authorizedKeys: [`servers="pg1" ${fetchKey.publicLine}`, `servers="pg1,pg1plain" ${replayKey.publicLine}`],
      // The same segments uncompressed: walhub's transport without zstd decoding.
      // 16 streams at once from one key on one host: above the defaults for one
      // host (10 logins at once) and one key (8 transfers), which guard against
      // exactly that from a stranger; raised here so every stream is served.
      extraToml: `[servers.pg1plain]\npath = ${JSON.stringify(plainServerDir)}\n[limits]\nper_source_max_startups = 32\nmax_transfers_per_key = 16\n${moreToml}`,
      ...(process.env.WALHUB_CLI ? { cli: process.env.WALHUB_CLI } : {}),
    });

  progress('benchmark 1: fetch');
  const fetch = await benchFetch({
    dir: await makeDir(join(dir, 'fetch')),
    key: fetchKey,
    segment,
    // Full segments for the RSS measurement, and the one that compresses best
    // (a segment closed early by a WAL switch, as archive_timeout makes them).
    streamNames: archive.names.slice(1, 17),
    sparse: smallestSegment(archive.names, layout.zstd),
    rounds: ROUNDS,
    startHub,
    sshd,
    sshdMissing,
  });
  say();
  say(fetch.text);

  progress('benchmark 2: replay');
  const hub = await startHub();
  let barmanConf;
  if (!barmanMissing) barmanConf = await writeBarmanConf(dir, layout.barmanHome, barmanUser);
  const replay = await benchReplay({
    dir,
    bins: pg.bins,
    base: archive.base,
    names: archive.names,
    plain: archive.plain,
    zstd: layout.zstd,
    key: replayKey,
    hub,
    sshd,
    barmanConf,
    skipped: barmanMissing ? [barmanMissing] : [],
    reps: REPLAY_RUNS,
  });
  await hub.stop();
  say();
  say(replay.text);

  progress('benchmark 3: audit summary');
  const audit = await benchAuditSummary({ dir: await makeDir(join(dir, 'audit')) });
  say();
  say(audit.text);

  const runtimeS = (Date.now() - startedAt) / 1000;
  say();
  say(`total bench time: ${runtimeS.toFixed(0)} s (building the archive included); load average ${loadavg()[0].toFixed(2)} at the end`);
  await mkdir(join(ROOT, 'test/bench/results'), { recursive: true });
  const json = { date: new Date(startedAt).toISOString(), command: 'npm run bench', machine, runtimeS, fetch: fetch.results, replay: replay.results, audit: audit.results };
  await writeFile(RESULTS, `${JSON.stringify(json, null, 2)}\n`);
  say(`results written to ${RESULTS.slice(ROOT.length)}`);
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
