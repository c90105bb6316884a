import { open, stat, type FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';

const POLL_MS = 200;

/**
 * Like `tail -F`: prints lines appended to `path` from `offset` on, and when
 * logrotate moves the file away (another inode under the name) reads the old
 * file to its end, then the new one from its start. A file cut short in place
 * (copytruncate) is read again from its start. Runs until `signal` aborts.
 */
export async function followAuditFile(
  path: string,
  offset: number,
  onLine: (line: string) => void,
  signal: AbortSignal,
  afterRead?: () => Promise<void>,
): Promise<void> {
  let file: FileHandle | undefined;
  let inode = -1;
  let position = offset;
  let decoder = new StringDecoder('utf8');
  let carry = '';
  const buffer = Buffer.alloc(1 << 20);

  const readToEnd = async () => {
    if (!file) return;
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) return;
      position += bytesRead;
      const text = carry + decoder.write(buffer.subarray(0, bytesRead));
      const lines = text.split('\n');
      carry = lines.pop()!;
      for (const line of lines) if (line !== '') onLine(line);
      await afterRead?.();
    }
  };
  const openCurrent = async (from: number) => {
    try {
      const next = await open(path, 'r');
      inode = (await next.stat()).ino;
      file = next;
      position = from;
      decoder = new StringDecoder('utf8');
      carry = '';
    } catch (error) {
      // Between logrotate's rename and walhub's reopen the name may be missing.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  };

  await openCurrent(offset);
  try {
    while (!signal.aborted) {
      await readToEnd();
      const current = await stat(path).catch(() => undefined);
      if (file && current && current.ino !== inode) {
        await readToEnd();
        await file.close();
        file = undefined;
        await openCurrent(0);
        continue;
      }
      if (!file && current) {
        await openCurrent(0);
        continue;
      }
      if (file && current && current.size < position) position = 0;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, POLL_MS);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    }
  } finally {
    await file?.close();
  }
}
