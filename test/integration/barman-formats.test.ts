// Every format Barman 3.17 writes, written through the very library calls it
// uses (test/helpers/python-writers.ts), served byte for byte to the real
// OpenSSH client: segments, a history file and a backup label.
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { archivedPath, createServerDir, sha256 } from '../helpers/archive.js';
import { startHubWithStandbys, type Hub } from '../helpers/hub.js';
import { BARMAN_WRITERS, WRITER_COMPRESSION, writeAsBarman } from '../helpers/python-writers.js';
import { sshExec, type ClientKey } from '../helpers/ssh-client.js';
import { loadOrMakeWalFixture, type WalFixture } from '../helpers/wal-fixture.js';


let fixture: WalFixture;
let hub: Hub;
let standby: ClientKey;
const nameOf = (path: string) => path.split('/').pop()!;

beforeAll(async () => {
  fixture = await loadOrMakeWalFixture(inject('walFixtureDir'));
  ({ hub, keys: { 'standby-a': standby } } = await startHubWithStandbys({ 'standby-a': `servers="${BARMAN_WRITERS.join(',')}"` }));
  // One server directory per writer: each holds a segment, the history file and the backup label in that format.
  for (const writer of BARMAN_WRITERS) {
    const serverDir = await createServerDir(hub.archive, writer);
    for (const source of [fixture.segments[0]!, fixture.history, fixture.backupHistory]) {
      const target = archivedPath(serverDir, nameOf(source));
      await mkdir(dirname(target), { recursive: true });
      await writeAsBarman(writer, source, target);
    }
  }
});

afterAll(async () => {
  await hub?.stop();
});

describe('files written as Barman 3.17 writes them', () => {
  const cases = BARMAN_WRITERS.flatMap((writer) => (['segment', 'history', 'backup label'] as const).map((kind) => [writer, kind] as const));
  it.each(cases)('%s: the %s is served byte for byte', async (writer, kind) => {
    const source = kind === 'segment' ? fixture.segments[0]! : kind === 'history' ? fixture.history : fixture.backupHistory;
    const original = await readFile(source);
    const result = await sshExec(hub, standby, `get-wal ${writer} ${nameOf(source)}`);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.sha256).toBe(sha256(original));
    const record = (await hub.audit()).findLast((r) => r.event === 'request' && r.server === writer && r.wal === nameOf(source));
    expect(record).toMatchObject({ result: 'ok', compression: WRITER_COMPRESSION[writer], bytes: original.length });
  });
});
