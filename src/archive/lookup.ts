import { constants, type Stats } from 'node:fs';
import { open, opendir, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { WalhubError } from '../errors.js';
import { toHashDir, type WalName } from './wal-name.js';

export interface FoundFile {
  /** Relative to the server directory, for logs: `wals/0000000100000000/...`. */
  readonly relative: string;
  readonly handle: FileHandle;
  readonly size: number;
}

/**
 * Barman's lookup order (barman/server.py get_wal_until_next_backup and
 * get-wal): archived, then incoming, then streaming; .partial files only when
 * asked; and wals/ once more, since the archiver may have moved the file
 * between our looks.
 */
export function listCandidates(wal: WalName, partial: boolean): string[] {
  const name = wal.name;
  const archived = wal.kind === 'history' ? join('wals', name) : join('wals', toHashDir(wal)!, name);
  const candidates = [archived, join('incoming', name), join('streaming', name)];
  if (partial && wal.kind === 'segment') {
    candidates.push(
      join('streaming', `${name}.partial`),
      join('wals', toHashDir(wal)!, `${name}.partial`),
      join('incoming', `${name}.partial`),
    );
  }
  candidates.push(archived);
  return candidates;
}

/**
 * The first candidate that is a regular file inside the server directory.
 * A path is resolved before it is opened, so a symlink that leads out of the
 * server directory is never opened, not even to be refused. The resolved
 * path is then opened one name at a time from the server directory,
 * following no symlink, so a directory swapped for a symlink in between is
 * refused rather than followed; and where the opened file is gets checked
 * once more. A path leading out is refused loudly (exit 5), never taken for
 * a missing file: in recovery "not found" means "end of archive".
 */
export async function findWalFile(serverDir: string, wal: WalName, partial: boolean): Promise<FoundFile | undefined> {
  const root = await realpath(serverDir);
  for (const relative of listCandidates(wal, partial)) {
    let real: string;
    try {
      real = await realpath(join(root, relative));
    } catch (error) {
      if (isMissing(error)) continue;
      throw toArchiveReadError(error);
    }
    if (!isInside(root, real)) throw escapeError(await findEscapingPrefix(root, relative));
    let handle: FileHandle;
    try {
      handle = await openBelow(root, real.slice(root.length + 1));
    } catch (error) {
      if (isMissing(error)) continue;
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ELOOP' && code !== 'ENOTDIR') throw toArchiveReadError(error);
      // A name turned into a symlink since realpath: someone is changing the layout under us.
      const now = await realpath(join(root, relative)).catch(() => undefined);
      if (now !== undefined && !isInside(root, now)) throw escapeError(await findEscapingPrefix(root, relative));
      throw new WalhubError('UNAVAILABLE', `archive path ${relative} changed while it was being opened; retry`, { cause: error });
    }
    let info: Stats;
    try {
      // Where the kernel says the opened file is now (a directory moved out meanwhile shows here).
      if (!isInside(root, await readlink(`/proc/self/fd/${handle.fd}`))) throw escapeError(await findEscapingPrefix(root, relative));
      info = await handle.stat();
    } catch (error) {
      await handle.close();
      throw error instanceof WalhubError ? error : toArchiveReadError(error);
    }
    if (!info.isFile()) {
      await handle.close();
      continue;
    }
    return { relative, handle, size: info.size };
  }
  return undefined;
}

/**
 * Opens `path` (relative, no symlinks in it when resolved) below `root` one
 * name at a time, as openat(2) with O_NOFOLLOW would: each name is looked up
 * in the directory opened before it, through /proc/self/fd (Node has no
 * openat), so nothing outside `root` can be reached, whatever changes meanwhile.
 */
async function openBelow(root: string, path: string): Promise<FileHandle> {
  let current = await open(root, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    const names = path.split(sep);
    for (const [index, name] of names.entries()) {
      // O_NONBLOCK on the file: a FIFO planted in the archive must not hang the request.
      const kind = index === names.length - 1 ? constants.O_NONBLOCK : constants.O_DIRECTORY;
      const next = await open(`/proc/self/fd/${current.fd}/${name}`, constants.O_RDONLY | constants.O_NOFOLLOW | kind);
      await current.close();
      current = next;
    }
    return current;
  } catch (error) {
    await current.close();
    throw error;
  }
}

function isInside(root: string, path: string): boolean {
  return path.startsWith(root + sep);
}

function escapeError(relative: string): WalhubError {
  return new WalhubError('UNAVAILABLE', `archive path ${relative} leads outside the server directory; refusing it`);
}

/** The shortest part of `relative` that resolves outside `root`: the symlink an administrator has to look at. */
async function findEscapingPrefix(root: string, relative: string): Promise<string> {
  const parts = relative.split(sep);
  for (let length = 1; length <= parts.length; length++) {
    const prefix = parts.slice(0, length).join(sep);
    const real = await realpath(join(root, prefix)).catch(() => undefined);
    if (real !== undefined && !isInside(root, real)) return prefix;
  }
  return relative;
}

/** Entries looked at, at most, per server directory: a check, not a crawl. */
const MAX_ENTRIES_CHECKED = 100_000;

/**
 * Symlinks in a server directory that lead outside it, relative to it:
 * wals/, incoming/ and streaming/ themselves and what they hold directly
 * (the hash directories of wals/, the files of the others). Requests through
 * any of them are refused, so `walhub check` names them. Bounded in count.
 */
export async function findEscapingLinks(serverDir: string): Promise<string[]> {
  const root = await realpath(serverDir).catch(() => undefined);
  if (root === undefined) return [];
  const escaping: string[] = [];
  let checked = 0;
  const leadsOut = async (relative: string) => {
    const real = await realpath(join(root, relative)).catch(() => undefined);
    return real !== undefined && !isInside(root, real);
  };
  for (const top of ['wals', 'incoming', 'streaming']) {
    if (await leadsOut(top)) {
      escaping.push(top);
      continue;
    }
    let dir;
    try {
      dir = await opendir(join(root, top));
    } catch {
      continue;
    }
    for await (const entry of dir) {
      // Leaving the loop closes the directory.
      if (++checked > MAX_ENTRIES_CHECKED) return escaping;
      if (entry.isSymbolicLink() && (await leadsOut(join(top, entry.name)))) escaping.push(join(top, entry.name));
    }
  }
  return escaping;
}

export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** An I/O failure reading the archive: temporary as far as the client can tell. */
export function toArchiveReadError(error: unknown): WalhubError {
  const code = (error as NodeJS.ErrnoException).code ?? 'error';
  return new WalhubError('UNAVAILABLE', `archive read error (${code})`, { cause: error });
}
