import type { BigIntStats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/**
 * Which file, in which state, some decoded bytes came from: where the lookup
 * found it (Barman moves a file from incoming/ to wals/), the inode, and its
 * size and times to the nanosecond. Equal identities mean the bytes on disk
 * are the ones that were decoded, short of a rewrite that restores all of
 * size, mtime and ctime, which only a privileged clock change can do.
 */
export interface FileIdentity {
  readonly relative: string;
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

export function toFileIdentity(relative: string, stats: BigIntStats): FileIdentity {
  return { relative, dev: stats.dev, ino: stats.ino, size: stats.size, mtimeNs: stats.mtimeNs, ctimeNs: stats.ctimeNs };
}

/** fstat of the open file, not a path lookup: what was read, not what a name points to now. */
export async function readFileIdentity(handle: FileHandle, relative: string): Promise<FileIdentity> {
  return toFileIdentity(relative, await handle.stat({ bigint: true }));
}

export function isSameFile(a: FileIdentity, b: FileIdentity): boolean {
  return (
    a.relative === b.relative && a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs
  );
}
