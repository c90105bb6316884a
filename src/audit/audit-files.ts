import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';

export interface AuditFile {
  readonly path: string;
  /** Last write: no line in the file is newer. */
  readonly mtimeMs: number;
}

/**
 * The audit log and its rotated siblings, oldest first: logrotate's numbered
 * names (`audit.log.2.gz`, `audit.log.1`) count down to the live file;
 * dateext names (`audit.log-20261130.gz`) sort by date.
 */
export async function listAuditFiles(path: string): Promise<AuditFile[]> {
  const dir = dirname(path);
  const name = basename(path);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const numbered: [number, string][] = [];
  const dated: [string, string][] = [];
  for (const candidate of names) {
    if (!candidate.startsWith(name) || candidate === name) continue;
    const rest = candidate.slice(name.length);
    const number = /^\.(\d{1,6})(?:\.gz)?$/.exec(rest);
    const date = /^-(\d{8,14})(?:\.gz)?$/.exec(rest);
    if (number) numbered.push([Number(number[1]), candidate]);
    else if (date) dated.push([date[1]!, candidate]);
  }
  const ordered = [
    ...dated.sort((a, b) => a[0].localeCompare(b[0])).map(([, n]) => n),
    ...numbered.sort((a, b) => b[0] - a[0]).map(([, n]) => n),
    name,
  ];
  const files: AuditFile[] = [];
  for (const entry of ordered) {
    const full = join(dir, entry);
    try {
      const info = await stat(full);
      if (info.isFile()) files.push({ path: full, mtimeMs: info.mtimeMs });
    } catch {
      // rotated away between readdir and stat: its lines are in the next name
    }
  }
  return files;
}

/**
 * Calls `onLine` for each line of each file, streaming (a 1 GiB log is read in
 * 1 MiB pieces, never held). `onLine` returning false stops the reading.
 */
export async function readAuditLines(
  files: readonly string[],
  onLine: (line: string, file: string, lineNumber: number) => boolean | void,
  afterChunk?: () => Promise<void> | void,
): Promise<void> {
  for (const file of files) {
    const raw = createReadStream(file, { highWaterMark: 1 << 20 });
    const source = file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
    const decoder = new StringDecoder('utf8');
    let carry = '';
    let lineNumber = 0;
    let stopped = false;
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        const text = carry + decoder.write(chunk);
        let start = 0;
        for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
          lineNumber++;
          if (end > start && onLine(text.slice(start, end), file, lineNumber) === false) {
            stopped = true;
            break;
          }
          start = end + 1;
        }
        if (stopped) break;
        carry = text.slice(start);
        await afterChunk?.();
      }
      const last = carry + decoder.end();
      // A last line without its newline: a writer killed mid-line, still worth reading.
      if (!stopped && last !== '' && onLine(last, file, lineNumber + 1) === false) stopped = true;
    } finally {
      raw.destroy();
      if (source !== raw) source.destroy();
    }
    if (stopped) return;
  }
}
