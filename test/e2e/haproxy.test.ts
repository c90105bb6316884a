// Two walhub nodes behind Debian's HAProxy, configured as the README says
// (send-proxy-v2, leastconn, tcp-check on the SSH banner), both reading one
// archive of real WAL. Standbys connect from 127.0.0.2-5, HAProxy connects to
// the nodes from 127.0.0.1: the nodes must see the standbys' addresses.
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseProxyHeader } from '../../src/ssh/proxy-protocol.js';
import { createServerDir, place, sha256, type Codec, type Placed } from '../helpers/archive.js';
import { startHaproxy, startNodes, writeBalancerKnownHosts, type Haproxy } from '../helpers/haproxy.js';
import type { Hub } from '../helpers/hub.js';
import { chownToPostgres, waitUntil } from '../helpers/postgres.js';
import { createStandbyAccess, runRestoreCommand, toRestoreCommand, type StandbyAccess } from '../helpers/restore-command.js';
import { createClientKey, sshExec, type ClientKey, type SshTarget } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture } from '../helpers/wal-fixture.js';

let root: string;
let archive: string;
const files: Placed[] = [];
let standby: ClientKey;
/** Allowed only from 127.0.0.2. */
let pinned: ClientKey;
let nodes: Hub[] = [];
let haproxy: Haproxy | undefined;
let balancer: SshTarget;

function keys() {
  return [
    { key: standby, options: 'servers="pg1"' },
    { key: pinned, options: 'servers="pg1",from="127.0.0.2"' },
  ];
}

function fetchFrom(source: string, key: ClientKey, file: Placed) {
  return sshExec(balancer, key, `get-wal pg1 ${file.name}`, { extra: ['-b', source], timeoutMs: 120_000 });
}

async function requests(node: Hub): Promise<Record<string, unknown>[]> {
  return (await node.audit()).filter((r) => r.event === 'request');
}

beforeAll(async () => {
  const fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  root = await mkdtemp(join(tmpdir(), 'walhub-haproxy-'));
  archive = join(root, 'archive');
  const dir = await createServerDir(archive, 'pg1');
  const codecs: Codec[] = ['none', 'gzip', 'zstd', 'none'];
  for (const [i, segment] of fixture.segments.slice(0, codecs.length).entries()) files.push(await place(dir, segment, { codec: codecs[i]! }));
  standby = await createClientKey(root, 'standby-a');
  pinned = await createClientKey(root, 'standby-pinned');
  nodes = await startNodes(root, 2, { archive, keys: keys() });
  haproxy = await startHaproxy(root, nodes.map((n) => n.port));
  balancer = { port: haproxy.port, knownHosts: await writeBalancerKnownHosts(root, nodes[0]!, haproxy.port) };
});

afterAll(async () => {
  await haproxy?.stop();
  for (const node of nodes) await node.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('HAProxy\'s real PROXY headers', () => {
  /** A stand-in node that keeps the first bytes of every connection and answers with an SSH banner. */
  async function startCapture(): Promise<{ server: Server; port: number; firsts: Buffer[] }> {
    const firsts: Buffer[] = [];
    const server = createServer((socket: Socket) => {
      socket.on('error', () => {});
      socket.once('data', (chunk: Buffer) => firsts.push(chunk));
      socket.write('SSH-2.0-capture\r\n');
      setTimeout(() => socket.destroy(), 500).unref();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { server, port: (server.address() as AddressInfo).port, firsts };
  }

  it.each([
    ['send-proxy-v2', (c: string) => c],
    ['send-proxy (v1)', (c: string) => c.replace('send-proxy-v2', 'send-proxy')],
  ])('%s: the health check reads as the balancer\'s own, a client\'s as 127.0.0.2, and the SSH bytes behind it are untouched', async (_what, edit) => {
    const capture = await startCapture();
    const dir = await mkdtemp(join(root, 'capture-'));
    const proxy = await startHaproxy(dir, [capture.port], edit);
    try {
      await waitUntil('a health check to arrive', async () => capture.firsts.length > 0, { timeoutMs: 10_000 });
      const check = parseProxyHeader(capture.firsts[0]!);
      // v2 sends LOCAL; v1 has no LOCAL and HAProxy's check carries its own addresses.
      if (edit('send-proxy-v2') === 'send-proxy-v2') expect(check).toEqual({ kind: 'local', length: 16 });
      else expect(check).toMatchObject({ kind: 'proxy', address: '127.0.0.1' });

      const before = capture.firsts.length;
      const client = connect({ port: proxy.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
      client.on('error', () => {});
      await once(client, 'connect');
      const clientPort = client.localPort;
      client.write('SSH-2.0-OpenSSH_9.2\r\n');
      const first = await waitUntil('the client\'s connection to arrive', async () => {
        const proxied = capture.firsts.slice(before).map((bytes) => ({ bytes, parsed: parseProxyHeader(bytes) }));
        return proxied.find((p) => p.parsed.kind === 'proxy' && p.parsed.address === '127.0.0.2');
      }, { timeoutMs: 10_000 });
      client.destroy();
      expect(first.parsed).toMatchObject({ kind: 'proxy', address: '127.0.0.2', port: clientPort });
      const length = (first.parsed as { length: number }).length;
      // HAProxy may send the header and the client's bytes in one packet or two.
      if (first.bytes.length > length) expect(first.bytes.subarray(length).toString('latin1')).toBe('SSH-2.0-OpenSSH_9.2\r\n');
    } finally {
      await proxy.stop();
      capture.server.close();
    }
  });
});

describe('two nodes behind HAProxy', () => {
  it('every node answers with the same host key: one known_hosts line for the balancer', async () => {
    const [a, b] = await Promise.all(nodes.map(async (n) => (await readFile(n.knownHosts, 'utf8')).split(' ').slice(1).join(' ')));
    expect(a).toBe(b);
    expect(a).toMatch(/^ssh-ed25519 AAAA/);
  });

  it('a standby from 127.0.0.2 fetches byte-exact through HAProxy; each node\'s audit and log name 127.0.0.2, and the balancer as proxy', async () => {
    for (let i = 0; i < 6; i++) {
      const file = files[i % files.length]!;
      const result = await fetchFrom('127.0.0.2', standby, file);
      expect({ status: result.status, stderr: result.stderr, sha256: result.sha256 }).toEqual({ status: 0, stderr: '', sha256: file.sha256 });
    }
    for (const node of nodes) {
      const served = await requests(node);
      expect(served.length, `node on ${node.port} served none of 6 fetches`).toBeGreaterThan(0);
      for (const record of served) expect(record).toMatchObject({ remote: expect.stringMatching(/^127\.0\.0\.2:\d+$/), proxy: '127.0.0.1', result: 'ok' });
      expect(node.logLines.find((l) => l.msg === 'authenticated')).toMatchObject({ remote: expect.stringMatching(/^127\.0\.0\.2:/), proxy: '127.0.0.1' });
    }
    // HAProxy's health checks, every second on each node: no audit record, no failure in the log.
    for (const node of nodes) {
      expect((await node.audit()).filter((r) => String(r.remote).startsWith('127.0.0.1:'))).toEqual([]);
      expect(node.logLines.filter((l) => l.msg === 'login failed' || l.msg === 'proxied connection refused')).toEqual([]);
    }
  });

  it('a key with from="127.0.0.2" works through the balancer from 127.0.0.2 and is refused from 127.0.0.3; the failures never shut out the balancer', async () => {
    const file = files[0]!;
    for (let i = 0; i < 4; i++) {
      const refused = await fetchFrom('127.0.0.3', pinned, file);
      expect(refused.status).toBe(255);
      expect(refused.stderr).toContain('Permission denied (publickey)');
    }
    const refusals = (await Promise.all(nodes.map((n) => n.audit()))).flat().filter((r) => r.event === 'auth' && r.result === 'refused');
    expect(refusals.length).toBeGreaterThan(0);
    for (const record of refusals) {
      expect(record).toMatchObject({ remote: expect.stringMatching(/^127\.0\.0\.3:/), proxy: '127.0.0.1', reason: 'address not allowed by from="127.0.0.2"' });
    }
    // Penalties fall on 127.0.0.3, not on 127.0.0.1, the balancer every standby comes through.
    for (let i = 0; i < 4; i++) {
      const ok = await fetchFrom('127.0.0.2', pinned, file);
      expect({ status: ok.status, sha256: ok.sha256 }).toEqual({ status: 0, sha256: file.sha256 });
    }
    const failed = nodes.flatMap((n) => n.logLines.filter((l) => l.msg === 'login failed'));
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((l) => l.address === '127.0.0.3')).toBe(true);
  });

  it('4 clients x 25 fetches through HAProxy: every one byte-exact, both nodes serving', async () => {
    const before = await Promise.all(nodes.map(async (n) => (await requests(n)).length));
    const failures: string[] = [];
    const client = async (c: number) => {
      const source = `127.0.0.${c + 2}`;
      for (let i = 0; i < 25; i++) {
        const file = files[(c + i) % files.length]!;
        const result = await fetchFrom(source, standby, file);
        if (result.status !== 0 || result.sha256 !== file.sha256) failures.push(`${source} #${i} ${file.name}: exit ${result.status}, ${result.bytes} bytes, ${result.stderr.trim()}`);
      }
    };
    await Promise.all([0, 1, 2, 3].map(client));
    expect(failures).toEqual([]);
    const served = await Promise.all(nodes.map(async (n, i) => (await requests(n)).slice(before[i])));
    expect(served[0]!.length + served[1]!.length).toBe(100);
    for (const records of served) expect(records.length).toBeGreaterThan(20);
    const sources = new Set(served.flat().map((r) => String(r.remote).split(':')[0]));
    expect([...sources].sort()).toEqual(['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']);
  }, 600_000);
});

describe('SIGTERM on one node in the middle of fetches', () => {
  const accesses: StandbyAccess[] = [];
  let scratch: string;

  afterAll(async () => {
    for (const access of accesses) await access.cleanup();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('HAProxy sees the node gone while it still accepts; every fetch by the recommended restore_command ends 0 or 5 and then 0, none with wrong bytes', async () => {
    scratch = await mkdtemp(join(tmpdir(), 'walhub-restore-'));
    await chownToPostgres(scratch);
    // As a standby configures it: the balancer's address and known_hosts line, its own ControlMaster.
    for (let c = 0; c < 4; c++) accesses.push(await createStandbyAccess({ ...nodes[0]!, ...balancer }, standby));
    const [victim, survivor] = nodes as [Hub, Hub];
    const outcomes: { client: number; file: string; status: number; retries: number; ok: boolean }[] = [];
    const failures: string[] = [];
    let completed = 0;
    const client = async (c: number) => {
      const command = toRestoreCommand(accesses[c]!, 'pg1', 'recommended');
      for (let i = 0; i < 12; i++) {
        const file = files[(c + i) % files.length]!;
        const dest = join(scratch, `c${c}-${i}`);
        let retries = 0;
        for (;;) {
          const run = await runRestoreCommand(command, file.name, dest);
          if (run.status === 5 && retries < 5) {
            // What PostgreSQL does with 5: "not available now", ask again after wal_retrieve_retry_interval.
            retries++;
            await new Promise((r) => setTimeout(r, 500));
            continue;
          }
          const ok = run.status === 0 && sha256(await readFile(dest)) === file.sha256;
          if (!ok) failures.push(`client ${c} #${i} ${file.name}: exit ${run.status} after ${retries} retries: ${run.stderr.trim()}`);
          outcomes.push({ client: c, file: file.name, status: run.status, retries, ok });
          break;
        }
        completed++;
        await rm(dest, { force: true });
      }
    };
    const running = Promise.all([0, 1, 2, 3].map(client));

    await waitUntil('a few fetches to complete before the SIGTERM', async () => completed >= 8, { timeoutMs: 120_000 });
    const servedBefore = (await requests(victim)).length;
    victim.process.kill('SIGTERM');
    await haproxy!.waitForState('node1', 'DOWN', 10_000);
    // HAProxy gave up on it while it was still up and serving: the drain, not the closed port, did it.
    expect(victim.process.exitCode).toBeNull();
    const direct = await readBanner(victim.port, '127.0.0.2');
    expect(direct).toMatch(/^SSH-2\.0-walhub_/);
    expect(victim.logLines.some((l) => l.msg === 'stopped')).toBe(false);

    await running;
    expect(failures).toEqual([]);
    expect(outcomes).toHaveLength(48);
    await waitUntil('the drained node to exit', async () => victim.process.exitCode !== null, { timeoutMs: 45_000 });
    expect(victim.process.exitCode).toBe(0);
    expect(victim.logLines.find((l) => l.msg === 'draining: failing the balancer\'s health checks, still serving')).toBeDefined();
    // The survivor took over: it served fetches after the SIGTERM.
    expect((await requests(survivor)).length).toBeGreaterThan(0);
    expect((await requests(victim)).length).toBeGreaterThanOrEqual(servedBefore);
  }, 600_000);
});

/** The first line a server sends to a plain TCP connection from `source` (no PROXY header: not the balancer). */
async function readBanner(port: number, source: string): Promise<string> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: source });
  socket.setEncoding('latin1');
  try {
    const [line] = (await Promise.race([
      once(socket, 'data'),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no banner within 5 s')), 5000)),
    ])) as [string];
    return line;
  } finally {
    socket.destroy();
  }
}
