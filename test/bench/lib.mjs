// Small process, timing and cleanup helpers shared by the benchmarks.
// Plain ESM so `npm run bench` needs no TypeScript loader.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, openSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

// ---- cleanup: everything started registers how to stop it, undone in reverse ----

/** @type {{ what: string, undo: () => Promise<unknown> | unknown }[]} */
const cleanups = [];

/** Registers an undo step; returns a function that runs it early (once) and unregisters it. */
export function defer(what, undo) {
  const entry = { what, undo };
  cleanups.push(entry);
  return async () => {
    const i = cleanups.indexOf(entry);
    if (i < 0) return;
    cleanups.splice(i, 1);
    await undo();
  };
}

export async function runCleanups() {
  while (cleanups.length > 0) {
    const { what, undo } = cleanups.pop();
    try {
      await undo();
    } catch (error) {
      process.stderr.write(`bench: cleanup of ${what} failed: ${error?.message ?? error}\n`);
    }
  }
}

/** A temp dir under os.tmpdir() that other users (postgres, barman) may traverse; removed at cleanup. */
export async function makeTempDir(prefix) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  defer(`temp dir ${dir}`, () => rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function makeDir(path, { owner, mode = 0o755 } = {}) {
  await mkdir(path, { recursive: true, mode });
  await chmod(path, mode);
  if (owner) await chown(path, owner.uid, owner.gid);
  return path;
}

// ---- programs and users ----

const EXTRA_DIRS = ['/usr/sbin', '/usr/lib/postgresql/15/bin'];

/** Absolute path of a program on PATH (or in /usr/sbin and PostgreSQL 15's bin dir), or undefined. */
export function findProgram(name) {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...EXTRA_DIRS]) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // keep looking
    }
  }
  return undefined;
}

export const isRoot = process.getuid?.() === 0;

/** uid, gid and home of a local account, or undefined. */
export function findUser(name) {
  const out = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  const f = out.status === 0 ? out.stdout.trim().split(':') : [];
  return f.length >= 6 ? { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] } : undefined;
}

/** Who runs PostgreSQL and its restore_command: postgres when we are root (PostgreSQL refuses root), else us. */
export const pgUser = isRoot ? findUser('postgres') : undefined;

// Inherited PG* variables (PGHOST from CI services...) would redirect psql.
function childEnv(user, extra) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')));
  if (user) Object.assign(env, { HOME: user.home, USER: user.name, LOGNAME: user.name });
  return { ...env, ...extra };
}

/**
 * Runs a program to completion; resolves { stdout, stderr }, rejects with its stderr.
 * `as` is a user from findUser (spawned with its uid/gid).
 */
export function run(cmd, args, { as, env, cwd = '/', timeoutMs = 120_000, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      {
        ...(as ? { uid: as.uid, gid: as.gid } : {}),
        env: childEnv(as, env),
        cwd,
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 64 << 20,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        if (!error) return resolve({ stdout, stderr });
        const status = error.killed ? 'timed out' : `exit ${error.code ?? error.signal}`;
        reject(new Error(`${cmd} ${args.join(' ')} failed (${status}): ${(stderr || stdout || error.message).trim()}`));
      },
    );
    if (input !== undefined) child.stdin.end(input);
  });
}

/** Starts a long-running program; the caller owns it. */
export function start(cmd, args, { as, env, cwd = '/', stdio = ['ignore', 'pipe', 'pipe'] } = {}) {
  return spawn(cmd, args, { ...(as ? { uid: as.uid, gid: as.gid } : {}), env: childEnv(as, env), cwd, stdio });
}

const devNull = openSync('/dev/null', 'w');

/**
 * Wall time of one program run with stdout to /dev/null, from spawn to exit.
 * Resolves { ms, status, stderr }.
 */
export function timeRun(cmd, args, { as, env } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, {
      ...(as ? { uid: as.uid, gid: as.gid } : {}),
      env: childEnv(as, env),
      stdio: ['ignore', devNull, 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (t) => (stderr += t));
    child.on('error', reject);
    child.on('close', (status) => resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, status, stderr: stderr.trim() }));
  });
}

// ---- waiting, ports ----

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls check() until it returns something truthy; the timeout error names `what`. */
export async function waitUntil(what, check, { timeoutMs = 30_000, intervalMs = 25 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** A port free on 127.0.0.1 right now: only for programs that cannot listen on port 0 (sshd, PostgreSQL). */
export function findFreePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export async function readText(path) {
  return readFile(path, 'utf8').catch(() => '');
}

// ---- statistics and formatting ----

/** Nearest-rank percentile of a list of numbers (p in 0..100). */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

/** The middle value; the mean of the two middle ones for an even count. */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function summarize(values) {
  return {
    n: values.length,
    median: median(values),
    p90: percentile(values, 90),
    min: Math.min(...values),
    max: Math.max(...values),
  };
}

export const fixed = (x, digits = 1) => (x === undefined || x === null || Number.isNaN(x) ? 'n/a' : x.toFixed(digits));

/** A plain-text table: first row is the header; columns padded, numbers right-aligned. */
export function formatTable(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c] ?? '').length)));
  const line = (r) =>
    r
      .map((cell, c) => {
        const s = String(cell ?? '');
        return /^[-\d.]+( ?(ms|s|x|MiB|MiB\/s))?$/.test(s) || s === 'n/a' ? s.padStart(widths[c]) : s.padEnd(widths[c]);
      })
      .join('  ')
      .trimEnd();
  return [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

/** PASS, MISS, or n/a when the measurement is missing. */
export function verdict(value, limit, { atLeast = false } = {}) {
  if (value === undefined || value === null || Number.isNaN(value)) return 'n/a';
  return (atLeast ? value >= limit : value <= limit) ? 'PASS' : 'MISS';
}
