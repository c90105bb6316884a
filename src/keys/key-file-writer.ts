import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { WalhubError } from '../errors.js';

const LOCK_WAIT_MS = 10_000;
/** A lock older than this whose holder cannot be asked is taken over: `keys add` takes milliseconds. */
const STALE_LOCK_MS = 60_000;
const FRESH_LOCK_MS = 2_000;

/**
 * Rewrites authorized_keys as `edit` says, atomically: a temporary file in the
 * same directory with the same mode and owner, fsync, rename over the old one,
 * fsync of the directory. A running server (which watches the directory) sees
 * either the old file or the new one, never half of it. Writers take
 * `<file>.lock` first, so two `walhub keys add` at once both land.
 * Returns the text written.
 */
export async function updateKeyFile(path: string, edit: (text: string) => string): Promise<string> {
  // Before the first `walhub serve` made it: the same mode serve gives it.
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const release = await takeLock(`${path}.lock`);
  try {
    let text = '';
    let mode = 0o600;
    let owner: { uid: number; gid: number } | undefined;
    try {
      text = await readFile(path, 'utf8');
      const info = await stat(path);
      mode = info.mode & 0o7777;
      owner = { uid: info.uid, gid: info.gid };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const next = edit(text);
    // A dot name the server's watcher ignores until the rename.
    const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    const file = await open(temporary, 'wx', mode);
    try {
      await file.chmod(mode);
      if (owner && (owner.uid !== process.getuid?.() || owner.gid !== process.getgid?.())) await file.chown(owner.uid, owner.gid);
      await file.writeFile(next, 'utf8');
      await file.sync();
      await file.close();
      await rename(temporary, path);
    } catch (error) {
      await file.close().catch(() => undefined);
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    const directory = await open(dirname(path), 'r');
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
    return next;
  } finally {
    await release();
  }
}

async function takeLock(lockPath: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await writeFile(lockPath, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return () => unlink(lockPath).catch(() => undefined);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const seen = await stat(lockPath).catch(() => undefined);
    if (seen && (await isStale(lockPath))) {
      // Only the lock we judged: a different inode is a new holder's.
      const now = await stat(lockPath).catch(() => undefined);
      if (now?.ino === seen.ino) await unlink(lockPath).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) {
      throw new WalhubError('UNAVAILABLE', `${lockPath} is held by another walhub keys command; remove it if none is running`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
  }
}

/**
 * The holder is gone (its pid no longer runs) and the lock is not brand new,
 * or the lock is older than any edit takes. "Not brand new" matters: a lock
 * read just before its holder finished may already be another writer's new
 * lock by the time we would remove it.
 */
async function isStale(lockPath: string): Promise<boolean> {
  try {
    const [text, info] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath)]);
    const age = Date.now() - info.mtimeMs;
    if (age > STALE_LOCK_MS) return true;
    const pid = Number(text.trim());
    if (age < FRESH_LOCK_MS || !Number.isInteger(pid) || pid <= 0) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'ESRCH';
    }
  } catch {
    // Gone between our attempt and this look: try again at once.
    return false;
  }
}
