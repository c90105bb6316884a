// A PostgreSQL standby with the README's recommended restore_command, pointed
// at HAProxy in front of two walhub nodes that read one Barman archive, keeps
// replaying while first one node and then the other is restarted (SIGTERM:
// drain, stop; then start again on the same port).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createBarman, type Barman } from '../helpers/barman.js';
import { restartNode, startHaproxy, startNodes, writeBalancerKnownHosts, type Haproxy } from '../helpers/haproxy.js';
import type { Hub } from '../helpers/hub.js';
import { createCluster, waitUntil, type PgCluster } from '../helpers/postgres.js';
import {
  createFillTable,
  grepLog,
  toPrimarySettings,
  toSegmentRange,
  toTableChecksum,
  waitForReplay,
  writeAndSwitch,
} from '../helpers/replication.js';
import { startArchiveOnlyStandby } from '../helpers/recovery-setup.js';
import { createStandbyAccess, type StandbyAccess } from '../helpers/restore-command.js';
import { createClientKey, type ClientKey } from '../helpers/ssh-client.js';

let barman: Barman;
let primary: PgCluster | undefined;
let standby: PgCluster | undefined;
let root: string;
let key: ClientKey;
let nodes: Hub[] = [];
let haproxy: Haproxy | undefined;
let access: StandbyAccess | undefined;

const nodeOptions = () => ({ archive: barman.home, keys: [{ key, options: 'servers="pg1"' }] });

beforeAll(async () => {
  barman = await createBarman({ pg1: 'gzip' });
  primary = await createCluster({ conf: toPrimarySettings(barman.toArchiveCommand('pg1')) });
  await primary.start();
  await createFillTable(primary);
  root = await mkdtemp(join(tmpdir(), 'walhub-haproxy-replay-'));
  key = await createClientKey(root, 'standby-a');
  nodes = await startNodes(root, 2, nodeOptions());
  haproxy = await startHaproxy(root, nodes.map((n) => n.port));
  const knownHosts = await writeBalancerKnownHosts(root, nodes[0]!, haproxy.port);
  access = await createStandbyAccess({ ...nodes[0]!, port: haproxy.port, knownHosts }, key);
});

afterAll(async () => {
  await standby?.cleanup();
  await primary?.cleanup();
  await access?.cleanup();
  await haproxy?.stop();
  for (const node of nodes) await node.stop();
  await barman?.cleanup();
  if (root) await rm(root, { recursive: true, force: true });
});

/** SIGTERM (drain, then stop) and start again on the same port, until HAProxy has it back. */
async function restart(index: number): Promise<void> {
  const node = nodes[index]!;
  const name = `node${index + 1}`;
  const downBefore = haproxy!.output().split(`${name} is DOWN`).length;
  expect(await node.stop()).toBe(0);
  await waitUntil(`HAProxy to mark ${name} down`, async () => haproxy!.output().split(`${name} is DOWN`).length > downBefore, { timeoutMs: 10_000 });
  const upBefore = haproxy!.output().split(`${name} is UP`).length;
  nodes[index] = await restartNode(node, nodeOptions());
  await waitUntil(`HAProxy to mark ${name} up again`, async () => haproxy!.output().split(`${name} is UP`).length > upBefore, { timeoutMs: 15_000 });
}

it('a standby replays through HAProxy while each node in turn is restarted', async () => {
  const p = primary!;
  // restore_command, through the balancer, is its only source.
  const s = (standby = await startArchiveOnlyStandby(p, barman, access!));

  const segments: string[] = [];
  let target = '';
  for (const index of [0, 1]) {
    // WAL for the standby to fetch while the node goes down and comes back.
    const { segment: first } = await writeAndSwitch(p, 30_000);
    const { segment: last, lsn } = await writeAndSwitch(p, 1000);
    const names = toSegmentRange(first, last);
    await barman.archive(p, 'pg1', names);
    segments.push(...names);
    target = lsn;
    await restart(index);
  }
  const expected = await toTableChecksum(p);
  await waitForReplay(s, target);
  expect(await s.psql('select pg_is_in_recovery()')).toBe('t');
  expect(await toTableChecksum(s)).toBe(expected);
  expect(await grepLog(s, /FATAL|PANIC|could not restore file/)).toEqual([]);

  // Every segment was restored, each served by one of the nodes, to the standby's own address.
  const served = (await Promise.all(nodes.map((n) => n.audit()))).flat().filter((r) => r.event === 'request' && r.result === 'ok');
  for (const name of segments) {
    expect(served.find((r) => r.wal === name), name).toMatchObject({ remote: expect.stringMatching(/^127\.0\.0\.1:/), proxy: '127.0.0.1' });
    expect(await grepLog(s, new RegExp(`restored log file "${name}" from archive`)), name).not.toEqual([]);
  }
}, 600_000);
