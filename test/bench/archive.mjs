// The WAL both benchmarks serve, made by a real PostgreSQL 15: a base backup
// (pg_basebackup -X none) and the archived segments written after it, kept
// three ways: plain (the local copy), zstd in Barman's layout (what walhub and
// Barman serve), and zstd flat (a local `zstd -dc` for reference).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { appendFile, chmod, chown, link, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { findFreePort, findProgram, makeDir, pgUser, run, waitUntil } from './lib.mjs';

const SEGMENT_SIZE = 16 * 1024 * 1024;
const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;

/** The PostgreSQL programs needed, or the reason they are missing. */
export function findPostgres() {
  const names = ['initdb', 'pg_ctl', 'psql', 'pg_basebackup'];
  const bins = Object.fromEntries(names.map((n) => [n, findProgram(n)]));
  const missing = names.filter((n) => !bins[n]);
  if (missing.length > 0) return { missing: `${missing.join(', ')} not found: install postgresql-15 and postgresql-client-15` };
  if (process.getuid?.() === 0 && !pgUser) return { missing: 'running as root without a postgres user: install postgresql-15' };
  return { bins };
}

/** A 16 MiB segment's number within its timeline (256 per log file). */
export const segno = (name) => {
  const m = SEGMENT.exec(name);
  return parseInt(m[2], 16) * 256 + parseInt(m[3], 16);
};

/** postgresql.conf lines; strings single-quoted. */
export function toConf(settings) {
  return (
    Object.entries(settings)
      .map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${String(v).replaceAll("'", "''")}'`}`)
      .join('\n') + '\n'
  );
}

/** A cluster's own settings: its socket dir only (no TCP), fast and quiet. */
export function clusterConf(socketDir, port) {
  return { port, listen_addresses: '', unix_socket_directories: socketDir, fsync: 'off', max_connections: 20, shared_buffers: '128MB' };
}

/**
 * Runs a primary that archives to plain/, takes a base backup, writes at least
 * `segments` segments of WAL after it, and stops. Returns the layout.
 */
export async function buildArchive(dir, { bins, segments: wanted }) {
  const as = pgUser;
  const owner = pgUser;
  const work = await makeDir(join(dir, 'primary'), { owner, mode: 0o700 });
  const plain = await makeDir(join(dir, 'plain'), { owner, mode: 0o755 });
  const data = join(work, 'data');
  const port = await findFreePort();
  await run(bins.initdb, ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'], { as });
  await appendFile(
    join(data, 'postgresql.conf'),
    toConf({
      ...clusterConf(work, port),
      wal_level: 'replica',
      archive_mode: 'on',
      // copy then rename: the archive never holds a half-written segment
      archive_command: `cp %p ${plain}/%f.tmp && mv ${plain}/%f.tmp ${plain}/%f`,
      max_wal_size: '2GB',
      checkpoint_timeout: '1h',
    }),
  );
  const env = { PGHOST: work, PGPORT: String(port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
  const psql = async (sql) => (await run(bins.psql, ['-X', '-At', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql], { as, env })).stdout.trim();
  const pgCtl = (...args) => run(bins.pg_ctl, ['-D', data, '-s', ...args], { as, env, timeoutMs: 120_000 });
  await pgCtl('start', '-w', '-t', '60', '-l', join(work, 'postgres.log'));
  try {
    await psql('create table orders (id bigint primary key, customer int, amount numeric, note text, at timestamptz)');
    const base = await makeDir(join(dir, 'base'), { owner, mode: 0o700 });
    await run(bins.pg_basebackup, ['-D', base, '-X', 'none', '-c', 'fast', '--no-sync'], { as, env });
    const label = await readFile(join(base, 'backup_label'), 'utf8');
    const first = /START WAL LOCATION: .* \(file ([0-9A-F]{24})\)/.exec(label)[1];

    // OLTP-like WAL: inserts with an index, then updates of rows written
    // earlier (full-page images after each checkpoint), in 20k-row batches.
    let id = 0;
    let current = first;
    for (let batch = 0; segno(current) < segno(first) + wanted - 1; batch++) {
      await psql(
        `insert into orders select g, (random() * 100000)::int, round((random() * 1000)::numeric, 2), md5(random()::text) || ' ' || md5(g::text), now() from generate_series(${id + 1}, ${id + 20000}) g;` +
          `update orders set amount = amount + 1, at = now() where id % 97 = ${batch % 97};` +
          (batch % 10 === 9 ? 'checkpoint;' : ''),
      );
      id += 20000;
      current = await psql('select pg_walfile_name(pg_current_wal_lsn())');
    }
    const last = await psql('select pg_walfile_name(pg_switch_wal())');
    const names = [];
    for (let s = segno(first); s <= segno(last); s++) {
      names.push(first.slice(0, 8) + Math.floor(s / 256).toString(16).toUpperCase().padStart(8, '0') + (s % 256).toString(16).toUpperCase().padStart(8, '0'));
    }
    await waitUntil(`${names.length} segments in ${plain}`, async () => {
      const present = new Set(await readdir(plain));
      return names.every((n) => present.has(n));
    }, { timeoutMs: 120_000, intervalMs: 100 });
    return { base, plain, names, rows: id };
  } finally {
    await pgCtl('stop', '-m', 'fast', '-w').catch(() => pgCtl('stop', '-m', 'immediate'));
  }
}

/**
 * Compresses every segment with the zstd program (level 3, as Barman's
 * `custom_compression_filter = zstd -c` would) into zstd/, and hard-links each
 * into Barman's layout: <barmanHome>/pg1/wals/<first 16 chars>/<name>.
 * Returns { barmanHome, serverDir, zstd, sizes }.
 */
export async function compressArchive(dir, plain, names, barmanOwner) {
  const zstd = await makeDir(join(dir, 'zstd'));
  const barmanHome = await makeDir(join(dir, 'barman_home'), { owner: barmanOwner });
  const serverDir = join(barmanHome, 'pg1');
  for (const sub of ['wals', 'incoming', 'streaming', 'errors']) await makeDir(join(serverDir, sub), { owner: barmanOwner });
  let compressed = 0;
  const queue = [...names];
  const worker = async () => {
    for (let name = queue.shift(); name; name = queue.shift()) {
      const out = join(zstd, name);
      await run('zstd', ['-q', '-3', '-f', join(plain, name), '-o', out]);
      const hashDir = await makeDir(join(serverDir, 'wals', name.slice(0, 16)), { owner: barmanOwner });
      await chmod(out, 0o644); // zstd copies the source's mode, and PostgreSQL's archive is 0600
      await link(out, join(hashDir, name));
      if (barmanOwner) await chown(out, barmanOwner.uid, barmanOwner.gid);
      compressed += (await stat(out)).size;
    }
  };
  await Promise.all([worker(), worker()]);
  return { barmanHome, serverDir, zstd, compressedBytes: compressed, plainBytes: names.length * SEGMENT_SIZE };
}

/**
 * The uncompressed segments in Barman's layout too (hard links into plain/), so
 * walhub's transport can be measured apart from zstd decoding. Returns the server dir.
 */
export async function linkPlainLayout(dir, plain, names) {
  const serverDir = join(dir, 'plain_home', 'pg1plain');
  for (const name of names) {
    const hashDir = await makeDir(join(serverDir, 'wals', name.slice(0, 16)));
    await link(join(plain, name), join(hashDir, name));
  }
  return serverDir;
}

export function sha256File(path) {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (c) => hash.update(c))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** PostgreSQL's server version, e.g. "15.13". */
export async function postgresVersion(bins) {
  const { stdout } = await run(bins.pg_ctl, ['--version']);
  return stdout.trim().replace(/^pg_ctl \(PostgreSQL\) /, '');
}

export { SEGMENT_SIZE };
