import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClientKey, type ClientKey, type SshTarget } from './ssh-client.js';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface HubOptions {
  /** authorized_keys lines: a key with its options, e.g. `servers="pg1"`. */
  readonly keys?: readonly { key: ClientKey; options: string }[];
  /** Use this archive root instead of an empty one under the hub's directory. */
  readonly archive?: string;
  /** Extra TOML appended to the generated config ([servers.x], [limits]). */
  readonly extraToml?: string;
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Run in this directory (created if missing) instead of a new temp dir; stop()
   * then leaves it in place, so a second startHub({ dir, port }) comes back with
   * the same host key (known_hosts stays valid) and audit log. The caller removes it.
   */
  readonly dir?: string;
  /** Listen on this loopback port instead of port 0: only to come back on the port a stopped hub had. */
  readonly port?: number;
  /** Called with each program log line as it comes, before startHub returns: to act during start-up. */
  readonly onLog?: (line: Record<string, unknown>, process: ChildProcess) => void;
}

export interface Hub extends SshTarget {
  readonly dir: string;
  readonly configPath: string;
  readonly archive: string;
  readonly authorizedKeys: string;
  readonly auditLog: string;
  readonly process: ChildProcess;
  /** Program log lines (JSON) seen so far. */
  readonly logLines: Record<string, unknown>[];
  /** What the program has written to stderr so far. */
  stderr(): string;
  /** Bytes the program has written to its log (stdout) so far. */
  logBytes(): number;
  /** Audit records written so far (waits briefly for the asynchronous writer). */
  audit(): Promise<Record<string, unknown>[]>;
  writeKeys(lines: readonly { key: ClientKey; options: string }[]): Promise<void>;
  /**
   * writeKeys, then the reload that read them: a login before it may meet the old set. The count awaited is lines.length
   * (distinct, valid keys), from a line logged after the write: the load at start (0 keys) or an earlier one may match it.
   */
  loadKeys(lines: readonly { key: ClientKey; options: string }[]): Promise<void>;
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<number | null>;
}

export function keyLine(key: ClientKey, options: string): string {
  return `${options} ${key.publicLine}`;
}

/** The real server, `walhub serve`, as a child process on a free loopback port (port 0, read back). */
export async function startHub(options: HubOptions = {}): Promise<Hub> {
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'walhub-hub-')));
  await mkdir(dir, { recursive: true });
  const archive = options.archive ?? join(dir, 'archive');
  await mkdir(archive, { recursive: true });
  const authorizedKeys = join(dir, 'authorized_keys');
  const auditLog = join(dir, 'audit.log');
  const configPath = join(dir, 'walhub.toml');
  await writeFile(
    configPath,
    [
      `listen = ["127.0.0.1:${options.port ?? 0}"]`,
      'user = "walhub"',
      'host_keys = ["ssh_host_ed25519_key"]',
      'authorized_keys = "authorized_keys"',
      `archive = ${JSON.stringify(archive)}`,
      'audit_log = "audit.log"',
      options.extraToml ?? '',
    ].join('\n'),
  );
  const writeKeys = (lines: readonly { key: ClientKey; options: string }[]) =>
    writeFile(authorizedKeys, lines.map((l) => `${keyLine(l.key, l.options)}\n`).join(''), { mode: 0o600 });
  await writeKeys(options.keys ?? []);

  const child = spawn(process.execPath, [CLI, 'serve', '--config', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  const logLines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  let buffered = '';
  let logBytes = 0;
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    logBytes += Buffer.byteLength(text);
    buffered += text;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      try {
        logLines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logLines.push({ msg: line });
      }
      options.onLog?.(logLines.at(-1)!, child);
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

  const waitForLog = (predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 15_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const hit = logLines.find(predicate);
        if (hit) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`walhub did not log what was awaited in ${timeoutMs} ms; stderr: ${stderr}`));
      }, timeoutMs);
      waiters.add(check);
      void exited.then(() => {
        if (!waiters.has(check)) return;
        waiters.delete(check);
        clearTimeout(timer);
        reject(new Error(`walhub exited: ${stderr}`));
      });
      check();
    });

  let listening: Record<string, unknown>;
  let knownHostsLine: string;
  try {
    listening = await waitForLog((l) => l.msg === 'listening');
    knownHostsLine = (await waitForLog((l) => typeof l.known_hosts === 'string')).known_hosts as string;
  } catch (error) {
    // Never came up: no caller gets a Hub to stop, so nothing may be left behind.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    if (ownsDir) await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const knownHosts = join(dir, 'known_hosts');
  await writeFile(knownHosts, `${knownHostsLine}\n`);

  return {
    dir,
    configPath,
    archive,
    authorizedKeys,
    auditLog,
    process: child,
    port: listening.port as number,
    knownHosts,
    logLines,
    stderr: () => stderr,
    logBytes: () => logBytes,
    writeKeys,
    async loadKeys(lines) {
      const from = logLines.length;
      await writeKeys(lines);
      await waitForLog((l) => l.msg === 'authorized keys loaded' && l.keys === lines.length && logLines.indexOf(l) >= from);
    },
    waitForLog,
    async audit() {
      // The audit writer is asynchronous; give it a moment to reach the file.
      await new Promise((r) => setTimeout(r, 100));
      const text = await readFile(auditLog, 'utf8').catch(() => '');
      return text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000))]);
      if (code === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
      if (ownsDir) await rm(dir, { recursive: true, force: true });
      return code === 'timeout' ? null : code;
    },
  };
}

/**
 * A hub its standbys can log in to from the first test, keys made in its directory so that they go with it. If the
 * keys fail, the hub is stopped here: no caller gets it to stop.
 */
export async function startHubWithStandbys<Name extends string>(
  standbys: Readonly<Record<Name, string>>,
  options: HubOptions = {},
): Promise<{ hub: Hub; keys: Record<Name, ClientKey> }> {
  const hub = await startHub(options);
  try {
    const names = Object.keys(standbys) as Name[];
    const made = await Promise.all(names.map((name) => createClientKey(hub.dir, name)));
    const keys = Object.fromEntries(names.map((name, i) => [name, made[i]!])) as Record<Name, ClientKey>;
    await hub.loadKeys(names.map((name) => ({ key: keys[name], options: standbys[name] })));
    return { hub, keys };
  } catch (error) {
    await hub.stop();
    throw error;
  }
}

export async function appendKey(hub: Hub, key: ClientKey, options: string): Promise<void> {
  await appendFile(hub.authorizedKeys, `${keyLine(key, options)}\n`);
}
