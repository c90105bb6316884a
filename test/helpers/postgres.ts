// Throwaway PostgreSQL clusters for integration and end-to-end tests.
//
// Every cluster lives in its own temp dir owned by the postgres user: data/,
// the Unix socket and the server log. It listens on that socket only unless
// the caller asks for TCP, so parallel test runs never meet.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { appendFile, chown, lchown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

const PG_MAJOR = 15;
const PG_VERSIONED_BIN = `/usr/lib/postgresql/${PG_MAJOR}/bin`;
// Debian puts the client programs in their own package; the rest come with the server.
const CLIENT_PROGRAMS = new Set(['psql', 'pg_basebackup', 'pg_receivewal', 'pg_recvlogical', 'pg_isready', 'pg_dump']);
// sun_path is 108 bytes on Linux; the socket file name takes ~16 of them.
const MAX_SOCKET_DIR_LENGTH = 90;

export type PgSettings = Record<string, string | number | boolean>;
export type StopMode = 'smart' | 'fast' | 'immediate';

export interface RunOptions {
  env?: Record<string, string>;
  /** The OS account to run as when we are root (default postgres). */
  user?: string;
  cwd?: string;
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface PgCluster {
  /** Temp dir owned by postgres holding data/, the socket and postgres.log. */
  readonly baseDir: string;
  readonly dataDir: string;
  /** Also the socket's port: the socket file is `${socketDir}/.s.PGSQL.${port}`. */
  readonly port: number;
  readonly socketDir: string;
  readonly logFile: string;
  readonly running: boolean;
  start(): Promise<void>;
  stop(mode?: StopMode): Promise<void>;
  /** pg_ctl promote -w: leaves recovery, starts a new timeline. */
  promote(): Promise<void>;
  /** Runs SQL with psql -X -At; resolves to trimmed stdout, rejects with stderr. */
  psql(sql: string, database?: string): Promise<string>;
  /** Runs a PostgreSQL program (by name) or any program (by path) as postgres, with PGHOST etc. set for this cluster. */
  exec(cmd: string, args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Appends settings to postgresql.conf (later lines win); takes effect at the next start or reload. */
  setConf(settings: PgSettings): Promise<void>;
  /** libpq environment for connecting to this cluster over its socket. */
  connEnv(): Record<string, string>;
  /** The last lines of the server log, for error messages. */
  readLogTail(lines?: number): Promise<string>;
  /** Stops the server if it may be running (immediate) and removes baseDir. Safe to call twice. */
  cleanup(): Promise<void>;
}

export interface CreateClusterOptions {
  /** Parent of the cluster's temp dir (default: os.tmpdir()); postgres must be able to traverse it. */
  dir?: string;
  walSegSizeMB?: number;
  conf?: PgSettings;
  initdbArgs?: string[];
}

export interface CreateStandbyOptions {
  dir?: string;
  /**
   * Run the standby as this OS account instead of postgres: ssh in its
   * restore_command then reads that account's ~/.ssh (from its passwd entry).
   */
  osUser?: string;
  /** Settings for the standby; the primary's postgresql.conf is copied by pg_basebackup and these win over it. */
  conf?: PgSettings;
  basebackupArgs?: string[];
}

const binCache = new Map<string, string>();

/** Finds a PostgreSQL program in PATH, then in the PostgreSQL 15 bin dir; throws naming the Debian package. */
export function findPgBin(name: string): string {
  const cached = binCache.get(name);
  if (cached !== undefined) return cached;
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== ''), PG_VERSIONED_BIN];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      binCache.set(name, candidate);
      return candidate;
    } catch {
      // not here; try the next directory
    }
  }
  const pkg = CLIENT_PROGRAMS.has(name) ? `postgresql-client-${PG_MAJOR}` : `postgresql-${PG_MAJOR}`;
  throw new Error(`${name} not found in PATH or ${PG_VERSIONED_BIN}: install ${pkg}`);
}

interface OsUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

const osUsers = new Map<string, OsUser>();

/** The account PostgreSQL runs as when we are root (it refuses to run as root), else undefined. */
function loadOsUser(name = 'postgres'): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const cached = osUsers.get(name);
  if (cached) return cached;
  const result = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  const fields = result.status === 0 ? result.stdout.trim().split(':') : [];
  if (fields.length < 6) {
    throw new Error(
      name === 'postgres'
        ? `running as root but there is no postgres user: install postgresql-${PG_MAJOR} (it creates one)`
        : `running as root but there is no user ${name}`,
    );
  }
  const user = { name, uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] ?? '/' };
  osUsers.set(name, user);
  return user;
}

// Inherited PG* variables (PGHOST, PGPASSWORD, PGOPTIONS... set by CI services)
// would silently redirect or alter our connections, so they never pass through.
function toChildEnv(extra: Record<string, string> | undefined, userName?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG')) env[key] = value;
  }
  const user = loadOsUser(userName);
  if (user) Object.assign(env, { HOME: user.home, USER: user.name, LOGNAME: user.name });
  return { ...env, ...extra };
}

// Node's uid/gid spawn options rather than `runuser -u postgres --`: runuser does
// not pass SIGINT on to its child (pg_receivewal must get it to stop cleanly),
// and it adds a PAM session per call. libuv also drops root's supplementary groups.
function toIdentity(userName?: string): { uid?: number; gid?: number } {
  const user = loadOsUser(userName);
  return user ? { uid: user.uid, gid: user.gid } : {};
}

/** Runs a program as postgres (directly when not root); rejects with its exit status and stderr. */
export function asPostgres(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      {
        ...toIdentity(opts.user),
        env: toChildEnv(opts.env, opts.user),
        cwd: opts.cwd ?? '/',
        timeout: opts.timeoutMs ?? 60_000,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        if (!error) return resolve({ stdout, stderr });
        const status = error.killed ? 'timed out' : `exit ${String(error.code ?? error.signal)}`;
        const detail = stderr.trim() || stdout.trim() || error.message;
        reject(new Error(`${cmd} ${args.join(' ')} failed (${status}): ${detail}`, { cause: error }));
      },
    );
  });
}

/** Starts a long-running program as postgres; the caller owns the process and must end it. */
export function spawnAsPostgres(cmd: string, args: string[], opts: RunOptions = {}): ChildProcess {
  return spawn(cmd, args, {
    ...toIdentity(opts.user),
    env: toChildEnv(opts.env, opts.user),
    cwd: opts.cwd ?? '/',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** A port free on 127.0.0.1 right now. Racy by nature; acceptable for PostgreSQL, which cannot listen on port 0. */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not read the bound port'))));
    });
  });
}

/** Polls check() until it returns a value other than undefined/false; the timeout error names `what`. */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  { timeoutMs = 20_000, intervalMs = 50 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** postgresql.conf syntax: strings single-quoted with quotes doubled. */
export function toConfLines(settings: PgSettings): string {
  const lines = Object.entries(settings).map(([key, value]) => {
    if (typeof value === 'number') return `${key} = ${value}`;
    if (typeof value === 'boolean') return `${key} = ${value ? 'on' : 'off'}`;
    return `${key} = '${value.replaceAll("'", "''")}'`;
  });
  return lines.join('\n') + '\n';
}

/** Quotes a word for /bin/sh, e.g. a path inside archive_command. */
export function toShellWord(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

// Fast and quiet rather than durable: nothing here must survive an OS crash.
const DEFAULT_SETTINGS: PgSettings = {
  fsync: false,
  shared_buffers: '32MB',
  max_connections: 20,
  log_min_messages: 'warning',
};

// Clusters that may be running, stopped at process exit if a test forgot (or crashed).
const live = new Set<Cluster>();
let exitHookInstalled = false;

function trackLive(cluster: Cluster): void {
  live.add(cluster);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of live) {
      spawnSync(findPgBin('pg_ctl'), ['stop', '-D', c.dataDir, '-m', 'immediate', '-s'], {
        ...toIdentity(c.osUser),
        env: toChildEnv(undefined, c.osUser),
        stdio: 'ignore',
        timeout: 10_000,
      });
    }
  });
}

/** Gives a path we created to the postgres user when we are root (a no-op otherwise). */
export async function chownToPostgres(path: string): Promise<void> {
  await chownToOsUser(path, 'postgres');
}

/** Gives a path to an OS account when we are root (a no-op otherwise). */
export async function chownToOsUser(path: string, userName: string, opts: { recursive?: boolean } = {}): Promise<void> {
  const user = loadOsUser(userName);
  if (!user) return;
  await chown(path, user.uid, user.gid);
  if (!opts.recursive) return;
  for (const entry of await readdir(path, { recursive: true })) await lchown(join(path, entry), user.uid, user.gid);
}

async function createBaseDir(parent: string | undefined): Promise<string> {
  const base = await mkdtemp(join(parent ?? tmpdir(), 'walhub-pg-'));
  if (base.length > MAX_SOCKET_DIR_LENGTH) {
    await rm(base, { recursive: true, force: true });
    throw new Error(`${base} is too long for a Unix socket directory: set TMPDIR (or opts.dir) to a shorter path`);
  }
  await chownToPostgres(base);
  return base;
}

class Cluster implements PgCluster {
  readonly dataDir: string;
  readonly socketDir: string;
  readonly logFile: string;
  // true from the first start attempt until a stop succeeds: a failed start may leave a postmaster behind
  private maybeRunning = false;
  private removed = false;

  constructor(
    readonly baseDir: string,
    readonly port: number,
    /** The OS account it runs as (when we are root). */
    readonly osUser = 'postgres',
  ) {
    this.dataDir = join(baseDir, 'data');
    this.socketDir = baseDir;
    this.logFile = join(baseDir, 'postgres.log');
  }

  get running(): boolean {
    return this.maybeRunning;
  }

  connEnv(): Record<string, string> {
    return { PGHOST: this.socketDir, PGPORT: String(this.port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
  }

  exec(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    const program = cmd.includes('/') ? cmd : findPgBin(cmd);
    return asPostgres(program, args, { user: this.osUser, ...opts, env: { ...this.connEnv(), ...opts.env } });
  }

  async psql(sql: string, database = 'postgres'): Promise<string> {
    const { stdout } = await this.exec('psql', ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-d', database, '-c', sql]);
    return stdout.trim();
  }

  async setConf(settings: PgSettings): Promise<void> {
    await appendFile(join(this.dataDir, 'postgresql.conf'), `\n# walhub test settings\n${toConfLines(settings)}`);
  }

  async start(): Promise<void> {
    this.maybeRunning = true;
    trackLive(this);
    try {
      await this.exec('pg_ctl', ['start', '-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', '-s']);
    } catch (error) {
      throw new Error(`PostgreSQL did not start in ${this.dataDir}; log:\n${await this.readLogTail()}`, { cause: error });
    }
  }

  async stop(mode: StopMode = 'fast'): Promise<void> {
    if (!this.maybeRunning) return;
    await this.exec('pg_ctl', ['stop', '-D', this.dataDir, '-m', mode, '-w', '-t', '60', '-s']);
    this.maybeRunning = false;
    live.delete(this);
  }

  async promote(): Promise<void> {
    await this.exec('pg_ctl', ['promote', '-D', this.dataDir, '-w', '-t', '60', '-s']);
  }

  async cleanup(): Promise<void> {
    if (this.maybeRunning) {
      try {
        await this.stop('immediate');
      } catch {
        // already gone (e.g. it never came up); removing the directory is what matters now
        this.maybeRunning = false;
        live.delete(this);
      }
    }
    if (this.removed) return;
    this.removed = true;
    await rm(this.baseDir, { recursive: true, force: true });
  }

  async readLogTail(lines = 30): Promise<string> {
    try {
      return (await readFile(this.logFile, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log written)';
    }
  }
}

/** initdb a new cluster (not started) listening on its own socket dir only. */
export async function createCluster(opts: CreateClusterOptions = {}): Promise<PgCluster> {
  const initdb = findPgBin('initdb');
  const base = await createBaseDir(opts.dir);
  const cluster = new Cluster(base, await findFreePort());
  try {
    const segArgs = opts.walSegSizeMB === undefined ? [] : [`--wal-segsize=${opts.walSegSizeMB}`];
    await cluster.exec(initdb, [
      '-D', cluster.dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C',
      '--no-sync', '--no-instructions', ...segArgs, ...(opts.initdbArgs ?? []),
    ]);
    await cluster.setConf({ ...DEFAULT_SETTINGS, ...toSocketSettings(cluster), ...opts.conf });
    return cluster;
  } catch (error) {
    await cluster.cleanup();
    throw error;
  }
}

/** pg_basebackup -R from a running primary into a new cluster (not started) that streams from it. */
export async function createStandby(primary: PgCluster, opts: CreateStandbyOptions = {}): Promise<PgCluster> {
  const base = await createBaseDir(opts.dir);
  const standby = new Cluster(base, await findFreePort(), opts.osUser);
  try {
    // primary.exec: PGHOST/PGPORT point at the primary, and -R writes them into primary_conninfo.
    await primary.exec('pg_basebackup', [
      '-D', standby.dataDir, '-X', 'stream', '-R', '-c', 'fast', '--no-sync', ...(opts.basebackupArgs ?? []),
    ]);
    if (opts.osUser !== undefined) await chownToOsUser(base, opts.osUser, { recursive: true });
    await standby.setConf({ ...toSocketSettings(standby), ...opts.conf });
    return standby;
  } catch (error) {
    await standby.cleanup();
    throw error;
  }
}

function toSocketSettings(cluster: PgCluster): PgSettings {
  return { port: cluster.port, listen_addresses: '', unix_socket_directories: cluster.socketDir };
}
