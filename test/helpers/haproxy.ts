// Debian's HAProxy in front of walhub nodes, configured as the README's
// "Running several nodes" shows: the configuration is read from the README
// itself, only its addresses moved to loopback, so what the tests prove is
// what users copy.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHub, type Hub, type HubOptions } from './hub.js';
import { findFreePort, waitUntil } from './postgres.js';
import { requireProgram } from './programs.js';

const HOST_KEY_FILE = 'ssh_host_ed25519_key';
const README = fileURLToPath(new URL('../../README.md', import.meta.url));

export interface Haproxy {
  readonly port: number;
  readonly process: ChildProcess;
  /** Everything HAProxy wrote to stderr so far (its warnings: servers going DOWN and UP). */
  output(): string;
  /** Waits for HAProxy to report `server` ("node1") in `state`; returns the time it saw it. */
  waitForState(server: string, state: 'UP' | 'DOWN', timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

/** The ```haproxy block of the README's "Running several nodes" section. */
export async function readReadmeHaproxyConfig(): Promise<string> {
  const text = await readFile(README, 'utf8');
  const section = text.slice(text.indexOf('\n## Running several nodes'));
  const block = /```haproxy\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('README: no ```haproxy block under "Running several nodes"');
  return block[1]!;
}

/**
 * The README's configuration with its frontend on a free loopback port and one
 * `server` line per node port (node1, node2, ... in order); `edit` may adjust
 * the text further (e.g. send-proxy instead of send-proxy-v2).
 */
export async function startHaproxy(dir: string, nodePorts: readonly number[], edit: (config: string) => string = (c) => c): Promise<Haproxy> {
  const haproxy = requireProgram('haproxy', 'haproxy');
  const port = await findFreePort();
  const readme = await readReadmeHaproxyConfig();
  const servers = nodePorts.map((p, i) => `    server node${i + 1} 127.0.0.1:${p}`).join('\n');
  const config = edit(
    readme
      .replace(/^(\s*bind\s+)\S+/m, `$1127.0.0.1:${port}`)
      .replace(/(^\s*server node\d+ .*\n)+/m, `${servers}\n`),
  );
  if (!config.includes(`127.0.0.1:${port}`) || !nodePorts.every((p) => config.includes(`127.0.0.1:${p}`))) {
    throw new Error(`the README's haproxy block no longer has the bind and server lines the tests replace:\n${config}`);
  }
  // Polled to know HAProxy is up: a connection to the frontend would reach a node as a client that never logs in.
  const readyPort = await findFreePort();
  const path = join(dir, 'haproxy.cfg');
  await writeFile(path, `${config}\nlisten test_ready\n    bind 127.0.0.1:${readyPort}\n`);
  const child = spawn(haproxy, ['-f', path, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const seen: { at: number; line: string }[] = [];
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
    for (const line of text.split('\n')) if (line) seen.push({ at: Date.now(), line });
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitForState = async (server: string, state: 'UP' | 'DOWN', timeoutMs = 20_000) => {
    const pattern = new RegExp(`Server \\S+/${server} is ${state}\\b`);
    const hit = await waitUntil(`HAProxy to report ${server} ${state}; its output:\n${stderr}`, async () => seen.find((s) => pattern.test(s.line)), {
      timeoutMs,
      intervalMs: 50,
    });
    return hit.at;
  };
  try {
    // HAProxy binds every listener before it accepts on any.
    await waitUntil(`haproxy to listen on ${port}; its output:\n${stderr}`, async () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited ${child.exitCode}: ${stderr}`);
      return canConnect(readyPort);
    });
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }
  return {
    port,
    process: child,
    output: () => stderr,
    waitForState,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function canConnect(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** What every node behind the balancer trusts: HAProxy connects to them from 127.0.0.1. */
export const PROXY_TOML = '[proxy]\ntrusted = ["127.0.0.1"]\ndrain_time = "3s"\n';

/**
 * `count` walhub nodes in dirs root/node1, root/node2, ... (kept across
 * restarts: the caller removes root), every one with node1's host key, copied
 * as the README says (mode 0600), and the same authorized_keys and archive.
 */
export async function startNodes(
  root: string,
  count: number,
  options: Omit<HubOptions, 'dir' | 'port'>,
): Promise<Hub[]> {
  const nodes: Hub[] = [];
  try {
    for (let i = 1; i <= count; i++) {
      const dir = join(root, `node${i}`);
      await mkdir(dir, { recursive: true });
      if (i > 1) await copyFile(join(nodes[0]!.dir, HOST_KEY_FILE), join(dir, HOST_KEY_FILE)).then(() => chmod(join(dir, HOST_KEY_FILE), 0o600));
      nodes.push(await startHub({ extraToml: PROXY_TOML, ...options, dir }));
    }
  } catch (error) {
    for (const node of nodes) await node.stop();
    throw error;
  }
  return nodes;
}

/** The node started again in its dir, on its port (HAProxy's server line names it). */
export function restartNode(node: Hub, options: Omit<HubOptions, 'dir' | 'port'>): Promise<Hub> {
  return startHub({ extraToml: PROXY_TOML, ...options, dir: node.dir, port: node.port });
}

/** A known_hosts file for the balancer's address, with the key every node shares. */
export async function writeBalancerKnownHosts(dir: string, node: Hub, port: number): Promise<string> {
  const line = (await readFile(node.knownHosts, 'utf8')).trim();
  const path = join(dir, 'known_hosts_balancer');
  await writeFile(path, `${line.replace(/^\S+/, `[127.0.0.1]:${port}`)}\n`);
  return path;
}
