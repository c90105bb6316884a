import { constants, type Stats } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
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
 * server directory is never opened, not even to be refused.
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
    if (!real.startsWith(root + sep)) continue;
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
      info = await handle.stat();
    } catch (error) {
      await handle.close();
      throw toArchiveReadError(error);
    }
    if (!info.isFile()) {
      await handle.close();
      continue;
    }
    return { relative, handle, size: info.size };
  }
  return undefined;
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
