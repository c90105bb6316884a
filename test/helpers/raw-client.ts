// ssh2's own client, for what the OpenSSH client will not do: stop reading TCP,
// grant a 4 GiB window, open a session and never exec.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import ssh2 from 'ssh2';
import type { ClientKey, SshTarget } from './ssh-client.js';

/** A logged-in ssh2 client; `end()` it when done. */
export async function connectRaw(target: SshTarget, key: ClientKey, localAddress = '127.0.0.1'): Promise<ssh2.Client> {
  const client = new ssh2.Client();
  const privateKey = await readFile(key.privatePath);
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve()).once('error', reject);
    client.connect({ host: '127.0.0.1', port: target.port, localAddress, username: 'walhub', privateKey, readyTimeout: 20_000 });
  });
  // Errors after login (walhub closing a stalled connection) are what these tests provoke.
  client.on('error', () => undefined);
  return client;
}

/**
 * Starts a command and hands back its channel. Whoever awaits this listens
 * only after a microtask, while ssh2 parses a whole TCP read at once: an
 * answer that came in the same read as the exec reply has already been
 * emitted. To wait for the exit status, use runRaw.
 */
export function execRaw(client: ssh2.Client, command: string): Promise<ssh2.ClientChannel> {
  return new Promise((resolve, reject) => client.exec(command, (error, channel) => (error ? reject(error) : resolve(channel))));
}

/** A get-wal through ssh2's client, hashed as it arrives; `onData` sees the byte count after each chunk. */
export interface HashedFetch {
  readonly channel: ssh2.ClientChannel;
  received(): number;
  /** Resolves when the channel closes: exit status, bytes and their sha256. */
  readonly done: Promise<{ status: number | undefined; bytes: number; sha256: string }>;
}

export async function fetchHashed(
  client: ssh2.Client,
  command: string,
  onData?: (received: number, channel: ssh2.ClientChannel) => void,
): Promise<HashedFetch> {
  const channel = await execRaw(client, command);
  const hash = createHash('sha256');
  let received = 0;
  let status: number | undefined;
  channel.on('exit', (code: number) => (status = code));
  channel.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    received += chunk.length;
    onData?.(received, channel);
  });
  const done = new Promise<{ status: number | undefined; bytes: number; sha256: string }>((resolve) =>
    channel.on('close', () => resolve({ status, bytes: received, sha256: hash.digest('hex') })),
  );
  return { channel, received: () => received, done };
}

export interface RawResult {
  readonly status: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** Runs a command to its end, listening from the exec callback on, before ssh2 parses the rest of the read. */
export function runRaw(client: ssh2.Client, command: string): Promise<RawResult> {
  return new Promise((resolve, reject) =>
    client.exec(command, (error, channel) => {
      if (error) return reject(error);
      const stdout: Buffer[] = [];
      let stderr = '';
      let status: number | null = null;
      channel.on('data', (d: Buffer) => stdout.push(d));
      channel.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      channel.on('exit', (code: number | null) => (status = code));
      channel.on('close', () => resolve({ status, stdout: Buffer.concat(stdout), stderr }));
    }),
  );
}

/**
 * The window-adjust bomb: lets walhub send ~4 GiB on this channel without
 * waiting. Sent through ssh2's protocol object (internal, ssh2 1.17): the
 * public API only adjusts the window as the stream is read.
 */
export function grantHugeWindow(client: ssh2.Client, channel: ssh2.ClientChannel): void {
  const internals = client as unknown as { _protocol: { channelWindowAdjust(id: number, amount: number): void } };
  const remoteId = (channel as unknown as { outgoing: { id: number } }).outgoing.id;
  internals._protocol.channelWindowAdjust(remoteId, 0xffffffff - 2 * 1024 * 1024);
}

/** Stops reading TCP altogether: the kernel buffers fill and walhub's writes queue up. */
export function stopReading(client: ssh2.Client): void {
  (client as unknown as { _sock: { pause(): void } })._sock.pause();
}

/** Reads TCP again after stopReading. */
export function resumeReading(client: ssh2.Client): void {
  (client as unknown as { _sock: { resume(): void } })._sock.resume();
}

/**
 * Opens a session channel and sends nothing on it (no exec, no shell): ssh2's
 * public API always follows the open with a request, so this goes through its
 * channel manager and protocol object (internal, ssh2 1.17 client.js openChannel).
 */
export function openBareSession(client: ssh2.Client): Promise<ssh2.ClientChannel> {
  const internals = client as unknown as {
    _chanMgr: { add(callback: unknown): number };
    _protocol: { session(localChannel: number, window: number, packetSize: number): void };
  };
  return new Promise((resolve, reject) => {
    // Read (and drop) whatever comes, so that the channel emits 'close' when walhub closes it.
    const opened = Object.assign((error: Error | undefined, channel: ssh2.ClientChannel) => (error ? reject(error) : resolve(channel.resume())), {
      type: 'session',
    });
    const local = internals._chanMgr.add(opened);
    internals._protocol.session(local, 2 * 1024 * 1024, 32 * 1024);
  });
}

/**
 * Starts a key re-exchange and stops reading TCP, so that it never ends:
 * ssh2 queues every packet walhub sends meanwhile in memory (internal, ssh2 1.17 Protocol.rekey).
 */
export function startEndlessRekey(client: ssh2.Client): void {
  (client as unknown as { _protocol: { rekey(): void } })._protocol.rekey();
  stopReading(client);
}

/** Whether `emitter` (a client or a channel) emits 'close' within `ms`. */
export function closedWithin(emitter: NodeJS.EventEmitter, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    emitter.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
