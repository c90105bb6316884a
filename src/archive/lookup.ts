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
 * server directory is never opened, not even to be refused; and the opened
 * file is checked again, since a directory can be swapped for a symlink
 * between the two. A path leading out is refused loudly (exit 5), never
 * taken for a missing file: in recovery "not found" means "end of archive".
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
      // O_NONBLOCK: a FIFO planted in the archive must not hang the request.
      handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (error) {
      if (isMissing(error) || (error as NodeJS.ErrnoException).code === 'ELOOP') continue;
      throw toArchiveReadError(error);
    }
    let info: Stats;
    try {
      // Where the kernel says the opened file is: a directory swapped for a
      // symlink after realpath shows up here as a path outside the root.
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
