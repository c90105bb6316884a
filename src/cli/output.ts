/**
 * stdout for commands that may print a lot: lines are batched, and a closed
 * pipe (`walhub audit | head -1`) ends the command quietly instead of with an
 * EPIPE stack. Producers check `closed` and stop reading.
 */
export interface Output {
  line(text: string): void;
  flush(): Promise<void>;
  /** Enough is batched: the caller should `await flush()` before producing more. */
  readonly full: boolean;
  readonly closed: boolean;
}

const BATCH = 64 * 1024;

export function createOutput(stream: NodeJS.WriteStream = process.stdout): Output {
  let pending = '';
  let closed = false;
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE' || error.code === 'ERR_STREAM_DESTROYED') closed = true;
    else throw error;
  });
  const write = async () => {
    if (closed || pending === '') return;
    const chunk = pending;
    pending = '';
    // Waiting for 'drain' keeps memory flat when the reader is slower than we are.
    if (!stream.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          stream.off('drain', done);
          stream.off('error', done);
          resolve();
        };
        stream.on('drain', done);
        stream.on('error', done);
      });
    }
  };
  return {
    line(text: string) {
      if (closed) return;
      pending += `${text}\n`;
    },
    async flush() {
      await write();
    },
    get full() {
      return pending.length >= BATCH;
    },
    get closed() {
      return closed;
    },
  };
}

