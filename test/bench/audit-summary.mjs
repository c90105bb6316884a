// Benchmark 4 (issue 6): `walhub audit --summary` over one million request
// lines, against jq computing the same summary on the same file. Also walhub's
// peak RSS (memory must not grow with the log).
//
// Runs inside `npm run bench`, or on its own after `npm run build`:
//   node test/bench/audit-summary.mjs      (BENCH_AUDIT_LINES, BENCH_AUDIT_ROUNDS)
import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findProgram, fixed, formatTable, makeTempDir, run, runCleanups, summarize, timeRun, verdict } from './lib.mjs';

const CLI = process.env.WALHUB_CLI ?? fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
export const AUDIT_TARGETS = { jqRatio: 1.0 };

/**
 * The same summary as walhub's --summary --json, in jq: per key and server,
 * requests, bytes, failures by result, first and last time; per key and
 * reason, refused logins. One pass, streaming (inputs), as jq does best.
 */
const JQ_SUMMARY = `
reduce inputs as $r ({requests: {}, refused: {}};
  if $r.event == "request" then
    (($r.key_name // $r.key // "-") + "\\u0000" + ($r.server // "-")) as $id
    | .requests[$id] |= (
        if . == null then {key: ($r.key_name // $r.key // "-"), server: ($r.server // "-"), requests: 0, bytes: 0, failures: {}, first: $r.time} else . end
        | .requests += 1 | .bytes += ($r.bytes // 0) | .last = $r.time
        | if $r.result != "ok" then .failures[$r.result] += 1 else . end)
  elif $r.event == "auth" and $r.result == "refused" then
    (($r.key_name // $r.key // "-") + "\\u0000" + ($r.reason // "-")) as $id
    | .refused[$id] |= (
        if . == null then {key: ($r.key_name // $r.key // "-"), reason: ($r.reason // "-"), count: 0, first: $r.time} else . end
        | .count += 1 | .last = $r.time)
  else . end)
| (.requests | to_entries[] | .value | {type: "requests"} + .),
  (.refused | to_entries[] | .value | {type: "refused_logins"} + .)`;

const KEYS = ['standby-a', 'standby-b', 'standby-c', 'standby-d', 'standby-e', 'standby-f'];
const SERVERS = ['pg1', 'pg2', 'pg3'];

/** A realistic log: connect, auth, request, disconnect per fetch is 4 lines; here only requests and some refusals. */
async function writeLog(path, requests) {
  const out = createWriteStream(path);
  let t = Date.parse('2026-11-01T00:00:00Z');
  let segment = 0;
  for (let i = 0; i < requests; i++) {
    t += 250;
    const key = KEYS[i % KEYS.length];
    const server = SERVERS[i % SERVERS.length];
    const found = i % 97 !== 0;
    const line = JSON.stringify({
      event: 'request',
      time: new Date(t).toISOString(),
      conn: (i * 2654435761 % 2 ** 48).toString(16).padStart(12, '0'),
      remote: `10.1.${i % 7}.${(i % 200) + 10}:${40000 + (i % 20000)}`,
      client: 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3',
      user: 'walhub',
      key: `SHA256:${Buffer.from(key.padEnd(32, '.')).toString('base64').replace(/=+$/, '')}`,
      key_name: key,
      command: `get-wal ${server} ${(segment++).toString(16).toUpperCase().padStart(24, '0')}`,
      server,
      wal: (segment - 1).toString(16).toUpperCase().padStart(24, '0'),
      result: found ? 'ok' : 'not_found',
      exit: found ? 0 : 1,
      bytes: found ? 16777216 : 0,
      ms: 30 + (i % 40),
      ...(found ? { compression: 'zstd', file: 'wals/0000000100000000/000000010000000000000003' } : { error: 'WAL file not found' }),
    });
    if (!out.write(`${line}\n`)) await new Promise((r) => out.once('drain', r));
    if (i % 1000 === 0) {
      const refused = { event: 'auth', time: new Date(t).toISOString(), conn: 'ffffffffffff', remote: '203.0.113.9:50000', client: 'SSH-2.0-libssh', user: 'root', method: 'publickey', result: 'refused', key: 'SHA256:unknown', reason: 'key not authorized' };
      out.write(`${JSON.stringify(refused)}\n`);
    }
  }
  await new Promise((resolve, reject) => out.end((error) => (error ? reject(error) : resolve())));
}

/** Peak RSS in MiB of one run, from GNU time. */
async function peakRssMiB(cmd, args) {
  const time = findProgram('time') ?? '/usr/bin/time';
  const { stderr } = await run(time, ['-f', 'maxrss=%M', cmd, ...args], { timeoutMs: 600_000 });
  const kib = Number(/maxrss=(\d+)/.exec(stderr)?.[1]);
  return kib / 1024;
}

const canonical = (text) =>
  text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).sort(([a], [b]) => a.localeCompare(b)))))
    .sort()
    .join('\n');

/** ctx: { dir, lines?, rounds? } -> { results, text } */
export async function benchAuditSummary(ctx) {
  const lines = ctx.lines ?? Number(process.env.BENCH_AUDIT_LINES ?? 1_000_000);
  const rounds = ctx.rounds ?? Number(process.env.BENCH_AUDIT_ROUNDS ?? 3);
  const jq = findProgram('jq');
  if (!jq) throw new Error('jq not found: install the Debian package jq (apt-get install jq)');
  const log = join(ctx.dir, 'audit.log');
  await writeLog(log, lines);
  const config = join(ctx.dir, 'walhub.toml');
  await writeFile(config, `audit_log = ${JSON.stringify(log)}\n`);
  const walhubArgs = [CLI, 'audit', '--config', config, '--summary', '--json'];
  const jqArgs = ['-n', '-c', JQ_SUMMARY, log];

  // Same answer first: a faster wrong summary is no result.
  const [ours, theirs] = await Promise.all([run(process.execPath, walhubArgs, { timeoutMs: 600_000 }), run(jq, jqArgs, { timeoutMs: 600_000 })]);
  const same = canonical(ours.stdout) === canonical(theirs.stdout);
  if (!same) throw new Error(`walhub and jq disagree on the summary:\n${ours.stdout.slice(0, 2000)}\n---\n${theirs.stdout.slice(0, 2000)}`);

  const times = { walhub: [], jq: [] };
  for (let round = 0; round < rounds; round++) {
    for (const [name, cmd, args] of [['walhub', process.execPath, walhubArgs], ['jq', jq, jqArgs]]) {
      const result = await timeRun(cmd, args);
      if (result.status !== 0) throw new Error(`${name} failed: ${result.stderr}`);
      times[name].push(result.ms);
    }
  }
  const walhub = summarize(times.walhub);
  const jqTimes = summarize(times.jq);
  const rssMiB = await peakRssMiB(process.execPath, walhubArgs);
  const { size } = await import('node:fs').then((fs) => fs.promises.stat(log));
  const ratio = jqTimes.median / walhub.median;
  const results = { lines, bytes: size, rounds, walhubMs: walhub, jqMs: jqTimes, speedupOverJq: ratio, walhubPeakRssMiB: rssMiB, sameSummary: same };
  const text = [
    `Benchmark 4: walhub audit --summary vs jq, ${lines} request lines (${fixed(size / 2 ** 20, 0)} MiB), ${rounds} rounds, medians`,
    formatTable([
      ['tool', 'median', 'min', 'max'],
      ['walhub audit --summary', `${fixed(walhub.median / 1000, 2)} s`, `${fixed(walhub.min / 1000, 2)} s`, `${fixed(walhub.max / 1000, 2)} s`],
      ['jq (same summary)', `${fixed(jqTimes.median / 1000, 2)} s`, `${fixed(jqTimes.min / 1000, 2)} s`, `${fixed(jqTimes.max / 1000, 2)} s`],
    ]),
    `jq time / walhub time: ${fixed(ratio, 2)}x (goal >= ${AUDIT_TARGETS.jqRatio}x: ${verdict(ratio, AUDIT_TARGETS.jqRatio, { atLeast: true })}); ` +
      `walhub peak RSS ${fixed(rssMiB, 0)} MiB; same summary: ${same ? 'yes' : 'NO'}`,
  ].join('\n');
  return { results, text };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    const dir = await makeTempDir('walhub-bench-audit-');
    const { text } = await benchAuditSummary({ dir });
    process.stdout.write(`${text}\n`);
  } catch (error) {
    process.exitCode = 1;
    process.stderr.write(`bench failed: ${error?.stack ?? error}\n`);
  } finally {
    await runCleanups();
  }
}
