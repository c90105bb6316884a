import { execFile, spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { requireProgram } from './programs.js';

export interface FifoWitness {
  readonly path: string;
  /** True once somebody opened the FIFO for reading. */
  opened(): boolean;
  /** Opens the FIFO for reading, as walhub would have: after this, opened() must be true, or the witness proves nothing. */
  openItOnce(): Promise<void>;
  stop(): void;
}

/**
 * A FIFO with a writer blocked on it: the writer goes on only if somebody
 * opens the FIFO for reading. Placed where nothing may ever be opened, it
 * witnesses that nothing was.
 */
export async function startFifoWitness(path: string): Promise<FifoWitness> {
  await promisify(execFile)(requireProgram('mkfifo', 'coreutils'), [path]);
  let opened = false;
  const writer = spawn('/bin/sh', ['-c', 'echo opened > "$1"', 'sh', path], { stdio: 'ignore' });
  writer.on('exit', () => (opened = true));
  return {
    path,
    opened: () => opened,
    async openItOnce() {
      const reader = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
      await new Promise((r) => setTimeout(r, 500));
      await reader.close();
    },
    stop: () => writer.kill('SIGKILL'),
  };
}
