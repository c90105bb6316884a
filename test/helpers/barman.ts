// A real Barman (Debian's 3.4) keeping the WAL archive that walhub serves.
//
// The primary's archive_command drops each file into <barman_home>/<server>/incoming,
// and `barman -c <our barman.conf> archive-wal <server>` moves it into wals/,
// compressed, as `barman cron` does on a Barman node. Each archive_command also
// keeps an untouched copy under shipped/, so tests can compare what walhub
// serves with what PostgreSQL wrote.
//
// Barman wants to run as its barman_user (it drops root privileges to it). We
// name the user running the tests, root in CI: walhub reads the archive as that
// same user, and PostgreSQL (as postgres) only needs to write into incoming/.
import { execFile } from 'node:child_process';
import { access, chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { archivedPath, createServerDir } from './archive.js';
import { chownToPostgres, toShellWord, waitUntil, type PgCluster } from './postgres.js';
import { requireProgram } from './programs.js';

const run = promisify(execFile);

/**
 * gzip: Barman's `compression = gzip` (Barman 3.4 compresses nothing unless told;
 * Debian's barman.conf suggests gzip). zstd: `compression = custom` with the zstd
 * program, as Barman 3.4 documents for formats it does not know itself.
 */
export type BarmanCompression = 'gzip' | 'zstd';

const COMPRESSION_SETTINGS: Record<BarmanCompression, string[]> = {
  gzip: ['compression = gzip'],
  zstd: [
    'compression = custom',
    'custom_compression_filter = zstd -c',
    'custom_decompression_filter = zstd -dc',
    'custom_compression_magic = 0x28b52ffd',
  ],
};

export interface Barman {
  /** The temp dir holding barman.conf, barman.log, home/ and shipped/. */
  readonly dir: string;
  readonly configPath: string;
  /** barman_home: one directory per server; what walhub's `archive` points at. */
  readonly home: string;
  /** Untouched copies of every file the archive_command shipped, by name. */
  readonly shipped: string;
  serverDir(server: string): string;
  /** archive_command for postgresql.conf: ships %p to these servers' incoming/ (and to shipped/). */
  toArchiveCommand(...servers: string[]): string;
  /** `barman -c CONF archive-wal SERVER`; resolves to the names it archived. */
  archiveWal(server: string): Promise<string[]>;
  /** Waits until the cluster has shipped all names, runs archive-wal, and checks they are all in wals/. */
  archive(cluster: PgCluster, server: string, names: readonly string[]): Promise<void>;
  /** `barman -c CONF get-wal SERVER NAME`: the bytes Barman itself would hand out. */
  getWal(server: string, name: string): Promise<Buffer>;
  cleanup(): Promise<void>;
}

/** A barman.conf with one section per server, barman_home in a new temp dir, and the server dirs made. */
export async function createBarman(servers: Record<string, BarmanCompression>): Promise<Barman> {
  const barmanPath = requireProgram('barman', 'barman');
  if (Object.values(servers).includes('zstd')) requireProgram('zstd', 'zstd');
  const dir = await mkdtemp(join(tmpdir(), 'walhub-barman-'));
  const home = join(dir, 'home');
  const shipped = join(dir, 'shipped');
  const configPath = join(dir, 'barman.conf');
  try {
    // postgres must reach incoming/ and shipped/: the path to them is opened up, the rest stays ours.
    await chmod(dir, 0o755);
    await mkdir(home, { mode: 0o755 });
    await mkdir(shipped);
    await chownToPostgres(shipped);
    const sections = Object.entries(servers).map(([server, compression]) => [
      `[${server}]`,
      `description = walhub end-to-end test (${compression})`,
      // archive-wal never connects; Barman only insists that a server has a conninfo.
      'conninfo = host=/nonexistent dbname=postgres',
      'backup_method = postgres',
      'archiver = on',
      ...COMPRESSION_SETTINGS[compression],
      '',
    ]);
    await writeFile(
      configPath,
      [
        '[barman]',
        `barman_user = ${userInfo().username}`,
        `barman_home = ${home}`,
        `log_file = ${join(dir, 'barman.log')}`,
        'log_level = INFO',
        '',
        ...sections.flat(),
      ].join('\n'),
    );
    for (const server of Object.keys(servers)) {
      const serverDir = await createServerDir(home, server);
      await chmod(serverDir, 0o755);
      await chownToPostgres(join(serverDir, 'incoming'));
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  const barman = (args: string[]) =>
    run(barmanPath, ['-c', configPath, ...args], { encoding: 'buffer', maxBuffer: 64 << 20, timeout: 60_000 });

  const self: Barman = {
    dir,
    configPath,
    home,
    shipped,
    serverDir: (server) => join(home, server),
    toArchiveCommand(...targets) {
      // Copy to a dot file, then rename: Barman's archiver lists incoming/* (no dot
      // files), so it never takes a half-written segment. shipped/ comes last, so a
      // file there means every incoming/ has it.
      const ship = (to: string) => `cp %p ${toShellWord(to)}/.%f.tmp && mv ${toShellWord(to)}/.%f.tmp ${toShellWord(to)}/%f`;
      return [...targets.map((s) => ship(join(home, s, 'incoming'))), ship(shipped)].join(' && ');
    },
    async archiveWal(server) {
      const { stdout } = await barman(['archive-wal', server]);
      // Barman prints a header, then one tab-indented line per file it archived.
      return stdout
        .toString('utf8')
        .split('\n')
        .filter((l) => l.startsWith('\t') && !l.includes(' '))
        .map((l) => l.trim());
    },
    async archive(cluster, server, names) {
      try {
        await waitUntil(`${names.join(', ')} shipped by archive_command`, async () => {
          const present = new Set(await readdir(shipped));
          return names.every((n) => present.has(n));
        }, { timeoutMs: 60_000 });
      } catch (error) {
        const stats = await cluster.psql('select * from pg_stat_archiver').catch((e: unknown) => String(e));
        throw new Error(`archiving stalled; pg_stat_archiver: ${stats}\n${await cluster.readLogTail()}`, { cause: error });
      }
      await self.archiveWal(server);
      for (const name of names) {
        const path = archivedPath(self.serverDir(server), name);
        await access(path).catch(async () => {
          const errors = await readdir(join(self.serverDir(server), 'errors'));
          throw new Error(`barman archive-wal ${server} did not archive ${name} (errors/: ${errors.join(' ') || 'empty'})`);
        });
      }
    },
    async getWal(server, name) {
      return (await barman(['get-wal', server, name])).stdout;
    },
    async cleanup() {
      await rm(dir, { recursive: true, force: true });
    },
  };
  return self;
}
